"""Training runtime: the thermometer reproduces the seed's numbers; run directories, losses, commands."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import SPECS
from dslc.cli import main

THERMO = str(SPECS / "thermometer.dlspec")


def train(*argv) -> int:
    return main(["train", *map(str, argv), "--quiet", "--no-export"])


def summary(path) -> dict:
    return json.loads((path / "summary.json").read_text())


def events(path, kind=None) -> list[dict]:
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if kind is None or r["event"] == kind]


@pytest.fixture(scope="module")
def thermometer_run(tmp_path_factory):
    """Both variants of the thermometer, 5000 full-batch epochs each (a few seconds)."""
    out = tmp_path_factory.mktemp("thermo") / "run"
    assert train(THERMO, "--out", out) == 0
    return out


def test_thermometer_scaled_sgd_reproduces_the_seed(thermometer_run):
    s = summary(thermometer_run)["variants"]["scaled_sgd"]
    first = events(thermometer_run / "variants" / "scaled_sgd", "log")[0]
    assert (first["epoch"], first["step"]) == (1, 1)
    assert first["train_loss_recent"] == pytest.approx(80.364, rel=1e-4)  # epoch 0 of the seed: w=1, b=0 on t_u*0.1
    assert first["train_loss"] == first["train_loss_recent"]             # one step is the whole first epoch
    assert s["metrics"]["train_loss"] == pytest.approx(2.92765, rel=1e-4)
    assert s["params"]["w"] == pytest.approx(5.3671, rel=1e-4)
    assert s["params"]["b"] == pytest.approx(-17.3012, rel=1e-4)
    assert (s["epochs"], s["steps"], s["status"]) == (5000, 5000, "completed")


def test_thermometer_raw_adam_reproduces_the_seed(thermometer_run):
    s = summary(thermometer_run)["variants"]["raw_adam"]
    first = events(thermometer_run / "variants" / "raw_adam", "log")[0]
    assert first["train_loss_recent"] == pytest.approx(1763.88, rel=1e-4)   # w=1, b=0 on the raw t_u
    assert s["params"]["w"] == pytest.approx(0.5368, rel=1e-3)
    assert s["params"]["b"] == pytest.approx(-17.3048, rel=1e-4)


def test_variant_run_directory_layout(thermometer_run):
    top = summary(thermometer_run)
    for key in ("spec", "spec_hash", "seed", "device", "epochs", "steps", "wall_seconds", "metrics", "params",
                "checkpoint", "data", "overrides", "variant", "variants"):
        assert key in top
    assert set(top["variants"]) == {"scaled_sgd", "raw_adam"}
    assert top["metrics"]["raw_adam"] == top["variants"]["raw_adam"]["metrics"]
    assert (thermometer_run / "spec.dlspec").read_text() == (SPECS / "thermometer.dlspec").read_text()
    for name in ("scaled_sgd", "raw_adam"):
        v = thermometer_run / "variants" / name
        for f in ("spec.dlspec", "resolved.yaml", "metrics.jsonl", "summary.json", "checkpoints/last.pt"):
            assert (v / f).is_file(), f
        s = summary(v)
        # no validation split: no best.pt, the run's checkpoint is last.pt and its figures are the final ones
        assert not (v / "checkpoints" / "best.pt").exists()
        assert s["selection"]["checkpoint"] == "last.pt" and s["checkpoint"].endswith("last.pt")
        assert s["variant"] == name and s["data"]["preprocessing"]["kind"] == "table"
        assert s["data"]["counts"]["train"] == 11
        assert events(v)[-1]["event"] == "end"
    hashes = {summary(thermometer_run / "variants" / n)["spec_hash"] for n in ("scaled_sgd", "raw_adam")}
    assert len(hashes) == 2


def test_resolved_yaml_is_a_spec_with_lets_substituted(thermometer_run):
    from dslc.compiler.check import check
    from dslc.dsl.diagnostics import Source
    from dslc.dsl.yaml_face import from_yaml
    text = (thermometer_run / "variants" / "raw_adam" / "resolved.yaml").read_text()
    assert "t_u * 1.0" in text and "scale" not in text.split("let variables")[1]
    assert "adam(lr=0.1, betas=[0.9, 0.999]" in text               # defaults filled in
    checked = check(from_yaml(text, "resolved.yaml"), Source("resolved.yaml", text))
    assert checked.train.optimizer.name == "adam" and checked.train.optimizer.args["lr"] == 0.1
    assert checked.train.epochs == 5000 and checked.data.batch is None
    assert [p.name for p in checked.model.params] == ["w", "b"]


def test_validation_split_reports_train_and_validation_loss(tmp_path):
    out = tmp_path / "run"
    assert train(THERMO, "--variant", "scaled_sgd", "--set", "data.validation=0.2", "--epochs", 300,
                 "--out", out) == 0
    s = summary(out)
    assert s["variant"] == "scaled_sgd" and s["variants"] == {}
    assert s["data"]["counts"] == {"train": 9, "validation": 2, "test": 0}
    assert s["metrics"]["train_loss"] > 0 and s["metrics"]["val_loss"] > 0
    sel = s["selection"]
    assert (sel["checkpoint"], sel["rule"], sel["metric"], sel["mode"]) == ("best.pt", "best", "val_loss", "min")
    evals = events(out, "eval")
    # evaluate is not in the spec: 300 epochs get one evaluation every 10 (at most 50), not 300
    assert [e["epoch"] for e in evals] == list(range(10, 301, 10)) and all("val_loss" in e for e in evals)
    best = min(evals, key=lambda e: e["val_loss"])
    assert sel["step"] == best["step"] and sel["value"] == best["val_loss"]
    assert s["metrics"] == {k: v for k, v in best.items() if k in ("train_loss", "val_loss")}
    assert (out / "checkpoints" / "best.pt").is_file()
    assert "data.validation=0.2" in s["overrides"] and "train.epochs=300" in s["overrides"]


def test_eval_command_matches_the_summary(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(THERMO, "--variant", "scaled_sgd", "--set", "data.validation=0.2", "--epochs", 50,
                 "--out", out) == 0
    capsys.readouterr()
    s = summary(out)
    assert main(["eval", str(out), "--split", "validation", "--json"]) == 0      # the chosen checkpoint: best.pt
    result = json.loads(capsys.readouterr().out)
    assert result["checkpoint"].endswith("best.pt")
    assert result["val_loss"] == pytest.approx(s["metrics"]["val_loss"], rel=1e-6)
    assert main(["eval", str(out), "--split", "validation", "--checkpoint", "last", "--json"]) == 0
    last = json.loads(capsys.readouterr().out)
    assert last["val_loss"] == pytest.approx(events(out, "eval")[-1]["val_loss"], rel=1e-6)
    assert main(["eval", str(out), "--split", "test"]) == 1
    assert "no test split" in capsys.readouterr().err


def test_steps_replace_epochs_and_seed_override(tmp_path):
    out = tmp_path / "run"
    assert train(THERMO, "--variant", "raw_adam", "--steps", 7, "--seed", 3, "--out", out) == 0
    s = summary(out)
    assert (s["steps"], s["epochs"], s["seed"]) == (7, 7, 3)
    resolved = (out / "resolved.yaml").read_text()
    assert "  steps: 7\n" in resolved and "epochs:" not in resolved


def test_set_is_strict(tmp_path, capsys):
    assert train(THERMO, "--set", "nosuch=1", "--out", tmp_path / "a") == 2
    assert "no variable 'nosuch'" in capsys.readouterr().err
    assert train(THERMO, "--set", 'scale="big"', "--out", tmp_path / "b") == 2
    assert "scale" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_existing_out_is_refused_unless_forced(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(THERMO, "--variant", "raw_adam", "--epochs", 2, "--out", out) == 0
    assert train(THERMO, "--variant", "raw_adam", "--epochs", 2, "--out", out) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert train(THERMO, "--variant", "raw_adam", "--epochs", 3, "--out", out, "--force") == 0
    assert summary(out)["steps"] == 3


def test_jsonl_prints_one_object_per_event(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", THERMO, "--variant", "scaled_sgd", "--epochs", "1000", "--out", str(out),
                 "--jsonl", "--no-export"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == ["log"] * 3 + ["end"]            # epochs 1, 500, 1000
    assert [r["epoch"] for r in records[:3]] == [1, 500, 1000]
    # train_loss_recent is the mean over the log line's window of epochs; train_loss the last epoch's
    assert 0 < records[-1]["metrics"]["train_loss"] < records[2]["train_loss_recent"] < records[1]["train_loss_recent"]
    assert records[2]["train_loss"] == records[-1]["metrics"]["train_loss"]


def test_plain_lines_when_not_a_terminal(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", THERMO, "--variant", "scaled_sgd", "--epochs", "500", "--out", str(out), "--no-export"]) == 0
    text = capsys.readouterr().out
    assert "scaled_sgd: epoch 500  step 500  train_loss" in text and f"run: {out}" in text


# ---------------------------------------------------------------- loss expressions and loop features

TINY = """
let reg = 0.5
data {
    source  = generate(n=64, seed=1, x=uniform(-1, 1), y=2 * x + 0.1 * normal(0, 1))
    inputs  = [x]
    targets = [y]
    batch   = 16
    validation = 0.25
}
model net(x: f32[1]) {
    linear(8) tanh linear(1)
}
train {
    loss      = mse(output, y) + reg * mean(abs(output))
    optimizer = sgd(lr=0.05, momentum=0.9)
    epochs    = 30
}
"""


def tiny(tmp_path, text=TINY, *settings):
    path = tmp_path / "tiny.dlspec"
    path.write_text(text)
    from dslc.runtime.training.run_dir import check_configuration, read_spec_text
    spec, source = read_spec_text(text, str(path))
    return path, check_configuration(spec, source, list(settings))


def test_loss_expression_is_evaluated_with_torch(tmp_path):
    from dslc.compiler.build import build_model
    from dslc.runtime.training.loss import make_loss
    _, checked = tiny(tmp_path)
    module = build_model(checked.model)
    loss = make_loss(checked, module)
    x, y = torch.randn(5, 1), torch.randn(5)
    out = module(x)
    want = torch.nn.functional.mse_loss(out, y.reshape(out.shape)) + 0.5 * out.abs().mean()
    assert torch.allclose(loss(out, [x], [y]), want)


def test_loss_over_outputs_inputs_and_params(tmp_path):
    from dslc.compiler.build import build_model
    from dslc.runtime.training.loss import make_loss
    text = TINY.replace("linear(8) tanh linear(1)", """param s = 2.0
    block body { linear(8) tanh linear(1) }
    h = body(x)
    return h, s * h""").replace("mse(output, y) + reg * mean(abs(output))",
                                "mse(output[1], y) + mean(output[0] - x) ** 2 + reg * s ** 2")
    _, checked = tiny(tmp_path, text)
    module = build_model(checked.model)
    loss = make_loss(checked, module)
    x, y = torch.randn(4, 1), torch.randn(4)
    o0, o1 = module(x)
    want = torch.nn.functional.mse_loss(o1, y.reshape(o1.shape)) + (o0 - x).mean() ** 2 + 0.5 * module.s ** 2
    assert torch.allclose(loss((o0, o1), [x], [y]), want)


def test_schedule_warmup_clipping_and_early_stopping(tmp_path):
    text = TINY.replace("epochs    = 30", "epochs = 200\n    schedule = step(every=5, gamma=0.5)\n    warmup_steps = 10\n"
                        "    clip_grad_norm = 1.0\n    early_stopping = early_stopping(patience=3)\n"
                        "    metrics = [mse, mae]\n    log = every(epochs=1)")
    path, _ = tiny(tmp_path, text)
    out = tmp_path / "run"
    assert train(path, "--out", out) == 0
    s = summary(out)
    assert s["status"] == "stopped early" and s["steps"] < 200 * 3
    assert {"train_loss", "val_loss", "val_mse", "val_mae"} <= set(s["metrics"])
    logs = events(out, "log")
    assert logs[0]["lr"] == pytest.approx(0.05)                  # the schedule's rate; warm-up scales inside the step
    lrs = [e["lr"] for e in logs]
    assert min(lrs) < 0.05                                        # the step schedule decayed it


def test_early_stopping_on_a_missing_metric_is_a_clear_error(tmp_path, capsys):
    text = TINY.replace("validation = 0.25", "").replace("epochs    = 30", "epochs = 3\n    early_stopping = early_stopping()")
    path, _ = tiny(tmp_path, text)
    assert train(path, "--out", tmp_path / "run") == 1
    assert "no validation split" in capsys.readouterr().err


def test_same_seed_same_result(tmp_path):
    path, _ = tiny(tmp_path)
    assert train(path, "--out", tmp_path / "a") == 0
    assert train(path, "--out", tmp_path / "b") == 0
    assert train(path, "--out", tmp_path / "c", "--seed", 1) == 0
    a, b, c = (summary(tmp_path / k)["metrics"] for k in "abc")
    assert a == b and a != c


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(tmp_path, capsys):
    assert train(THERMO, "--variant", "raw_adam", "--epochs", 1, "--device", "cuda", "--out", tmp_path / "r") == 1
    assert "CUDA is not available" in capsys.readouterr().err


def test_deterministic_mode_and_mixed_precision_fall_back_on_cpu(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", THERMO, "--variant", "raw_adam", "--epochs", "20", "--device", "cpu", "--out", str(out),
                 "--set", "train.deterministic=true", "--set", "train.precision=amp", "--no-export"]) == 0
    assert "precision amp needs CUDA" in capsys.readouterr().out
    s = summary(out)
    assert (s["device"], s["precision"]) == ("cpu", "fp32")
    torch.use_deterministic_algorithms(False)


def test_warmup_scales_the_first_steps_linearly(tmp_path):
    plain, warm = tmp_path / "plain", tmp_path / "warm"
    assert train(THERMO, "--variant", "scaled_sgd", "--steps", 1, "--out", plain) == 0
    assert train(THERMO, "--variant", "scaled_sgd", "--steps", 1, "--set", "train.warmup_steps=4", "--out", warm) == 0
    step = lambda p: 1.0 - summary(p)["params"]["w"]                  # w starts at 1.0; same gradient both times
    assert step(warm) == pytest.approx(step(plain) / 4, rel=1e-5)


# ---------------------------------------------------------------- what is printed, and the resolved configuration


def test_a_long_run_prints_at_most_about_a_hundred_lines(tmp_path, capsys):
    """thermometer's 5,000 epochs with a validation split: `evaluate` is not in the spec, so it is widened
    (every 100 epochs), while the spec's own `log = every(epochs=500)` is kept."""
    out = tmp_path / "run"
    assert main(["train", THERMO, "--variant", "raw_adam", "--set", "data.validation=0.2", "--out", str(out),
                 "--no-export", "--no-plots"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) <= 100, len(lines)
    assert len(events(out, "eval")) == 50 and len(events(out, "log")) == 11       # epoch 1, then every 500
    resolved = (out / "resolved.yaml").read_text()
    assert "evaluate: every(epochs=100)" in resolved and "log: every(epochs=500)" in resolved
    # what a spec says is kept: evaluating every epoch, when asked, evaluates every epoch
    assert main(["train", THERMO, "--variant", "raw_adam", "--set", "data.validation=0.2", "--epochs", "120",
                 "--set", "train.evaluate=every(epochs=1)", "--out", str(tmp_path / "asked"), "--quiet",
                 "--no-export"]) == 0
    assert len(events(tmp_path / "asked", "eval")) == 120


def test_round_intervals():
    from dslc.runtime.training.intervals import round_up
    assert [round_up(x) for x in (0.5, 1, 1.2, 2, 3, 5.5, 10, 11, 99, 100, 101)] == \
        [1, 1, 2, 2, 5, 10, 10, 20, 100, 100, 200]


def test_print_config_and_show_resolved_print_the_resolved_configuration_and_train_nothing(tmp_path, capsys):
    assert main(["train", THERMO, "--variant", "raw_adam", "--set", "opt=adam(lr=0.05)", "--print-config",
                 "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert not (tmp_path / "run").exists()
    assert "# variant: raw_adam" in printed and "optimizer: adam(lr=0.05, betas=[0.9, 0.999]" in printed
    assert "evaluate: every(epochs=1)    # the default" in printed and "log: every(epochs=500)\n" in printed
    assert main(["show", THERMO, "--variant", "raw_adam", "--set", "opt=adam(lr=0.05)", "--resolved"]) == 0
    assert capsys.readouterr().out == printed
    # every variant, one YAML document each; and the printed text is itself a spec
    assert main(["train", THERMO, "--print-config"]) == 0
    docs = capsys.readouterr().out.split("---\n")
    assert [d.count("# variant: ") for d in docs] == [1, 1]
    from dslc.compiler.check import check
    from dslc.dsl.diagnostics import Source
    from dslc.dsl.yaml_face import from_yaml
    checked = check(from_yaml(docs[1], "r.yaml"), Source("r.yaml", docs[1]))
    assert checked.train.optimizer.args["lr"] == 0.1 and checked.train.epochs == 5000
    # --print-config of a run being resumed: the configuration it would continue with
    out = tmp_path / "resumable"
    assert train(THERMO, "--variant", "raw_adam", "--epochs", "3", "--out", out) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--epochs", "9", "--print-config"]) == 0
    assert "epochs: 9" in capsys.readouterr().out
    assert summary(out)["steps"] == 3


def test_print_config_imports_no_torch():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "dslc", "train", THERMO, "--print-config"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    modules = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in modules and "epochs: 5000" in proc.stdout
