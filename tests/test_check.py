"""The checker: what a CheckedSpec holds (shapes, defaults, data facts), overrides and variants,
and that independent mistakes are all reported while one mistake is reported once."""

from __future__ import annotations

from pathlib import Path

import pytest

from dslc.cli import load
from dslc.compiler.check import check, check_all, parse_override
from dslc.errors import SpecError
from dslc.dsl.diagnostics import Source
from dslc.dsl.parse import parse

SPECS = Path(__file__).resolve().parents[1] / "specs"


def checked(text: str, overrides=(), variant=None):
    return check(parse(text, "t.dlspec"), Source("t.dlspec", text), [parse_override(o) for o in overrides], variant)


def errors(text: str, overrides=()) -> list[str]:
    with pytest.raises(SpecError) as info:
        checked(text, overrides)
    return [f"{d.span.line}:{d.span.column} {d.message}" for d in info.value.diagnostics]


MLP = """
let hidden = 32
data {
    source  = table(x=[1.0, 2.0, 3.0, 4.0], y=[2.0, 4.0, 6.0, 8.0])
    inputs  = [x]
    targets = [y]
}
model net(x: f32[1]) {
    linear(hidden) relu
    linear(1)
}
train {
    loss = mse
    optimizer = sgd(lr=0.1)
}
"""


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.dlspec")), ids=lambda p: p.stem)
def test_every_spec_checks_without_warnings(path: Path):
    from dslc.dsl.read import read_spec
    spec, source = read_spec(path)
    for result in check_all(spec, source):
        assert result.warnings == []


def test_cnn_shapes_and_defaults():
    c = load(str(SPECS / "cnn_mnist.dlspec"))
    m = c.model
    assert [str(l.output) for l in m.layers] == [
        "f32[16, 28, 28]", "f32[16, 28, 28]", "f32[16, 14, 14]", "f32[32, 14, 14]", "f32[32, 14, 14]",
        "f32[32, 7, 7]", "f32[1568]", "f32[10]"]
    assert [l.name for l in m.layers][:3] == ["conv2d_1", "relu_1", "maxpool2d_1"]
    assert str(m.layers[0]) == "conv2d(16, kernel=5, padding=2)"
    t = c.train
    assert (t.optimizer.name, t.optimizer.args["lr"], t.epochs, t.steps) == ("adam", 0.001, 1, None)
    assert (t.evaluate, t.log, t.checkpoint_every) == (("epochs", 1), ("steps", 50), ("epochs", 1))
    assert (t.seed, t.device, t.precision, t.deterministic, t.warmup_steps) == (0, "auto", "fp32", False, 0)
    assert [x.name for x in t.metrics] == ["accuracy"] and [c.name for c in t.loss.calls()] == ["cross_entropy"]
    d = c.data
    assert (d.source.name, d.batch, d.shuffle, d.validation, d.input_names, d.target_names) == (
        "mnist", 50, True, None, ["image"], ["label"])
    assert d.source.facts["classes"] == 10
    assert (c.export.format, c.export.opset, c.export.auto) == ("onnx", 18, True)


def test_sequences_keep_their_symbolic_length():
    assert str(load(str(SPECS / "rnn_sin_cos.dlspec")).model.output_shapes[0]) == "f32[T, 1]"
    gru = load(str(SPECS / "gru_text.dlspec"))
    assert [str(l.output) for l in gru.model.layers][:3] == ["f32[T, 100]", "f32[T, 256]", "f32[256]"]
    assert gru.data.source.facts["vocab"] == 20002
    conv = checked("model m(x: f32[1, T, 28]) { conv2d(4, kernel=3) maxpool2d(2) }").model
    assert [str(l.output) for l in conv.layers] == ["f32[4, T-2, 26]", "f32[4, (T-2-2)/2+1, 13]"]


def test_expression_models_and_losses():
    c = load(str(SPECS / "thermometer.dlspec"))
    assert [p.name for p in c.model.params] == ["w", "b"] and str(c.model.output_shapes[0]) == "f32[]"
    assert c.train.loss.calls() == [] and c.train.loss.text == "mean((output - t_c) ** 2)"
    assert c.data.input_names == ["t_u * scale"] and c.data.batch is None and c.data.shuffle is False
    ae = load(str(SPECS / "autoencoder_mnist.dlspec"))
    assert [str(s) for s in ae.model.output_shapes] == ["f32[3]", "f32[784]"]
    assert list(ae.model.blocks) == ["encoder", "decoder"]


def test_overrides_of_lets_and_block_settings():
    c = checked(MLP, ["hidden=8", "train.steps=7", "data.batch=2", "data.validation=0.25", "train.optimizer=adam(lr=0.5)"])
    assert c.model.layers[0].args["features"] == 8
    assert (c.train.steps, c.train.epochs, c.data.batch, c.data.validation) == (7, None, 2, 0.25)
    assert (c.train.optimizer.name, c.train.optimizer.args["lr"]) == ("adam", 0.5)
    c = checked(MLP, ["export.opset=17", "init.linear.weight=normal(0, 0.01)"])
    assert c.export.opset == 17 and (c.init[0].target, c.init[0].param, c.init[0].dist.name) == ("linear", "weight", "normal")
    assert errors(MLP, ["hiden=8"]) == ["1:1 --set: there is no variable 'hiden' to set"]   # at the name
    assert errors(MLP, ["train.epoch=3"]) == ["1:1 --set: there is no setting 'train.epoch'"]
    assert errors(MLP, ["hidden=8.5"]) == ["1:8 --set: 'hidden' is a whole number in the spec"]
    assert errors(MLP, ["train.steps=0"]) == ["1:13 'steps' must be positive (got 0)"]


