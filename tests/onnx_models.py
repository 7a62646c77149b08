"""Tiny specs exported to ONNX for the inference, predict, serve and security tests.

`export_spec` compiles a spec with the real builder and exports it with
torch.onnx.export, writing the dslc metadata_props the exporter records.
"""

import warnings
from pathlib import Path

DIGIT = Path(__file__).resolve().parents[1] / "runtime" / "data" / "samples" / "digit7.png"

IMAGE_SPEC = """
data {
    source = mnist(root="data/mnist")
    batch = 8
}

model tiny(image: f32[1, 28, 28]) {
    conv2d(2, kernel=3, padding=1) relu maxpool2d(4)
    flatten
    linear(data.classes)
}

train {
    loss = cross_entropy
    optimizer = adam(lr=0.01)
    epochs = 1
}
"""

TEXT_SPEC = """
data {
    source = text_csv("reviews.csv", text="text", label="category", labels=["rotten", "fresh"],
                      tokenizer=word, vocab=12, max_len=6)
    batch = 4
}

model classifier(tokens: i64[T]) {
    embedding(vocab=data.vocab, dim=8, padding=0)
    gru(8)
    last
    linear(data.classes)
}

train {
    loss = cross_entropy
    optimizer = adam(lr=0.01)
    epochs = 1
}
"""

TWO_OUTPUT_SPEC = """
data {
    source = mnist(root="data/mnist")
    batch = 8
}

model ae(x: f32[784]) {
    block encoder { linear(3) tanh }
    block decoder { linear(784) sigmoid }
    code = encoder(x)
    return code, decoder(code)
}

train {
    loss = mse(output[1], x)
    optimizer = adam(lr=0.01)
    epochs = 1
}
"""

VOCAB = ["<pad>", "<unk>", "the", "a", "movie", "film", "good", "bad", "great", "awful", "plot", "fun", "dull", "!"]
# What the text_csv loader learns (the tokenizer with its vocabulary), added to the check-time facts.
TEXT_FACTS = {"tokenizer": {"kind": "word", "lowercase": True, "max_len": 6, "vocab": VOCAB, "pad_side": "left"}}


def export_spec(spec_text: str, folder, name: str, facts: dict | None = None, overrides=(), seed: int = 0,
                metadata: bool = True):
    """Compile a spec and export its model to folder/name.onnx; returns (path, module).

    The metadata is what the exporter writes for a trained run (runtime.export.build_metadata with the
    preprocessing recipe of runtime.preprocessing); the graph comes from torch's TorchScript exporter,
    which is much faster than the verified export (test_predict.py runs that one once).
    """
    import onnx
    import torch
    from dslc.compiler.build import build_model
    from dslc.runtime.export.onnx_export import build_metadata, input_axes, output_axes, output_names, set_metadata
    from dslc.runtime.data.preprocessing import preprocessing_for

    from dslc.cli import load

    spec = folder / f"{name}.dlspec"
    spec.write_text(spec_text)
    checked = load(str(spec), list(overrides))
    torch.manual_seed(seed)
    module = build_model(checked.model, checked.init).eval()
    model = checked.model
    samples = []
    for shape in model.inputs.values():
        dims = [5 if isinstance(d, str) else d for d in shape.dims]
        samples.append(torch.randint(0, 4, (2, *dims)) if shape.dtype.startswith("i") else torch.randn(2, *dims))
    names = output_names(model)
    path = folder / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(samples), str(path), input_names=list(model.inputs), output_names=names,
                          dynamic_axes={**input_axes(model), **output_axes(model, names)}, dynamo=False)
    if metadata:
        preprocessing = preprocessing_for(checked, {**checked.data.source.facts, **(facts or {})})
        proto = onnx.load(str(path))
        set_metadata(proto, build_metadata(checked, names, {"preprocessing": preprocessing}))
        onnx.save(proto, str(path))
    return path, module
