"""One row per layer of the catalog: its shape rule and parameter count against what torch builds and runs.

Adding a layer to compiler/layers.py is one `register(...)` there and one row here. Each row is checked as a
stage of a model (the checker's output shape against the torch module's output on a batch of 3, the
parameter count the checker computes without torch against the built module's, the constructor `dslc emit`
writes against the module dslc builds) and, for per-step layers, as `each STAGE` over 4 time steps.
"""

from __future__ import annotations

import pytest
import torch

from dslc.compiler.build import build_layer, build_model
from dslc.compiler.check import check
from dslc.compiler.emit_python import EACH_CLASS, layer_constructor
from dslc.compiler.layers import LAYERS, layer_params
from dslc.dsl.diagnostics import Source
from dslc.dsl.parse import parse

# layer: (input type, the stage as a spec writes it)
ROWS = {
    "linear": ("f32[6]", "linear(4, bias=false)"),
    "conv1d": ("f32[3, 11]", "conv1d(5, kernel=3, stride=2, padding=1)"),
    "conv2d": ("f32[2, 9, 8]", "conv2d(4, kernel=[3, 2], dilation=2, groups=2)"),
    "maxpool1d": ("f32[3, 10]", "maxpool1d(3, stride=2)"),
    "maxpool2d": ("f32[2, 9, 8]", "maxpool2d(2, padding=1)"),
    "avgpool1d": ("f32[3, 10]", "avgpool1d(2)"),
    "avgpool2d": ("f32[2, 9, 8]", "avgpool2d([3, 2])"),
    "adaptive_avgpool1d": ("f32[3, 10]", "adaptive_avgpool1d(4)"),
    "adaptive_avgpool2d": ("f32[2, 9, 8]", "adaptive_avgpool2d([2, 3])"),
    "adaptive_maxpool1d": ("f32[3, 10]", "adaptive_maxpool1d(4)"),
    "adaptive_maxpool2d": ("f32[2, 9, 8]", "adaptive_maxpool2d([2, 3])"),
    "batchnorm": ("f32[4, 5, 5]", "batchnorm(momentum=0.2)"),
    "layernorm": ("f32[3, 7]", "layernorm(eps=1e-3)"),
    "dropout": ("f32[5]", "dropout(0.25)"),
    "identity": ("f32[2, 3]", "identity"),
    "relu": ("f32[5]", "relu"),
    "leaky_relu": ("f32[5]", "leaky_relu(0.2)"),
    "elu": ("f32[5]", "elu(0.5)"),
    "gelu": ("f32[5]", "gelu"),
    "tanh": ("f32[5]", "tanh"),
    "sigmoid": ("f32[5]", "sigmoid"),
    "softmax": ("f32[3, 4]", "softmax(dim=0)"),
    "log_softmax": ("f32[3, 4]", "log_softmax"),
    "flatten": ("f32[2, 3, 4]", "flatten"),
    "reshape": ("f32[12]", "reshape(3, -1)"),
    "embedding": ("i64[7]", "embedding(11, 5, padding=0)"),
    "rnn": ("f32[6, 3]", "rnn(4, layers=2, nonlinearity=relu, dropout=0.1)"),
    "lstm": ("f32[6, 3]", "lstm(4, bidirectional=true)"),
    "gru": ("f32[6, 3]", "gru(4, layers=2, bidirectional=true)"),
    "last": ("f32[6, 3]", "last"),
    "mean_over_time": ("f32[6, 3]", "mean_over_time"),
    "sum_over_time": ("f32[6, 3]", "sum_over_time"),
    "transpose": ("f32[3, 4]", "transpose(0, 1)"),
    "permute": ("f32[2, 3, 4]", "permute(2, 0, 1)"),
    "position_embedding": ("f32[6, 8]", "position_embedding(10)"),
    "sinusoidal_position": ("f32[6, 8]", "sinusoidal_position"),
    "multihead_attention": ("f32[6, 8]", "multihead_attention(2, causal=true)"),
    "transformer_encoder": ("f32[5, 8]", "transformer_encoder(2, heads=2, ff=16, dropout=0.0, activation=gelu, "
                                         "norm_first=true)"),
}


def test_every_layer_has_a_row():
    assert sorted(ROWS) == sorted(LAYERS), "add a row for each new layer (and drop rows of removed ones)"


