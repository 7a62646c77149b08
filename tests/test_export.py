"""ONNX export: every spec exports and matches torch; dynamic axes, names, metadata, failure messages."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch

from conftest import SPECS
from dslc.errors import UserError
from dslc.cli import load
from dslc.compiler.build import build_model
from dslc.runtime.export import onnx_verify
from dslc.runtime.export.onnx_export import export_module, output_names

ALL_SPECS = sorted(p.stem for p in SPECS.glob("*.dlspec"))
CHEAP_SOURCES = ("table", "generate", "sequence")     # real data costs nothing for these


def built(name: str, seed: int = 0):
    checked = load(str(SPECS / f"{name}.dlspec"))
    torch.manual_seed(seed)
    return checked, build_model(checked.model, checked.init)


def samples_for(checked):
    """Real rows where the source is computed in memory; sampled valid values for image and text sources."""
    if checked.data.source.name in CHEAP_SOURCES:
        from dslc.runtime.data.dataset import load_data
        data = load_data(checked, download=False)
        return (data.test or data.train).inputs
    return None


def graph_dims(path, which="input"):
    model = onnx.load(str(path))
    values = model.graph.input if which == "input" else model.graph.output
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


def metadata(path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.mark.parametrize("name", ALL_SPECS)
def test_every_spec_exports_and_matches_torch(name, tmp_path):
    checked, module = built(name)
    samples = samples_for(checked)
    if checked.model.has_layer("batchnorm"):      # move the running statistics off their defaults first
        module.train()
        with torch.no_grad():
            module(*(samples or onnx_verify.sampled_inputs(checked.model, n=16)))
        assert module.batchnorm_1.running_mean.abs().sum() > 0
    logged = []
    path = export_module(module, checked, samples, tmp_path / f"{name}.onnx", log=logged.append)
    assert path.is_file() and not list(tmp_path.glob(".*.tmp"))
    report = json.loads(metadata(path)["dslc.verification"])
    expected_cases = ["batch 1", "batch 7"]
    if checked.model.sequence_inputs:
        expected_cases = [f"batch {b}, length {t}" for b in (1, 7) for t in (5, 40)]
    assert report["cases"] == expected_cases
    assert report["max_abs_diff"]["onnxruntime"] <= 1e-4
    assert "reference" in report["max_abs_diff"], report["notes"]      # a second runtime agreed too
    assert "verified" in logged[0] and "batch 7" in logged[0]
    for input_name, dims in graph_dims(path).items():
        assert dims[0] == "batch", (input_name, dims)


@pytest.mark.parametrize("name", ["rnn_sin_cos", "gru_text"])
def test_recurrent_models_keep_a_dynamic_length_when_exported_again(name, tmp_path):
    """The dynamo exporter freezes the length axis on a second export of the same RNN type in a process
    (and always unrolls `rnn`): two exports here, each must keep [batch, T] and pass at lengths 5 and 40."""
    for attempt in range(2):
        checked, module = built(name, seed=attempt)
        path = export_module(module, checked, None, tmp_path / f"{name}_{attempt}.onnx")
        input_name = next(iter(checked.model.inputs))
        assert graph_dims(path)[input_name][:2] == ["batch", "T"]
        cases = json.loads(metadata(path)["dslc.verification"])["cases"]
        assert "batch 7, length 40" in cases and "batch 1, length 5" in cases
        assert json.loads(metadata(path)["dslc.verification"])["exporter"] == "torchscript"


def test_names_and_shapes_follow_the_spec(exported):
    path = exported("thermometer")[2]
    assert graph_dims(path) == {"t_u": ["batch"]}             # one number per sample: the input is [batch]
    assert graph_dims(path, "output") == {"output": ["batch"]}

    checked, _, path = exported("autoencoder_mnist")
    assert output_names(checked.model) == ["code", "decoder"]
    assert graph_dims(path, "output") == {"code": ["batch", 3], "decoder": ["batch", 784]}

    path = exported("rnn_sin_cos")[2]
    assert graph_dims(path) == {"x": ["batch", "T", 1]}
    assert graph_dims(path, "output") == {"output": ["batch", "T", 1]}
    tokens = onnx.load(str(exported("gru_text")[2])).graph.input[0]
    assert tokens.name == "tokens" and tokens.type.tensor_type.elem_type == onnx.TensorProto.INT64


def test_metadata_describes_the_model(exported, tmp_path):
    checked, module, path = exported("cnn_mnist")
    meta = metadata(path)
    assert meta["dslc.spec_name"] == "cnn_mnist"
    assert len(meta["dslc.spec_hash"]) == 64
    assert meta["dslc.version"]
    assert json.loads(meta["dslc.labels"]) == [str(i) for i in range(10)]
    assert json.loads(meta["dslc.inputs"]) == ["image"]
    assert json.loads(meta["dslc.outputs"]) == ["output"]
    prep = json.loads(meta["dslc.preprocessing"])
    assert prep["kind"] == "image" and prep["inputs"][0]["shape"] == [1, 28, 28] and prep["outputs"] == ["output"]
    assert json.loads(meta["dslc.verification"])["exporter"] == "torchscript"

    checked, module, _ = exported("autoencoder_mnist")
    given = {"spec_hash": "abc123", "spec_name": "ae", "preprocessing": {"kind": "image", "outputs": ["a", "b"]}}
    meta = metadata(export_module(module, checked, None, tmp_path / "a.onnx", metadata=given))
    assert meta["dslc.spec_hash"] == "abc123" and meta["dslc.spec_name"] == "ae"
    assert json.loads(meta["dslc.preprocessing"])["outputs"] == ["code", "decoder"]     # what the file really has


def test_carried_state_does_not_leak_into_the_export(tmp_path):
    """A carry_state RNN that has just trained holds a state; the export starts every call from zero."""
    checked, module = built("rnn_sin_cos")
    module.train()
    module(torch.randn(1, 10, 1))                 # leaves a carried state behind
    export_module(module, checked, None, tmp_path / "r.onnx")
    assert module.training                        # the caller's module is left as it was


def test_a_file_that_differs_from_torch_is_refused(exported):
    checked, _, path = exported("cnn_mnist")
    other = build_model(checked.model, checked.init).eval()           # different random weights
    cases = onnx_verify.parity_cases(checked.model, onnx_verify.sampled_inputs(checked.model))
    with pytest.raises(UserError, match=r"output 'output' on batch 1: onnxruntime differs from torch by up to"):
        onnx_verify.verify(path, other, checked.model, cases, ["output"])


def test_a_frozen_length_axis_is_refused(exported, tmp_path):
    checked, module, path = exported("rnn_sin_cos")
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 10      # what the dynamo trap produces
    frozen = tmp_path / "frozen.onnx"
    onnx.save(model, str(frozen))
    cases = onnx_verify.parity_cases(checked.model, onnx_verify.sampled_inputs(checked.model))
    with pytest.raises(UserError, match=r"length \(T\) axis of input 'x' is fixed at 10"):
        onnx_verify.verify(frozen, module.eval(), checked.model, cases, ["output"])


def test_without_the_reference_evaluator_the_report_says_so(exported, monkeypatch):
    checked, module, path = exported("thermometer")

    def refuse(model):
        raise NotImplementedError("no kernel for this op")
    monkeypatch.setattr("onnx.reference.ReferenceEvaluator", refuse)
    cases = onnx_verify.parity_cases(checked.model, onnx_verify.sampled_inputs(checked.model))
    report = onnx_verify.verify(path, module.eval(), checked.model, cases, ["output"])
    assert report.notes == ["reference evaluator skipped: no kernel for this op"]
    assert report.worst("onnxruntime") is not None and report.worst("reference") is None
    assert "note: reference evaluator skipped" in str(report)

    class FailsToRun:
        def __init__(self, model):
            pass

        def run(self, names, feed):
            raise RuntimeError("attribute not implemented")
    monkeypatch.setattr("onnx.reference.ReferenceEvaluator", FailsToRun)
    report = onnx_verify.verify(path, module.eval(), checked.model, cases, ["output"])
    assert report.notes == ["reference evaluator skipped: attribute not implemented (on batch 1)"]


def test_parity_cases_slice_and_tile_real_sequences():
    checked = load(str(SPECS / "rnn_sin_cos.dlspec"))
    rows = torch.arange(30, dtype=torch.float32).reshape(3, 10, 1)
    cases = onnx_verify.parity_cases(checked.model, [rows])
    shapes = {c.label: tuple(c.inputs[0].shape) for c in cases}
    assert shapes == {"batch 1, length 5": (1, 5, 1), "batch 1, length 40": (1, 40, 1),
                      "batch 7, length 5": (7, 5, 1), "batch 7, length 40": (7, 40, 1)}
    short = cases[0].inputs[0][0, :, 0].tolist()
    assert short == [5.0, 6.0, 7.0, 8.0, 9.0]                         # the last steps of a real row
    long = cases[1].inputs[0][0, :, 0].tolist()
    assert long[-10:] == list(range(10)) and len(long) == 40           # tiled real steps
    assert cases[2].inputs[0][3, 0, 0] == 5.0                          # rows cycle: row 3 is row 0


def test_bad_opsets_are_refused_clearly(tmp_path):
    checked, module = built("thermometer")
    with pytest.raises(UserError, match="opset 12 is not supported"):
        export_module(module, checked, None, tmp_path / "t.onnx", opset=12)
    checked, module = built("rnn_sin_cos")
    with pytest.raises(UserError, match="opset 13 to 20"):
        export_module(module, checked, None, tmp_path / "r.onnx", opset=21)
    assert not (tmp_path / "r.onnx").exists()


def test_an_exported_file_runs_without_torch(tmp_path):
    """onnxruntime and numpy alone reproduce the torch predictions saved at export time."""
    checked, module = built("lstm_mnist")
    x = torch.rand(5, 28, 28, generator=torch.Generator().manual_seed(3))
    path = export_module(module, checked, [x], tmp_path / "lstm.onnx")
    with torch.no_grad():
        want = module.eval()(x).numpy()
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "want.npy", want)
    script = textwrap.dedent(f"""
        import sys, numpy as np, onnxruntime as ort
        s = ort.InferenceSession({str(path)!r}, providers=["CPUExecutionProvider"])
        got = s.run(["output"], {{"rows": np.load({str(tmp_path / 'x.npy')!r})}})[0]
        want = np.load({str(tmp_path / 'want.npy')!r})
        assert "torch" not in sys.modules, "torch was imported"
        assert got.shape == want.shape, (got.shape, want.shape)
        print(float(np.abs(got - want).max()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip()) <= 1e-4


def test_a_convolution_over_time_is_verified_at_a_length_it_accepts(tmp_path):
    spec = tmp_path / "convseq.dlspec"
    spec.write_text("model convseq(x: f32[4, T]) {\n    conv1d(8, kernel=5) relu conv1d(8, kernel=3)\n}\n")
    checked = load(str(spec))
    module = build_model(checked.model, checked.init)
    path = export_module(module, checked, None, tmp_path / "convseq.onnx")
    cases = json.loads(metadata(path)["dslc.verification"])["cases"]
    assert cases[:2] == ["batch 1, length 7", "batch 1, length 40"]      # 5 is too short for kernels 5 and 3
    assert graph_dims(path) == {"x": ["batch", 4, "T"]}
