"""The onnxruntime runtime: parity with torch, batching, provider choice, clear input errors, no torch import.

The models are tiny specs compiled with the real builder and exported by
`onnx_models.export_spec`.
"""

import subprocess
import sys

import numpy as np
import pytest
from onnx_models import DIGIT, IMAGE_SPEC, TEXT_FACTS, TEXT_SPEC, TWO_OUTPUT_SPEC, VOCAB, export_spec

from dslc.errors import UserError


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    return export_spec(IMAGE_SPEC, tmp_path_factory.mktemp("image"), "tiny")


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    return export_spec(TEXT_SPEC, tmp_path_factory.mktemp("text"), "classifier", TEXT_FACTS)


@pytest.fixture(scope="module")
def two_output_model(tmp_path_factory):
    return export_spec(TWO_OUTPUT_SPEC, tmp_path_factory.mktemp("two"), "ae")


def _torch_outputs(module, arrays):
    import torch
    with torch.no_grad():
        out = module(*[torch.from_numpy(a) for a in arrays])
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


# ---------------------------------------------------------------- parity and batching


def test_image_model_reproduces_torch(image_model):
    from dslc.runtime.serving.inference import InferenceSession
    path, module = image_model
    session = InferenceSession(path, provider="cpu")
    x = np.random.default_rng(0).random((7, 1, 28, 28), dtype=np.float32)
    [got] = session.run([x])
    [want] = _torch_outputs(module, [x])
    assert got.shape == (7, 10)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_text_model_reproduces_torch_at_any_length(text_model):
    from dslc.runtime.serving.inference import InferenceSession
    path, module = text_model
    session = InferenceSession(path, provider="cpu")
    for length in (3, 9):
        tokens = np.random.default_rng(length).integers(0, len(VOCAB), (4, length), dtype=np.int64)
        [got] = session.run([tokens])
        np.testing.assert_allclose(got, _torch_outputs(module, [tokens])[0], rtol=1e-4, atol=1e-5)


def test_two_outputs_reproduce_torch(two_output_model):
    from dslc.runtime.serving.inference import InferenceSession
    path, module = two_output_model
    session = InferenceSession(path, provider="cpu")
    x = np.random.default_rng(1).random((3, 784), dtype=np.float32)
    got = session.run([x])
    want = _torch_outputs(module, [x])
    assert session.output_names == ["code", "decoder"]
    assert [g.shape for g in got] == [(3, 3), (3, 784)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3, 4, 10, 50])
def test_batched_run_equals_unbatched(image_model, batch):
    from dslc.runtime.serving.inference import InferenceSession
    session = InferenceSession(image_model[0], provider="cpu")
    x = np.random.default_rng(2).random((10, 1, 28, 28), dtype=np.float32)
    [whole] = session.run([x])
    [pieces] = session.run([x], batch=batch)
    assert pieces.shape == whole.shape
    np.testing.assert_allclose(pieces, whole, rtol=1e-6, atol=1e-6)


def test_batches_split_and_concatenate_every_output(two_output_model):
    from dslc.runtime.serving.inference import InferenceSession
    session = InferenceSession(two_output_model[0], provider="cpu")
    x = np.random.default_rng(3).random((5, 784), dtype=np.float32)
    whole, pieces = session.run([x]), session.run([x], batch=2)
    for w, p in zip(whole, pieces):
        np.testing.assert_allclose(p, w, rtol=1e-6, atol=1e-6)


def test_io_binding_path_gives_the_plain_run_results(two_output_model):
    """The bound path CUDA uses (inputs and outputs placed in device memory), exercised here in CPU memory."""
    from dslc.runtime.serving.inference import InferenceSession
    session = InferenceSession(two_output_model[0], provider="cpu")
    x = np.random.default_rng(4).random((3, 784), dtype=np.float32)
    bound = session._run_bound([x], "cpu")
    for b, plain in zip(bound, session.run([x])):
        np.testing.assert_array_equal(b, plain)


def test_batch_size_must_be_positive(image_model):
    from dslc.runtime.serving.inference import InferenceSession
    session = InferenceSession(image_model[0], provider="cpu")
    with pytest.raises(UserError, match="at least 1"):
        session.run([np.zeros((2, 1, 28, 28), np.float32)], batch=0)


# ---------------------------------------------------------------- metadata and providers


def test_metadata_is_decoded(text_model):
    from dslc.runtime.serving.inference import InferenceSession
    session = InferenceSession(text_model[0], provider="cpu")
    meta = session.metadata
    assert meta["spec_name"] == "classifier" and meta["spec_hash"] and meta["version"]
    assert meta["labels"] == ["rotten", "fresh"]
    assert meta["preprocessing"]["tokenizer"]["vocab"] == VOCAB
    assert meta["inputs"] == ["tokens"] and meta["outputs"] == ["output"]
    assert session.input_names == ["tokens"] and session.output_names == ["output"]
    assert session.inputs[0].dtype == np.int64
    assert session.inputs[0].shape == ("batch", "T")


def test_model_without_dslc_metadata_still_runs(tmp_path):
    from dslc.runtime.serving.inference import InferenceSession
    path, _ = export_spec(IMAGE_SPEC, tmp_path, "plain", metadata=False)
    session = InferenceSession(path, provider="cpu")
    assert session.metadata["labels"] is None and session.preprocessing == {}
    assert session.run([np.zeros((1, 1, 28, 28), np.float32)])[0].shape == (1, 10)