def test_override_errors_point_into_the_override():
    with pytest.raises(SpecError) as info:
        checked(MLP, ["train.epochs=-1"])
    text = str(info.value)
    assert text.startswith("--set:1:14: error:") and "1 | train.epochs=-1" in text


def test_a_variable_used_before_its_let_or_by_itself_is_named_as_such():
    assert errors("let a = b + 1\nlet b = 2\nmodel m(x: f32[4]) { linear(a) }") == \
        ["1:9 'b' is used before it is defined (at line 2)"]
    assert errors("let a = b\nlet b = 2\nmodel m(x: f32[4]) { linear(a) }") == \
        ["1:9 'b' is used before it is defined (at line 2)"]
    assert errors("let a = a * 2\nmodel m(x: f32[4]) { linear(a) }") == \
        ["1:9 'a' refers to itself: a variable's value cannot use its own name"]
    with pytest.raises(SpecError) as info:                 # not "unknown name 'hidden' (did you mean 'hidden'?)"
        checked(MLP, ["hidden=hidden"])
    d, = info.value.diagnostics
    assert (d.where.path, d.span.line, d.span.column) == ("--set", 1, 8)
    assert d.message == "'hidden' refers to itself: a variable's value cannot use its own name"
    assert "did you mean" not in (d.hint or "")
    # an error inside a let is reported at the let, once, not at each use
    assert errors('let w = 3 * "x"\nmodel m(x: f32[4]) { linear(w) linear(w) }') == \
        ['1:13 arithmetic needs numbers, not "x"']


def test_thousands_of_mistakes_in_several_variants_are_reported_once_each(capsys):
    """Each variant reports the same 2,000 mistakes: they are merged by their text in one pass (this took
    minutes when merged pairwise), and the command line shows the first 50 and says how many more."""
    text = "let lr = 0.1\nmodel m(x: f32[4]) {\n" + "    linear(q)\n" * 2000 + "}\n" \
        "variants {\n    a: lr = 1\n    b: lr = 2\n}\n"
    with pytest.raises(SpecError) as info:
        check_all(parse(text, "t.dlspec"), Source("t.dlspec", text))
    assert len(info.value.diagnostics) == 2000
    assert {d.span.line for d in info.value.diagnostics} == set(range(3, 2003))
    from dslc.cli import shown
    lines = shown(info.value).splitlines()
    assert lines[-1] == "... and 1,950 more (dslc check --format json lists every one)"
    assert sum(line.startswith("t.dlspec:") for line in lines) == 50


def test_a_long_chain_of_stages_is_checked_in_linear_time():
    """The model's chain grows by appending to a list (a new tuple per stage made 180,000 stages take
    minutes); the IR still holds one Chain with every layer in order."""
    n = 20_000
    c = checked("model m(x: f32[4]) {\n" + "    relu\n" * (n - 1) + "    linear(2)\n}")
    chain, = c.model.outputs
    assert len(chain.layers) == n and chain.layers[-1] == "linear_1" and chain.shape.dims == (2,)


def test_variants_are_checked_one_by_one():
    results = check_all(*_read("dropout_overfit.dlspec"))
    assert [(r.variant, r.model.layers[1].args["p"]) for r in results] == [("overfit", 0.0), ("dropout", 0.5)]
    with pytest.raises(SpecError, match="there is no variant 'nope'"):
        check(*_read("dropout_overfit.dlspec"), variant="nope")


def _read(name):
    from dslc.dsl.read import read_spec
    return read_spec(SPECS / name)


def test_one_mistake_one_error_but_every_mistake_reported():
    text = """model m(x: f32[1, 28, 28]) {
    block unused { lienar(3) }
    linear(10)
    relu
    lstm(4, hiden=3)
}"""
    assert errors(text) == ["2:20 unknown layer 'lienar'",
                            "3:5 linear expects a flat feature vector [F] but gets [1, 28, 28]",
                            "5:13 lstm has no argument 'hiden'"]


def test_a_broken_model_does_not_blame_the_loss():
    text = MLP.replace("linear(1)\n", "linear(1) flatten reshape(2, 2)\n")
    assert errors(text) == ["10:23 reshape: [1] holds 1 values but [2, 2] holds 4"]


def test_warnings():
    c = checked("let unused = 1\nmodel m(x: f32[2], y: f32[2]) { block b { relu } return x }")
    assert sorted(w.message for w in c.warnings) == ["block 'b' is never used", "input 'y' is never used",
                                                     "variable 'unused' is never used"]


def test_absurd_sizes_are_refused_not_built():
    assert errors("model m(x: f32[100000]) { linear(100000) }") == [
        "1:1 model m would have 10,000,100,000 parameters, more than the 2,000,000,000 dslc builds"]
    assert errors("model m(x: i64[T]) { embedding(10 ** 9, 1000) }")[0].endswith("dslc builds")
    assert errors("let n = 2 ** 10 ** 10\nmodel m(x: f32[1]) { linear(n) }") == ["1:9 number too large"]
