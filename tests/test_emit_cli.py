"""The `dslc emit` and `dslc schema` verbs, and `dslc check --format json` for editors and scripts."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, SPECS
from dslc.cli import main

BROKEN = ROOT / "tests" / "broken"


def run(capsys, *argv) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# ---------------------------------------------------------------- emit


def test_emit_writes_the_three_files(capsys, tmp_path):
    status, out, err = run(capsys, "emit", str(SPECS / "cnn_mnist.dlspec"), "--python", str(tmp_path / "cnn"))
    assert status == 0, err
    assert sorted(p.name for p in (tmp_path / "cnn").iterdir()) == ["README.md", "dslc_kit", "model.py", "train.py"]
    assert "wrote" in out and "model.py" in out and "dslc_kit" in out
    assert "class Cnn(nn.Module)" in (tmp_path / "cnn" / "model.py").read_text()
    train = (tmp_path / "cnn" / "train.py").read_text()
    assert '"optimizer": {"class": "Adam", "lr": 0.001, "betas": [0.9, 0.999], ' in train
    assert "from dslc_kit import script" in train and "import dslc\n" not in train


def test_emit_refuses_to_overwrite_without_force(capsys, tmp_path):
    spec = str(SPECS / "thermometer.dlspec")
    assert run(capsys, "emit", spec, "--python", str(tmp_path))[0] == 0
    (tmp_path / "model.py").write_text("# my edits\n")
    status, _, err = run(capsys, "emit", spec, "--python", str(tmp_path))
    assert status == 1 and "already exist" in err and "--force" in err and "Traceback" not in err
    assert (tmp_path / "model.py").read_text() == "# my edits\n"
    (tmp_path / "dslc_kit" / "gone.py").write_text("# a module an older dslc wrote\n")
    (tmp_path / "dslc_kit" / "loop.py").write_text("# edited\n")
    assert run(capsys, "emit", spec, "--python", str(tmp_path), "--force")[0] == 0
    assert "class Thermometer" in (tmp_path / "model.py").read_text()
    assert not (tmp_path / "dslc_kit" / "gone.py").exists()         # the kit is dslc's: replaced as a whole
    assert (tmp_path / "dslc_kit" / "loop.py").read_text() == (ROOT / "kit" / "loop.py").read_text()


def test_emit_takes_variants_and_overrides(capsys, tmp_path):
    spec = str(SPECS / "thermometer.dlspec")
    status, out, _ = run(capsys, "emit", spec, "--python", str(tmp_path / "a"), "--variant", "raw_adam",
                         "--set", "train.epochs=7")
    assert status == 0 and "[raw_adam]" in out
    train = (tmp_path / "a" / "train.py").read_text()
    assert '"optimizer": {"class": "Adam", "lr": 0.1, ' in train
    assert '"epochs": 7,' in train
    assert "return [(t_u * 1.0).astype(np.float32)], [t_c.astype(np.float32)]" in train   # scale = 1.0 here


def test_emit_mistakes_are_clear(capsys, tmp_path):
    spec = str(SPECS / "thermometer.dlspec")
    status, _, err = run(capsys, "emit", spec, "--python", str(tmp_path), "--variant", "raw_adm")
    assert status == 2 and "there is no variant 'raw_adm'" in err and "raw_adam" in err
    (tmp_path / "file").write_text("")
    status, _, err = run(capsys, "emit", spec, "--python", str(tmp_path / "file"))
    assert status == 1 and "is a file" in err
    status, _, err = run(capsys, "emit", str(BROKEN / "unknown_layer.dlspec"), "--python", str(tmp_path / "x"))
    assert status == 2 and "unknown layer" in err and not (tmp_path / "x").exists()


# ---------------------------------------------------------------- schema


def test_schema_prints_a_json_schema(capsys, tmp_path):
    status, out, _ = run(capsys, "schema")
    assert status == 0
    schema = json.loads(out)
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["properties"]) == {"let", "data", "models", "train", "export", "init", "variants"}
    status, out, _ = run(capsys, "schema", "--out", str(tmp_path / "s.json"))
    assert status == 0 and json.loads((tmp_path / "s.json").read_text()) == schema


def test_pipeline_verbs_do_not_slow_down_check():
    """The CLI imports this module at start-up: it must not import torch."""
    code = ("import sys, dslc.cli; dslc.cli._parser(); import dslc.commands.emit; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


# ---------------------------------------------------------------- check --format json


def test_check_json_gives_located_diagnostics_for_every_file(capsys, tmp_path):
    bad = tmp_path / "bad.dlspec"
    bad.write_text("model m(x: f32[4]) {\n    lienar(3)\n}\n")
    syntax = tmp_path / "syntax.dlspec"
    syntax.write_text("model m(x: f32[4]) {\n    linear(3\n}\n")
    status, out, err = run(capsys, "check", "--format", "json", str(bad), str(SPECS / "cnn_mnist.dlspec"), str(syntax))
    assert status == 2 and err == ""              # JSON mode keeps stdout machine-readable and stderr quiet
    diagnostics = json.loads(out)
    assert len(diagnostics) == 2
    keys = {"file", "line", "column", "end_line", "end_column", "severity", "message", "hint"}
    for d in diagnostics:
        assert set(d) == keys and d["severity"] == "error"
        assert d["line"] >= 1 and d["column"] >= 1 and (d["end_line"], d["end_column"]) >= (d["line"], d["column"])
    first, second = diagnostics
    assert (first["file"], first["line"], first["column"]) == (str(bad), 2, 5)
    assert first["end_column"] == 5 + len("lienar") and "unknown layer 'lienar'" in first["message"]
    assert first["hint"] == "did you mean 'linear'?"
    assert second["file"] == str(syntax) and second["line"] in (2, 3)


def test_check_json_is_an_empty_list_for_a_clean_spec(capsys):
    status, out, _ = run(capsys, "check", "--format", "json", str(SPECS / "lstm_mnist.dlspec"))
    assert status == 0 and json.loads(out) == []