def _layer(input_type: str, stage: str):
    text = f"model m(x: {input_type}) {{ {stage} }}"
    checked = check(parse(text, "row.dlspec"), Source("row.dlspec", text))
    return checked.model, checked.model.layers[0]


def _sample(shape, batch: int):
    dims = (batch,) + tuple(shape.dims)
    if shape.is_int:
        return torch.randint(0, 11, dims)
    return torch.randn(dims)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_shape_rule_and_parameters_match_torch(name):
    torch.manual_seed(0)
    model, layer = _layer(*ROWS[name])
    module = build_model(model).eval()
    out = module(_sample(layer.input, 3))
    assert tuple(out.shape) == (3,) + tuple(layer.output.dims), str(layer)
    assert str(out.dtype).removeprefix("torch.") == {"f32": "float32", "i64": "int64"}[layer.output.dtype]
    assert layer_params(layer) == sum(p.numel() for p in module.parameters()), str(layer)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_emitted_constructor_builds_the_same_module(name):
    from torch import nn

    from dslc.compiler.emit_python import HELPERS, inline_source
    torch.manual_seed(0)
    _, layer = _layer(*ROWS[name])
    entry = LAYERS[name]
    scope = {"nn": nn, "torch": torch, "math": __import__("math")}
    for helper in HELPERS.values():
        exec(helper, scope)
    built = build_layer(layer).eval()
    x = _sample(layer.input, 3)
    if entry.inline_only:          # written inline in forward: it computes what dslc's module computes
        torch.testing.assert_close(eval(inline_source(layer, "x"), {**scope, "x": x}), built(x))
        return
    exec(EACH_CLASS, scope)
    written = eval(layer_constructor(layer), scope)
    if entry.emit_module:          # dslc's module subclasses the torch class ejected code constructs
        assert isinstance(built, type(written)), layer_constructor(layer)
    else:
        assert repr(written) == repr(built).replace("(carry_state)", ""), layer_constructor(layer)
    assert [(k, v.shape) for k, v in written.state_dict().items()] == \
           [(k, v.shape) for k, v in built.state_dict().items()]
    if entry.inline is not None:   # its module is called as the entry writes it: the same values
        written.load_state_dict(built.state_dict())
        written.eval()
        call = inline_source(layer, "x", None, module="m")
        torch.testing.assert_close(eval(call, {**scope, "x": x, "m": written}), built(x))


@pytest.mark.parametrize("name", sorted(n for n, l in LAYERS.items() if not l.sequence_input))
def test_each_applies_the_layer_at_every_step(name):
    torch.manual_seed(0)
    input_type, stage = ROWS[name]
    dtype, dims = input_type.split("[")
    model, layer = _layer(f"{dtype}[4, {dims}", f"each {stage}")
    module = build_model(model).eval()
    x = _sample(layer.input, 2)
    out = module(x)
    assert tuple(out.shape) == (2,) + tuple(layer.output.dims)
    assert layer_params(layer) == sum(p.numel() for p in module.parameters())
    inner = module._modules[layer.name]
    step = getattr(inner, "inner", inner)
    torch.testing.assert_close(out[:, 1], step(x[:, 1]))


def test_adding_a_layer_is_one_entry_and_one_row(monkeypatch):
    """docs/architecture.md's example: a new layer is one register(...) and one row, and it checks, builds,
    ejects and runs under `each` with nothing else edited."""
    from dslc.compiler import layers
    monkeypatch.setattr(layers, "LAYERS", dict(layers.LAYERS))
    monkeypatch.setitem(ROWS, "swish", ("f32[5]", "swish"))
    import dslc.compiler.build as build
    import dslc.compiler.emit_python as emit_python
    import dslc.compiler.ir as ir_module
    import dslc.compiler.model_check as model_check
    for module in (ir_module, model_check, build, emit_python):      # modules that imported the catalog
        monkeypatch.setattr(module, "LAYERS", layers.LAYERS)
    layers.register(layers.Layer("swish", "x * sigmoid(x).", layers._any_float("swish"), "nn.SiLU", last_axis=True))
    test_shape_rule_and_parameters_match_torch("swish")
    _, layer = _layer("f32[5]", "swish")
    assert layer_constructor(layer) == "nn.SiLU()"
    test_each_applies_the_layer_at_every_step("swish")
