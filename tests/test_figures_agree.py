"""Every figure dslc shows of a run is one figure: the training output, summary.json, `dslc eval`, the
report, the confusion matrix and the exported model all speak of the same checkpoint, for every shipped spec.

Each spec trains briefly with a validation split and several evaluations, so that best.pt (chosen by the
lowest val_loss) may lie before the last step: the case where the printed, summarised and evaluated
figures used to disagree.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import SHARED_DATA, SPECS
from dslc.cli import main

SHORT = ["--set", "data.validation=0.2", "--set", "train.evaluate=every(steps=4)", "--steps", "12"]
MNIST = ["--data-root", str(SHARED_DATA / "mnist5k")]
RUNS = {
    "thermometer": (["--variant", "raw_adam", "--set", "data.validation=0.2", "--epochs", "300"], False),
    "dropout_overfit": (["--set", "data.validation=0.2", "--set", "train.evaluate=every(steps=10)",
                         "--steps", "60"], False),
    "rnn_sin_cos": (SHORT, False),
    "cnn_mnist": (SHORT + MNIST, True),
    "cnn_batchnorm": (SHORT + MNIST, True),
    "lstm_mnist": (SHORT + MNIST, True),
    "autoencoder_mnist": (SHORT + MNIST, True),
    "gru_text": (SHORT + ["--data-root", str(SHARED_DATA / "rt_polarity")], True),
}

FINAL = re.compile(r"^(?P<title>[\w-]+): \S.* after (?P<steps>\d+) steps in [\d.]+s; (?P<ckpt>\S+) \([^)]*\): "
                   r"(?P<values>.*)$")


def printed(out: str) -> dict[str, dict[str, float]]:
    """title -> the figures of the line that ends each configuration's training."""
    found = {}
    for line in out.splitlines():
        m = FINAL.match(line)
        if m:
            pairs = [p.split(" ") for p in m["values"].split("  ")]
            found[m["title"]] = {"checkpoint": m["ckpt"], **{k: float(v) for k, v in pairs}}
    return found


def close(a: float, b: float, rel: float = 1e-6) -> bool:
    return a == pytest.approx(b, rel=rel, abs=1e-9)


def report_cells(html: str) -> dict[str, list[str]]:
    """Row name -> cells of the report's table of the chosen checkpoint's figures."""
    table = re.search(r'<table class="metrics">(.*?)</table>', html, re.S)[1]
    rows = {}
    for row in re.findall(r"<tr><th>(.*?)</th>(.*?)</tr>", table, re.S):
        rows[row[0]] = re.findall(r'<td class="num">(.*?)</td>', row[1])
    return rows


def _fmt(v: float) -> str:
    return f"{v:.6g}"


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if slow else [])
                                  for n, (_, slow) in RUNS.items()])
def test_printed_summarised_evaluated_reported_and_exported_figures_agree(name, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DSLC_NO_PLOTS", raising=False)
    args, _ = RUNS[name]
    if "--data-root" in args and not Path(args[args.index("--data-root") + 1]).is_dir():
        pytest.skip("needs the shared data")
    run = tmp_path / "run"
    assert main(["train", str(SPECS / f"{name}.dlspec"), *args, "--out", str(run)]) == 0
    lines = printed(capsys.readouterr().out)
    top = json.loads((run / "summary.json").read_text())
    configs = {v: run / "variants" / v for v in top["variants"]} or {top.get("variant"): run}
    html = (run / "report.html").read_text() if main(["report", str(run)]) == 0 else ""
    cells = report_cells(html)
    capsys.readouterr()
    for column, (variant, path) in enumerate(configs.items()):
        s = json.loads((path / "summary.json").read_text())
        title = variant or name
        sel = s["selection"]
        assert s["checkpoint"] == str(path / "checkpoints" / sel["checkpoint"])
        # 1. the training output's last line: the same checkpoint and the same figures (printed to 6 digits)
        shown = lines[title]
        assert shown.pop("checkpoint") == sel["checkpoint"]
        assert set(shown) == set(s["metrics"])
        for key, value in shown.items():
            assert _fmt(s["metrics"][key]) == _fmt(value), key
        # 2. a best checkpoint's figures are those of the evaluation it was chosen at
        if sel["rule"] == "best":
            evals = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
            chosen = next(e for e in evals if e["event"] == "eval" and e["step"] == sel["step"])
            assert s["metrics"] == {k: v for k, v in chosen.items() if k in s["metrics"]}
            assert sel["value"] == min(e["val_loss"] for e in evals if e["event"] == "eval")
        # 3. `dslc eval` of the run, on every held-out split: the same checkpoint and figures
        for split, prefix in (("validation", "val"), ("test", "test")):
            if f"{prefix}_loss" not in s["metrics"]:
                continue
            argv = ["eval", str(run), "--split", split, "--json"] + (["--variant", variant] if top["variants"] else [])
            assert main(argv) == 0
            record = json.loads(capsys.readouterr().out)
            assert record["checkpoint"] == s["checkpoint"]
            for key, value in record.items():
                if key.startswith(prefix + "_"):
                    assert close(value, s["metrics"][key]), (key, value, s["metrics"][key])
        # 4. the report's table shows those figures, and names that checkpoint
        for key, value in s["metrics"].items():
            assert cells[key][column] == _fmt(value), key
        assert cells["checkpoint"][column].startswith(sel["checkpoint"])
        # 5. the confusion matrix (and every picture of the model) uses that checkpoint
        if "test_accuracy" in s["metrics"] or "val_accuracy" in s["metrics"]:
            from dslc.runtime.pictures import plot_draw
            from dslc.runtime.pictures.plots import RunContext, configurations
            config = next(c for c in configurations(run, RunContext(run, top)) if c.name == (variant or s["variant"]))
            shown = plot_draw._classified(config)          # from plot_inputs.npz, written when the plots were drawn
            pred, true = shown["scores"].argmax(axis=1), shown["true"]
            key = {"test": "test", "validation": "val"}[str(shown["split"])] + "_accuracy"
            assert close(float((pred == true).mean()), s["metrics"][key]), key
            config.cache.clear()
            config._kept, config._arrays = {}, {}              # and computed again from the checkpoint
            again = plot_draw._classified(config)
            assert close(float((again["scores"].argmax(axis=1) == again["true"]).mean()), s["metrics"][key]), key
        # 6. the exported model is that checkpoint's (run on the rows its verification used)
        onnx = json.loads((path / "summary.json").read_text()).get("onnx")
        assert onnx, "the spec exports after training"
        import numpy as np
        import torch

        from dslc.api import InferenceSession
        from dslc.runtime.export.onnx_export import _kept_samples
        from dslc.runtime.training.run_dir import load_run
        loaded = load_run(run, variant if top["variants"] else None)
        assert str(loaded.checkpoint) == s["checkpoint"]
        rows = _kept_samples(loaded)
        session = InferenceSession(onnx)
        got = session.run({n: r.numpy() for n, r in zip(loaded.checked.model.inputs, rows)})
        with torch.no_grad():
            loaded.module.reset_state()
            want = loaded.module(*rows)
        for g, w in zip(got.values(), want if isinstance(want, tuple) else (want,)):
            np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-4)
        assert session.metadata["spec_hash"] == s["spec_hash"]
