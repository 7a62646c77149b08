"""`dslc export RUN_DIR`: trained runs to verified ONNX files, variants, Triton entries, clear refusals."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import SPECS
from dslc.cli import main
from dslc.runtime.training.run_dir import load_run


def meta(path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def run_onnx(path, feed: dict) -> list:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feed)


@pytest.fixture(scope="module")
def thermometer_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "thermo"
    assert main(["train", str(SPECS / "thermometer.dlspec"), "--epochs", "30", "--out", str(run),
                 "--no-export", "--quiet"]) == 0
    return run


def test_export_writes_every_variant_with_its_metadata(thermometer_run, tmp_path, capsys):
    repo = tmp_path / "triton"
    assert main(["export", str(thermometer_run), "--triton", str(repo)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("verified model.onnx") == 2
    for variant in ("scaled_sgd", "raw_adam"):
        folder = thermometer_run / "variants" / variant
        path = folder / "model.onnx"
        summary = json.loads((folder / "summary.json").read_text())
        m = meta(path)
        assert m["dslc.spec_name"] == "thermometer" and m["dslc.variant"] == variant
        assert m["dslc.spec_hash"] == summary["spec_hash"]
        assert json.loads(m["dslc.preprocessing"])["input_exprs"] == summary["data"]["preprocessing"]["input_exprs"]
        # the file computes what the trained weights compute
        run = load_run(thermometer_run, variant=variant)
        x = torch.tensor([3.57, 5.59, 8.19], dtype=torch.float32)
        with torch.no_grad():
            want = run.module(x).numpy()
        np.testing.assert_allclose(run_onnx(path, {"t_u": x.numpy()})[0], want, atol=1e-4)
        config = (repo / f"thermometer_{variant}" / "config.pbtxt").read_text()
        assert 'name: "thermometer_' + variant + '"' in config
        assert (repo / f"thermometer_{variant}" / "1" / "model.onnx").read_bytes() == path.read_bytes()


def test_export_one_variant_to_a_chosen_file(thermometer_run, tmp_path, capsys):
    out = tmp_path / "raw.onnx"
    assert main(["export", str(thermometer_run), "--variant", "raw_adam", "--out", str(out), "--opset", "17"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    model = onnx.load(str(out))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert json.loads(meta(out)["dslc.verification"])["opset"] == 17


def test_the_spec_export_block_names_the_file_and_opset(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(SPECS / "thermometer.dlspec"), "--variant", "raw_adam", "--epochs", "20",
                 "--set", 'export.file="thermo.onnx"', "--set", "export.opset=17", "--out", str(run), "--quiet",
                 "--no-export"]) == 0
    assert main(["export", str(run)]) == 0
    assert f"wrote {run / 'thermo.onnx'}" in capsys.readouterr().out
    model = onnx.load(str(run / "thermo.onnx"))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert meta(run / "thermo.onnx")["dslc.variant"] == "raw_adam"
    assert not (run / "model.onnx").exists()


@pytest.mark.parametrize("args, message", [
    (["export", "{run}", "--out", "x.onnx"], "pick one with --variant"),
    (["export", "{run}", "--variant", "nope"], "has no variant 'nope'"),
    (["export", "{missing}"], "run directory not found"),
    (["export", "{spec}"], "takes a run directory"),
    (["export", "{run}", "--variant", "raw_adam", "--opset", "99", "--out", "{tmp}/x.onnx"], "opset 99 is not supported"),
    (["export", "{tmp}"], "not a dslc run directory"),
])
def test_export_mistakes_get_one_clear_message(thermometer_run, tmp_path, capsys, args, message):
    fill = {"run": str(thermometer_run), "missing": str(tmp_path / "missing"), "spec": str(SPECS / "cnn_mnist.dlspec"),
            "tmp": str(tmp_path)}
    assert main([a.format(**fill) for a in args]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.slow
def test_a_trained_cnn_exports_and_matches_on_real_digits(tmp_path, capsys):
    """Train cnn_mnist briefly, export with the CLI, compare onnxruntime with torch on real test digits."""
    run = tmp_path / "cnn"
    assert main(["train", str(SPECS / "cnn_mnist.dlspec"), "--steps", "30", "--out", str(run), "--no-export",
                 "--quiet"]) == 0
    assert main(["export", str(run)]) == 0
    assert "verified model.onnx" in capsys.readouterr().out
    from dslc.runtime.data.dataset import load_data
    trained = load_run(run)
    images = load_data(trained.checked, download=False).test.inputs[0][:32]
    with torch.no_grad():
        want = trained.module(images).numpy()
    got = run_onnx(run / "model.onnx", {"image": images.numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert (got.argmax(1) == want.argmax(1)).all()
