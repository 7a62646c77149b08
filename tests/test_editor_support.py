"""The language server's parts, in-process: the position index (editor.spec_index), completion contexts
(editor.completion), hover text (editor.hover) and formatting with comments kept (editor.formatting)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dslc.compiler.check import check_all
from dslc.dsl.diagnostics import Source
from dslc.compiler.layers import LINE_STARTERS
from dslc.dsl.format import format_spec
from dslc.dsl.parse import parse
from dslc.editor import catalogs
from dslc.editor.completion import complete, context
from dslc.editor.formatting import comments, format_text
from dslc.editor.hover import markdown
from dslc.editor.spec_facts import Where, analyse
from dslc.editor.spec_index import index

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.dlspec"))


def indexed(name: str):
    path = ROOT / "specs" / f"{name}.dlspec"
    return index(analyse(path.read_text(), str(path)))


def at(text_with_cursor: str):
    offset = text_with_cursor.index("|")
    return context(text_with_cursor.replace("|", "", 1), offset)


# ---------------------------------------------------------------- the index


def test_every_stage_of_every_shipped_spec_has_a_hover_with_shapes_and_a_hint() -> None:
    for path in SPECS:
        checked = analyse(path.read_text(), str(path))
        ix = index(checked)
        for model in checked.models.values():
            for stage in model.stages:
                fact = ix.fact_at(stage.where.line, stage.where.column)
                assert fact is not None and fact.kind == "layer", (path.name, stage.name)
                assert (fact.input, fact.output, fact.params) == (stage.input, stage.output, stage.params)
                assert any((h.line, h.column) == (stage.where.end_line, stage.where.end_column) for h in ix.shape_hints)


def test_the_innermost_fact_wins_and_definitions_point_at_names() -> None:
    ix = indexed("cnn_mnist")
    assert ix.fact_at(14, 5).name == "linear_1"             # `linear`
    assert ix.fact_at(14, 15).name == "data.classes"        # inside linear(data.classes)
    assert ix.definition_at(14, 15) == Where(5, 15, 5, 39)  # the source call
    assert ix.definition_at(19, 25) == Where(2, 5, 2, 7)    # lr -> let lr
    assert ix.fact_at(3, 1) is None


def test_hover_text_names_shapes_parameters_values_and_origins() -> None:
    ix = indexed("cnn_mnist")
    text = markdown(ix.fact_at(14, 5))
    assert text.startswith("```dlspec\nlinear_1 · linear(10)\n```")
    assert "input `f32[1568]` → output `f32[10]` · 15,690 parameters" in text
    data = markdown(ix.fact_at(14, 15))
    assert "data.classes = 10" in data and "The number of classes" in data
    gru = indexed("gru_text")
    vocab = gru.fact_at(12, 26)                             # data.vocab in embedding(vocab=data.vocab, ...)
    assert vocab.value == "20002" and "padding" in vocab.doc
    unknown = index(analyse("data { source = mnist() }\nmodel m(x: f32[784]) { linear(data.vocab) }\n", "m.dlspec"))
    fact = unknown.fact_at(2, 32)
    assert fact.value is None and "gives no fact 'vocab'" in fact.origin and "classes" in fact.origin


def test_init_targets_and_variant_settings_resolve() -> None:
    ix = indexed("dropout_overfit")
    target = ix.fact_at(18, 8)                              # init { linear.weight = ... }
    assert target.kind == "init target" and target.value == "weight of linear_1, linear_2, linear_3"
    overfit = ix.fact_at(28, 14)                            # `p` in `overfit: p = 0.0`
    assert overfit.kind == "let" and overfit.definition == Where(2, 5, 2, 6)
    assert "variant overfit: 0.0" in overfit.title


def test_a_spec_with_an_error_in_one_model_still_indexes_the_rest() -> None:
    text = (ROOT / "specs" / "autoencoder_mnist.dlspec").read_text().replace("linear(784) sigmoid", "linear(784) sigmoidd")
    ix = index(analyse(text, "auto.dlspec"))
    assert ix.fact_at(9, 9).name == "encoder.linear_1"      # the encoder checked fine
    assert ix.fact_at(12, 58).kind == "catalog"             # the decoder failed: linear's doc, no shapes
    assert ix.fact_at(12, 70) is None                       # `sigmoidd` is nothing known


# ---------------------------------------------------------------- completion contexts


@pytest.mark.parametrize("text, where, block, key, call", [
    ("|", "top", None, None, None),
    ("let lr = 0.1\n|", "top", None, None, None),
    ("let lr = |", "value", None, None, None),
    ("data {\n    |", "key", "data", None, None),
    ("data {\n    source = |", "value", "data", "source", None),
    ("data {\n    source = mnist(|", "argument", "data", "source", "mnist"),
    ('data {\n    source = text_csv("p", tokenizer=|', "value", "data", "source", "text_csv"),
    ("data {\n    source = table(\n        x = [1, 2],\n        |", "argument", "data", "source", "table"),
    ("data {\n    source = mnist()\n    batch = 5\n    |", "key", "data", None, None),
    ("train { loss = mse; opt|", "key", "train", None, None),
    ("train {\n    metrics = [accuracy, |", "value", "train", "metrics", None),
    ("train {\n  evaluate = every(|", "argument", "train", "evaluate", "every"),
    ("model cnn(image: |", "type", "model", None, None),
    ("model m(x: f32[3]) {\n    conv2d(16, kernel=5) re|", "stage", "model", None, None),
    ("model m(x: f32[3]) {\n    conv2d(16, |", "argument", "model", None, "conv2d"),
    ("model m(x: f32[3]) {\n    linear(data.|", "data fact", "model", None, None),
    ("model m(x: f32[3]) {\n  block enc {\n    linear(3) |", "stage", "block", None, None),
    ("model m(x: f32[3]) {\n  code = |", "expression", "model", None, None),
    ("model m(x: f32[3]) {\n  param w: f32[3] = |", "value", "model", "param", None),
    ("model m(x: f32[3]) { linear(3) }\n|", "top", None, None, None),
    ("variants {\n    |", "none", "variants", None, None),
    ("variants {\n    a: p = 0.1, |", "key", "variants", None, None),
    ("variants {\n    a: p = 0.1\n    b: train.steps = |", "value", "variants", "train.steps", None),
    ("init { linear.weight = |", "value", "init", "linear.weight", None),
    ("# a comment |", "none", None, None, None),
    ('data { source = mnist(root="da|', "none", None, None, None),
])
def test_completion_context(text, where, block, key, call) -> None:
    ctx = at(text)
    assert (ctx.where, ctx.block, ctx.key, ctx.call) == (where, block, key, call)


def test_completion_items_come_from_the_catalogs_and_the_spec() -> None:
    known = indexed("autoencoder_mnist")
    base = (ROOT / "specs" / "autoencoder_mnist.dlspec").read_text()
    offset = base.index("    code = encoder(x)")
    items, prefix = complete(base, offset + 4, known)
    labels = {i.label for i in items}
    assert {"encoder", "decoder", "linear", "each", "return"} <= labels and prefix == ""
    each_text = "model m(x: f32[T, 3]) {\n    each "
    each_items, _ = complete(each_text, len(each_text), known)
    assert "linear" in {i.label for i in each_items} and "return" not in {i.label for i in each_items}
    assert len({i.label for i in complete("data {\n    ", 11, known)[0]}) == len(catalogs.setting_keys()["data"])
    choice, _ = complete('data { source = text_csv("p", tokenizer=', 40, known)
    assert {"word", "char"} <= {i.label for i in choice}
    device, _ = complete("train { device = ", 17, known)
    assert {"auto", "cpu", "cuda"} <= {i.label for i in device}
    init, _ = complete("init {\n    ", 11, known)
    assert {"linear.weight", "linear.bias", "encoder.linear_1.weight"} <= {i.label for i in init}


def test_setting_choices_are_accepted_by_the_checker() -> None:
    base = "data { source = mnist() }\nmodel m(image: f32[1, 28, 28]) { flatten linear(10) }\n"
    for (block, key), choices in catalogs.SETTING_CHOICES.items():
        for choice in choices:
            extra = f"{block} {{ {key} = {choice}" + ("; loss = cross_entropy" if block == "train" else "") + " }\n"
            text = base.replace("data { source = mnist() }", "data { source = mnist(); " + f"{key} = {choice} }}") \
                if block == "data" else base + extra
            spec = parse(text)
            check_all(spec, Source("<spec>", text))           # raises SpecError if the checker refused it


def test_catalog_entries_have_signatures_and_docs() -> None:
    tables = catalogs.catalogs()
    assert {"layer", "loss", "optimizer", "schedule", "metric", "data source", "initialiser"} <= set(tables)
    conv = catalogs.lookup("conv2d")
    assert conv.signature.startswith("conv2d(channels, kernel, stride=1, padding=0")
    assert catalogs.lookup("table", ("data source",)).signature == "table(name=...)"
    assert all(e.doc for t in tables.values() for e in t.values())


# ---------------------------------------------------------------- formatting


def test_formatting_keeps_every_comment_next_to_its_statement() -> None:
    text = ("# header\nlet hidden=8  # width\nmodel a(x: f32[3]) { # opening\n  linear(hidden) # after linear\n"
            "  # before relu\n  relu\n  # last in the model\n}\n# end of file\n")
    out = format_text(text)
    assert out == ("# header\nlet hidden = 8  # width\n\nmodel a(x: f32[3]) {  # opening\n"
                   "    # before relu\n    linear(hidden) relu  # after linear\n    # last in the model\n}\n"
                   "# end of file\n")
    assert parse(out) == parse(text) and format_text(out) == out


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_formatting_shipped_specs_is_dslc_fmt_plus_their_comments(path: Path) -> None:
    text = path.read_text()
    out = format_text(text, str(path))
    assert parse(out) == parse(text)
    assert sorted(c.text for c in comments(out)) == sorted(c.text for c in comments(text))
    stripped = "\n".join(line.split("  #")[0].rstrip() for line in out.splitlines() if not line.lstrip().startswith("#"))
    assert stripped + "\n" == format_spec(parse(text), LINE_STARTERS)
    assert format_text(out, str(path)) == out


def test_comment_scanner_skips_hashes_in_strings() -> None:
    found = comments('data { source = csv("a#b.csv") }  # real\n')
    assert [c.text for c in found] == ["# real"]