def test_cpu_provider_and_the_line_that_says_so(image_model):
    from dslc.runtime.serving.inference import InferenceSession
    session = InferenceSession(image_model[0], provider="cpu")
    assert session.providers == ["CPUExecutionProvider"]
    assert "running on CPUExecutionProvider" in session.provider_line


def test_default_provider_is_what_really_runs(image_model):
    from dslc.runtime.serving.inference import InferenceSession, cuda_device_count
    session = InferenceSession(image_model[0])
    expected = "CUDAExecutionProvider" if cuda_device_count() else "CPUExecutionProvider"
    assert session.providers[0] == expected
    assert session.provider_line.split("running on ")[1].startswith(expected)
    assert session.device == ("cuda" if cuda_device_count() else "cpu")


def test_asking_for_cuda_without_a_gpu_says_why(image_model):
    from dslc.runtime.serving.inference import InferenceSession, cuda_device_count
    if cuda_device_count():
        pytest.skip("a GPU is present; the fallback note cannot be seen here")
    session = InferenceSession(image_model[0], provider="cuda")
    assert session.providers == ["CPUExecutionProvider"]
    assert "no CUDA device found" in session.provider_line


def test_provider_order():
    from dslc.runtime.serving.inference import choose_providers, cuda_device_count
    assert choose_providers("cpu") == (["CPUExecutionProvider"], "")
    assert choose_providers("CPUExecutionProvider")[0] == ["CPUExecutionProvider"]
    order, _ = choose_providers("tensorrt")
    assert order[-1] == "CPUExecutionProvider"
    if cuda_device_count():
        assert order[:2] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    with pytest.raises(UserError, match="unknown provider 'tpu'; choose one of tensorrt, cuda, cpu"):
        choose_providers("tpu")


# ---------------------------------------------------------------- clear errors


def test_missing_and_corrupt_model_files(tmp_path):
    from dslc.runtime.serving.inference import InferenceSession
    with pytest.raises(UserError, match="model file not found"):
        InferenceSession(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    with pytest.raises(UserError, match="not a model onnxruntime can load"):
        InferenceSession(bad)
    with pytest.raises(UserError, match="is not a file"):
        InferenceSession(tmp_path)


def test_bad_metadata_json_is_named(tmp_path):
    import onnx
    from dslc.runtime.serving.inference import InferenceSession
    path, _ = export_spec(IMAGE_SPEC, tmp_path, "odd", metadata=False)
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "dslc.labels", "[not json"
    onnx.save(proto, str(path))
    with pytest.raises(UserError, match="metadata dslc.labels is not valid JSON"):
        InferenceSession(path)


def test_wrong_input_count(two_output_model):
    from dslc.runtime.serving.inference import InferenceSession
    session = InferenceSession(two_output_model[0], provider="cpu")
    x = np.zeros((1, 784), np.float32)
    with pytest.raises(UserError, match=r"takes 1 input\(s\) \(x\); got 2"):
        session.run([x, x])


def test_wrong_dtype(text_model, image_model):
    from dslc.runtime.serving.inference import InferenceSession
    text = InferenceSession(text_model[0], provider="cpu")
    with pytest.raises(UserError, match="input 'tokens' must be int64; got float32 values"):
        text.run([np.zeros((1, 4), np.float32)])
    image = InferenceSession(image_model[0], provider="cpu")
    with pytest.raises(UserError, match="input 'image' must be float32; got string values"):
        image.run([np.full((1, 1, 28, 28), "a")])
    # integers and doubles for a float input are fine: same kind, cast
    ints = np.zeros((1, 1, 28, 28), np.int64)
    np.testing.assert_allclose(image.run([ints])[0], image.run([ints.astype(np.float32)])[0])


def test_wrong_rank_and_shape_name_the_input(image_model):
    from dslc.runtime.serving.inference import InferenceSession
    session = InferenceSession(image_model[0], provider="cpu")
    with pytest.raises(UserError) as err:
        session.run([np.zeros((2, 28, 28), np.float32)])
    assert str(err.value) == ("input 'image' must have shape [batch, 1, 28, 28] float32 (rank 4); "
                              "got [2, 28, 28] (rank 3)")
    with pytest.raises(UserError, match=r"axis 3 is 27, the model wants 28"):
        session.run([np.zeros((2, 1, 28, 27), np.float32)])
    with pytest.raises(UserError, match="no samples"):
        session.run([np.zeros((0, 1, 28, 28), np.float32)])


# ---------------------------------------------------------------- torch stays out


def test_fresh_process_never_imports_torch(image_model, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((3, 1, 28, 28), np.float32))
    code = f"""
import sys
import numpy as np
from dslc.runtime.serving.inference import InferenceSession
import dslc.runtime.serving.predict, dslc.runtime.serving.serve, dslc.runtime.serving.input_files
import dslc.runtime.serving.app, dslc.runtime.serving.request_body, dslc.runtime.serving.batching
session = InferenceSession({str(image_model[0])!r})
assert session.run([np.load({str(x)!r})], batch=2)[0].shape == (3, 10)
from dslc.cli import main
assert main(["predict", {str(image_model[0])!r}, {str(x)!r}]) == 0
assert main(["predict", {str(image_model[0])!r}, {str(DIGIT)!r}]) == 0      # preprocessing from metadata
assert "torch" not in sys.modules, "torch was imported"
print("no torch")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert "no torch" in result.stdout
