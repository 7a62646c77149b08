"""docs/python.md runs: its ```python blocks, in order, in one namespace, from a fresh folder.

The folder links the repository's `specs/` and `runtime/` (the examples name files there), so the
`runs/` the examples make start empty. Then the API's promises the examples lean on are checked:
`import dslc` and `dslc.load` import no torch, and the figures the examples print are the run's own.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT

DOC = ROOT / "docs" / "python.md"


def examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)


def test_the_guide_has_examples():
    assert len(examples()) >= 7


def test_every_example_runs_in_order(tmp_path, monkeypatch):
    for name in ("specs", "runtime"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    out = io.StringIO()
    for i, code in enumerate(examples()):
        with contextlib.redirect_stdout(out):
            try:
                exec(compile(code, f"{DOC.name} example {i + 1}", "exec"), namespace)
            except Exception as err:
                raise AssertionError(f"example {i + 1} failed: {type(err).__name__}: {err}\n{code}") from err
    text = out.getvalue()
    assert "there is no variable 'scael' to set" in text
    run = json.loads((tmp_path / "runs" / "thermo-api" / "summary.json").read_text())
    assert run["steps"] == 800 and run["overrides"] == ["data.validation=0.2", "train.epochs=800"]
    assert namespace["run"].evaluate("validation")["val_loss"] == pytest.approx(run["metrics"]["val_loss"], rel=1e-6)
    assert (tmp_path / "runs" / "thermo-api" / "model.onnx").is_file()
    assert set(namespace["both"].variants) == {"scaled_sgd", "raw_adam"}
    assert namespace["digits"].predict_proba("runtime/data/samples/digit7.png").shape == (1, 10)


def test_import_dslc_and_load_need_no_torch():
    code = ("import sys, dslc; s = dslc.load('specs/cnn_mnist.dlspec', set={'lr': 0.01}); r = s.resolved; "
            "print('torch' in sys.modules, s.checked.train.optimizer.args['lr'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "0.01"]


def test_inference_session_needs_no_torch(tmp_path):
    import dslc
    run = dslc.load("specs/thermometer.dlspec", variant="scaled_sgd").train(
        out=tmp_path / "run", steps=20, progress="quiet", plots=False)
    code = ("import sys, dslc; s = dslc.InferenceSession(sys.argv[1]); "
            "print('torch' in sys.modules, s.predict([1.0, 2.0]).shape)")
    proc = subprocess.run([sys.executable, "-c", code, str(run.path)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "(2,)"]


def test_api_mistakes_are_one_clear_error(tmp_path):
    import dslc
    with pytest.raises(dslc.UserError, match="set= takes a dict"):
        dslc.load("specs/thermometer.dlspec", set=["lr=1"])
    spec = dslc.load(ROOT / "specs" / "thermometer.dlspec")
    with pytest.raises(dslc.UserError, match="choose one"):
        spec.model()
    with pytest.raises(dslc.UserError, match="no variant 'nope'"):
        spec.variant("nope")
    with pytest.raises(dslc.UserError, match="progress must be"):
        spec.variant("raw_adam").train(out=tmp_path / "r", progress="loud")
    run = spec.variant("raw_adam").train(out=tmp_path / "r", steps=3, progress="quiet", export=False, plots=False)
    with pytest.raises(dslc.UserError, match="holds no exported model"):
        dslc.InferenceSession(run.path)
    run.export()
    session = dslc.InferenceSession(run.path)
    with pytest.raises(dslc.UserError, match="cannot predict on"):
        session.predict(object())
    with pytest.raises(dslc.UserError, match="not a classifier"):
        session.predict_proba([1.0])
    with pytest.raises(dslc.UserError, match="not a dslc run directory"):
        dslc.open_run(tmp_path)
    with pytest.raises(AttributeError):
        dslc.no_such_thing
