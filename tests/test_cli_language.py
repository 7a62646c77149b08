"""The language verbs of the command line: check, show, fmt, layers, and their exit statuses."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from dslc.cli import main
from dslc.compiler.layers import LAYERS

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
BROKEN = ROOT / "tests" / "broken"


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


def test_check_all_specs():
    paths = sorted(str(p) for p in SPECS.glob("*.dlspec"))
    status, out, err = run("check", *paths)
    assert (status, err) == (0, "")
    assert "specs/cnn_mnist.dlspec: ok — model cnn: f32[1, 28, 28] -> f32[10]" in out
    assert "[overfit]: ok" in out and "[raw_adam]: ok" in out


def test_check_reports_bad_specs_and_still_checks_the_rest():
    status, out, err = run("check", str(BROKEN / "unknown_layer.dlspec"), str(SPECS / "lstm_mnist.dlspec"))
    assert status == 2
    assert "unknown layer 'lienar'" in err and "lstm_mnist.dlspec: ok" in out


def test_check_json_lists_warnings_and_errors():
    status, out, _ = run("check", "--format", "json", str(BROKEN / "unused_variable_is_a_warning.dlspec"))
    assert status == 0
    [w] = json.loads(out)
    assert (w["severity"], w["line"], w["column"]) == ("warning", 4, 1)


def test_check_with_overrides():
    status, out, _ = run("check", str(SPECS / "cnn_mnist.dlspec"), "--set", "lr=0.01", "--set", "train.epochs=2")
    assert status == 0 and "ok" in out
    status, _, err = run("check", str(SPECS / "cnn_mnist.dlspec"), "--set", "lr")
    assert status == 2 and "cannot read --set 'lr'" in err and "hint: write --set NAME=VALUE" in err


def test_missing_file_is_a_clear_error():
    status, _, err = run("check", "no/such/spec.dlspec")
    assert status == 2 and "no such spec file: no/such/spec.dlspec" in err and "Traceback" not in err


def test_show_prints_layers_shapes_and_counts():
    status, out, _ = run("show", str(SPECS / "cnn_mnist.dlspec"))
    assert status == 0
    assert "conv2d_1" in out and "conv2d(16, kernel=5, padding=2)" in out and "f32[32, 7, 7]" in out
    assert out.rstrip().endswith("Total params: 28,938")
    status, out, _ = run("show", str(SPECS / "thermometer.dlspec"), "--variant", "raw_adam")
    assert status == 0 and "param w" in out
    status, _, err = run("show", str(SPECS / "thermometer.dlspec"), "--variant", "nope")
    assert status == 2 and "there is no variant 'nope'" in err


def test_fmt_to_yaml():
    status, out, _ = run("fmt", str(SPECS / "lstm_mnist.dlspec"), "--to", "yaml")
    assert status == 0 and out.startswith("let: {lr: 0.01}") and "lstm(64)" in out


def test_layers_lists_the_catalog():
    status, out, _ = run("layers")
    assert status == 0
    for name in LAYERS:
        assert f"\n{name}(" in "\n" + out or f"\n{name}\n" in "\n" + out


def test_check_does_not_import_torch():
    code = ("import sys; from dslc.cli import main; "
            "assert main(['check', 'specs/cnn_mnist.dlspec', 'specs/gru_text.dlspec']) == 0; "
            "assert 'torch' not in sys.modules, 'dslc check imported torch'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("argv,status", [(["--version"], 0), (["check"], 2)])
def test_argument_errors_exit_like_argparse(argv, status):
    with pytest.raises(SystemExit) as info, redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        main(argv)
    assert info.value.code == status


# ---------------------------------------------------------------- docs/language.md lists the catalogs

DOC = ROOT / "docs" / "language.md"


def _fenced(kind: str) -> list[str]:
    import re
    return re.findall(rf"^```{kind}\n(.*?)^```$", DOC.read_text(), re.S | re.M)


def test_every_dlspec_example_in_the_language_doc_checks(tmp_path: Path):
    examples = _fenced("dlspec") + _fenced("yaml")
    assert len(examples) >= 8
    for n, text in enumerate(examples):
        path = tmp_path / (f"example{n}.yaml" if text.startswith("let: {") else f"example{n}.dlspec")
        path.write_text(text)
        status, _, err = run("check", str(path))
        assert status == 0 and "error" not in err, f"docs/language.md example {n}:\n{text}\n{err}"
