"""`dslc lsp` driven as an editor drives it: a subprocess over pipes, speaking LSP (tests/lsp_client.py).

initialize, didOpen, didChange, hover, completion, definition, documentSymbol,
formatting, inlayHint, didClose, shutdown — on the shipped specs and on broken
ones, asserting ranges (0-based, UTF-16 as LSP counts) and contents.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from lsp_client import LspClient
from lsprotocol import types

from dslc.cli import main
from dslc.dsl.parse import parse

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
BROKEN = sorted(p for p in (ROOT / "tests" / "broken").iterdir() if p.suffix == ".dlspec")


@pytest.fixture(scope="module")
def lsp():
    client = LspClient()
    client.initialize_result = client.start()
    yield client
    assert client.stop() == 0


def rng(r: types.Range) -> tuple[int, int, int, int]:
    return r.start.line, r.start.character, r.end.line, r.end.character


def labels(result) -> list[str]:
    return [i.label for i in result.items]


def test_initialize_announces_every_feature(lsp) -> None:
    caps = lsp.initialize_result.capabilities
    assert lsp.initialize_result.server_info.name == "dslc"
    assert caps.hover_provider and caps.definition_provider and caps.document_symbol_provider
    assert caps.document_formatting_provider and caps.inlay_hint_provider
    assert "." in caps.completion_provider.trigger_characters
    assert caps.text_document_sync.change == types.TextDocumentSyncKind.Incremental


@pytest.mark.parametrize("name", sorted(p.stem for p in SPECS.glob("*.dlspec")))
def test_shipped_specs_open_without_diagnostics(lsp, name) -> None:
    uri = lsp.open(SPECS / f"{name}.dlspec")
    assert lsp.diagnostics(uri) == ()
    lsp.close(uri)


def test_hover_on_the_cnn_linear_shows_its_shapes_and_parameters(lsp) -> None:
    uri = lsp.open(SPECS / "cnn_mnist.dlspec")
    hover = lsp.hover(uri, 13, 6)                       # `linear(data.classes)`, line 14
    text = hover.contents.value
    assert "input `f32[1568]`" in text and "output `f32[10]`" in text and "15,690 parameters" in text
    assert "linear_1" in text and "Fully connected layer" in text
    assert rng(hover.range) == (13, 4, 13, 24)
    conv = lsp.hover(uri, 10, 4).contents.value
    assert "conv2d_1" in conv and "`f32[1, 28, 28]`" in conv and "`f32[16, 28, 28]`" in conv and "416 parameters" in conv


def test_hover_on_data_classes_lets_inputs_models_and_catalog_names(lsp) -> None:
    uri = lsp.open(SPECS / "cnn_mnist.dlspec")
    classes = lsp.hover(uri, 13, 17)                    # data.classes inside linear(...)
    assert rng(classes.range) == (13, 11, 13, 23)
    assert "data.classes = 10" in classes.contents.value
    assert 'mnist(root="data/mnist")' in classes.contents.value and "line 5" in classes.contents.value
    lr = lsp.hover(uri, 18, 25).contents.value          # the `lr` in adam(lr=lr)
    assert "let lr = 0.001" in lr
    image = lsp.hover(uri, 9, 12).contents.value        # model cnn(image: ...)
    assert "`f32[1, 28, 28]`" in image and "the data gives" in image.lower()
    model = lsp.hover(uri, 9, 7).contents.value
    assert "28,938 parameters" in model and "`f32[10]`" in model
    adam = lsp.hover(uri, 18, 18).contents.value
    assert "adam(lr=0.001" in adam and "torch.optim.Adam" in adam
    kernel = lsp.hover(uri, 10, 17).contents.value      # kernel= of conv2d
    assert "kernel" in kernel and "required" in kernel
    assert lsp.hover(uri, 2, 0) is None                 # an empty line


def test_hover_on_block_calls_params_and_variant_values(lsp) -> None:
    auto = lsp.open(SPECS / "autoencoder_mnist.dlspec")
    call = lsp.hover(auto, 13, 18).contents.value        # the `(` of encoder(x): the whole call
    assert "encoder(...)" in call and "`f32[784]`" in call and "`f32[3]`" in call and "109,555 parameters" in call
    thermo = lsp.open(SPECS / "thermometer.dlspec")
    w = lsp.hover(thermo, 21, 11).contents.value         # `w` in return w * t_u + b
    assert "param w = 1.0" in w and "`f32[]`" in w and "1 parameter" in w
    scale = lsp.hover(thermo, 4, 5).contents.value
    assert "let scale = 0.1" in scale and "scaled_sgd: 0.1" in scale and "raw_adam: 1.0" in scale


def test_a_typo_is_reported_at_its_range_within_one_change(lsp) -> None:
    uri = lsp.open(SPECS / "cnn_mnist.dlspec")
    assert lsp.diagnostics(uri) == ()
    version = lsp.change(uri, "lienar", types.Range(types.Position(13, 4), types.Position(13, 10)))
    (d,) = lsp.diagnostics(uri, version)
    assert rng(d.range) == (13, 4, 13, 10)
    assert d.severity == types.DiagnosticSeverity.Error and d.source == "dslc"
    assert d.message == "unknown layer 'lienar'\nhint: did you mean 'linear'?"
    version = lsp.change(uri, "linear", types.Range(types.Position(13, 4), types.Position(13, 10)))
    assert lsp.diagnostics(uri, version) == ()


def _check_json(path: Path) -> list[dict]:
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        main(["check", "--format", "json", str(path)])
    return json.loads(out.getvalue())


def test_broken_specs_get_dslc_checks_ranges_messages_and_hints(lsp) -> None:
    for path in BROKEN:
        uri = lsp.open(path)
        got = lsp.diagnostics(uri)
        want = _check_json(path)
        assert len(got) == len(want), path.name
        for d, w in zip(got, want):
            if w["line"]:
                assert rng(d.range) == (w["line"] - 1, w["column"] - 1, w["end_line"] - 1, w["end_column"] - 1), path.name
            assert d.message == w["message"] + (f"\nhint: {w['hint']}" if w["hint"] else ""), path.name
            assert d.severity == (types.DiagnosticSeverity.Error if w["severity"] == "error"
                                  else types.DiagnosticSeverity.Warning)
        lsp.close(uri)


def test_every_variant_is_checked_and_warnings_are_marked_unnecessary(lsp) -> None:
    text = (SPECS / "dropout_overfit.dlspec").read_text().replace("overfit: p = 0.0", "overfit: p = 1.5")
    uri = lsp.open(ROOT / "tests" / "variant_error.dlspec", text)
    got = lsp.diagnostics(uri)
    assert [rng(d.range) for d in got] == [(12, 24, 12, 25), (13, 24, 13, 25)]
    assert all("must be at least 0 and below 1 (got 1.5)" in d.message for d in got)

    unused = lsp.open(ROOT / "tests" / "unused.dlspec", "let half = 0.5\nmodel m(x: f32[3]) { linear(2) }\n")
    (d,) = lsp.diagnostics(unused)
    assert d.severity == types.DiagnosticSeverity.Warning and list(d.tags) == [types.DiagnosticTag.Unnecessary]
    assert rng(d.range) == (0, 0, 0, 14)


def test_ranges_count_utf16_code_units(lsp) -> None:
    text = 'let tag = "\U0001F600"; let q = 1 / 0\nmodel m(x: f32[3]) { linear(2) }\n'
    uri = lsp.open(ROOT / "tests" / "emoji.dlspec", text)
    (d,) = lsp.diagnostics(uri)
    assert d.message == "division by zero"
    assert rng(d.range) == (0, 24, 0, 29)                   # the emoji is 2 UTF-16 units, 1 character
    hover = lsp.hover(uri, 0, 20)                          # the `q` after the emoji
    assert hover is not None and rng(hover.range) == (0, 20, 0, 21)


def test_completion_offers_layers_arguments_catalogs_and_data_facts(lsp) -> None:
    base = (SPECS / "cnn_mnist.dlspec").read_text()
    uri = lsp.open(SPECS / "cnn_mnist.dlspec")
    stage = lsp.completion(uri, 13, 4)                     # the start of `linear(...)`
    names = labels(stage)
    assert {"linear", "conv2d", "lstm", "flatten", "each", "return"} <= set(names)
    linear = next(i for i in stage.items if i.label == "linear")
    assert linear.detail == "linear(features, bias=true)" and "Fully connected" in linear.documentation.value
    assert rng(linear.text_edit.range) == (13, 4, 13, 4)

    partial = lsp.completion(uri, 10, 6)                   # `co|nv2d`: the word being typed is replaced
    assert rng(next(iter(partial.items)).text_edit.range) == (10, 4, 10, 6)

    version = lsp.change(uri, base.replace("conv2d(16, kernel=5, padding=2)", "conv2d(16, kernel=5, )", 1))
    lsp.diagnostics(uri, version)
    args = labels(lsp.completion(uri, 10, 25))             # after `kernel=5, `
    assert "stride=" in args and "padding=" in args and "kernel=" not in args and "channels=" not in args
    assert "lr" in args                                    # values too: the lets

    lsp.change(uri, base.replace("linear(data.classes)", "linear(data.)"))
    facts = lsp.completion(uri, 13, 16)                    # after `data.`
    classes = next(i for i in facts.items if i.label == "classes")
    assert classes.detail == "= 10" and {"labels", "scale"} <= set(labels(facts))

    lsp.change(uri, base.replace("optimizer = adam(lr=lr)", "optimizer = "))
    optimizers = labels(lsp.completion(uri, 18, 16))
    assert {"adam", "sgd", "rmsprop"} <= set(optimizers) and "lr" in optimizers and "mse" not in optimizers
    assert {"cross_entropy", "mse"} <= set(labels(lsp.completion(uri, 17, 16)))      # loss = |
    assert "accuracy" in labels(lsp.completion(uri, 20, 17))                         # metrics = [|
    assert {"mnist", "text_csv", "table"} <= set(labels(lsp.completion(uri, 4, 14)))  # source = |
    keys = labels(lsp.completion(uri, 7, 0))               # the start of the data block's `}` line
    assert {"validation", "test", "seed"} <= set(keys)
    assert set(labels(lsp.completion(uri, 9, 16))) >= {"f32", "i64"}                 # image: |
    top = labels(lsp.completion(uri, 2, 0))
    assert {"let", "model", "data", "train", "variants"} <= set(top)


def test_completion_in_a_comment_or_string_offers_nothing(lsp) -> None:
    uri = lsp.open(SPECS / "cnn_mnist.dlspec")
    assert labels(lsp.completion(uri, 0, 20)) == []                       # in the first comment
    assert labels(lsp.completion(uri, 4, 26)) == []                       # inside "data/mnist"


def test_go_to_definition(lsp) -> None:
    cnn = lsp.open(SPECS / "cnn_mnist.dlspec")
    (loc,) = [lsp.definition(cnn, 18, 25)]                 # lr in adam(lr=lr) -> let lr
    assert loc.uri == cnn and rng(loc.range) == (1, 4, 1, 6)
    assert rng(lsp.definition(cnn, 13, 18).range) == (4, 14, 4, 38)    # data.classes -> the source call
    assert lsp.definition(cnn, 2, 0) is None

    auto = lsp.open(SPECS / "autoencoder_mnist.dlspec")
    assert rng(lsp.definition(auto, 13, 13).range) == (7, 10, 7, 17)  # encoder(x) -> block encoder
    assert rng(lsp.definition(auto, 14, 20).range) == (10, 10, 10, 17)  # decoder(code) -> block decoder
    assert rng(lsp.definition(auto, 14, 13).range) == (13, 4, 13, 8)   # code -> code = encoder(x)
    assert rng(lsp.definition(auto, 18, 31).range) == (6, 18, 6, 19)   # x in the loss -> input x

    drop = lsp.open(SPECS / "dropout_overfit.dlspec")
    assert rng(lsp.definition(drop, 28, 13).range) == (1, 4, 1, 5)     # variant `overfit: p = ...` -> let p

    two = ("data { source = mnist() }\nmodel a(image: f32[1, 28, 28]) { flatten linear(10) }\n"
           "model b(image: f32[1, 28, 28]) { flatten linear(data.classes) }\n"
           "train { model = b; loss = cross_entropy }\n")
    uri = lsp.open(ROOT / "tests" / "two_models.dlspec", two)
    assert lsp.diagnostics(uri) == ()
    assert rng(lsp.definition(uri, 3, 16).range) == (2, 6, 2, 7)       # model = b -> model b


def test_document_symbols_outline_the_spec(lsp) -> None:
    uri = lsp.open(SPECS / "autoencoder_mnist.dlspec")
    symbols = lsp.symbols(uri)
    assert [s.name for s in symbols] == ["data", "autoencoder", "train", "export"]
    model = symbols[1]
    assert model.kind == types.SymbolKind.Class and model.detail == "x: f32[784] -> f32[3], f32[784]"
    assert rng(model.range) == (6, 0, 15, 1) and rng(model.selection_range) == (6, 6, 6, 17)
    assert [c.name for c in model.children] == ["x", "encoder", "decoder", "code", "return"]
    encoder = model.children[1]
    assert encoder.detail == "[784] -> [3]" and encoder.children[0].name == "encoder.linear_1"
    assert encoder.children[0].detail == "[128]"
    thermo = lsp.symbols(lsp.open(SPECS / "thermometer.dlspec"))
    variants = next(s for s in thermo if s.name == "variants")
    assert [(v.name, v.detail) for v in variants.children] == [("scaled_sgd", "scale = 0.1, opt = sgd(lr=0.01)"),
                                                                ("raw_adam", "scale = 1.0, opt = adam(lr=0.1)")]


def test_formatting_is_dslc_fmt_with_comments_kept(lsp) -> None:
    messy = ("# a tiny net\nlet   hidden=8  # width\nmodel net(x: f32[4]) { linear(hidden) relu linear(1) }\n"
             "train {loss=mse}\n")
    uri = lsp.open(ROOT / "tests" / "messy.dlspec", messy)
    (edit,) = lsp.formatting(uri)
    assert rng(edit.range) == (0, 0, 4, 0)
    assert edit.new_text == ("# a tiny net\nlet hidden = 8  # width\n\nmodel net(x: f32[4]) {\n"
                             "    linear(hidden) relu\n    linear(1)\n}\n\ntrain { loss = mse }\n")
    assert parse(edit.new_text) == parse(messy)
    version = lsp.change(uri, edit.new_text)
    lsp.diagnostics(uri, version)
    assert lsp.formatting(uri) == ()                       # already canonical: nothing to change

    for path in sorted(SPECS.glob("*.dlspec")):
        uri = lsp.open(path)
        edits = lsp.formatting(uri)
        text = edits[0].new_text if edits else path.read_text()
        assert parse(text) == parse(path.read_text())
        assert [l.strip() for l in text.splitlines() if l.strip().startswith("#")] == \
            [l.strip() for l in path.read_text().splitlines() if l.strip().startswith("#")]


def test_formatting_a_spec_that_does_not_parse_changes_nothing_and_says_why(lsp) -> None:
    uri = lsp.open(ROOT / "tests" / "unparsable.dlspec", "model m(x: f32[3]) {\n    linear(3\n}\n")
    assert lsp.formatting(uri) is None
    assert "syntax errors" in lsp.wait_message().message


def test_inlay_hints_show_the_shape_after_each_stage(lsp) -> None:
    uri = lsp.open(SPECS / "cnn_mnist.dlspec")
    hints = lsp.inlay_hints(uri)
    assert [h.label for h in hints] == ["[16, 28, 28]", "[16, 28, 28]", "[16, 14, 14]", "[32, 14, 14]",
                                        "[32, 14, 14]", "[32, 7, 7]", "[1568]", "[10]"]
    assert (hints[0].position.line, hints[0].position.character) == (10, 35)     # right after conv2d(...)
    assert (hints[-1].position.line, hints[-1].position.character) == (13, 24)
    assert all(h.kind == types.InlayHintKind.Type for h in hints)
    assert [h.label for h in lsp.inlay_hints(uri, 12, 13)] == ["[1568]", "[10]"]   # only the asked lines

    gru = lsp.inlay_hints(lsp.open(SPECS / "gru_text.dlspec"))
    assert [h.label for h in gru] == ["[T, 100]", "[T, 256]", "[256]", "[256]", "[2]"]
    auto = lsp.inlay_hints(lsp.open(SPECS / "autoencoder_mnist.dlspec"))
    assert "[3]" in [h.label for h in auto if h.position.line == 13]                 # code = encoder(x)


def test_the_server_survives_garbage_and_keeps_answering(lsp) -> None:
    uri = lsp.open(ROOT / "tests" / "garbage.dlspec", "model \x00 (((( " + "[" * 500 + "\n")
    (d,) = lsp.diagnostics(uri)
    assert d.severity == types.DiagnosticSeverity.Error
    assert lsp.hover(uri, 0, 3) is None
    assert not lsp.symbols(uri)
    assert not lsp.inlay_hints(uri)
    lsp.completion(uri, 0, 10)
    version = lsp.change(uri, "")
    (d,) = lsp.diagnostics(uri, version)
    assert d.message.startswith("the spec defines no model\nhint: ")
    lsp.close(uri)
    with lsp.changed:
        assert lsp.changed.wait_for(lambda: lsp.published[uri][-1].diagnostics == (), 60)


def test_while_the_text_does_not_parse_untouched_lines_keep_their_hover_and_hints(lsp) -> None:
    base = (SPECS / "cnn_mnist.dlspec").read_text()
    uri = lsp.open(SPECS / "cnn_mnist.dlspec")
    lsp.diagnostics(uri)
    broken = base.replace("    flatten\n", "    flatten\n    conv2d(8,\n    kernel=3\n")   # two new lines, unclosed
    version = lsp.change(uri, broken)
    (d,) = lsp.diagnostics(uri, version)
    assert d.severity == types.DiagnosticSeverity.Error
    assert "conv2d_1" in lsp.hover(uri, 10, 4).contents.value               # above the edit: as before
    assert lsp.hover(uri, 13, 5) is None                                    # the new, unparsed text
    assert "linear_1" in lsp.hover(uri, 15, 6).contents.value               # below it: moved down two lines
    assert "adam" in lsp.hover(uri, 20, 18).contents.value
    assert [h.position.line for h in lsp.inlay_hints(uri)] == [10, 10, 10, 11, 11, 11, 12, 15]
    assert rng(lsp.definition(uri, 20, 25).range) == (1, 4, 1, 6)
    symbols = lsp.symbols(uri)
    assert [s.name for s in symbols] == ["lr", "data", "cnn", "train", "export"]
    assert rng(symbols[2].range) == (9, 0, 16, 1)                          # its `}` moved down two lines
    assert "classes" in labels(lsp.completion(uri, 15, 16))                 # names from the last good version
