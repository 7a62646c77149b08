"""The parser: the syntax tree it builds, the spans it records, and how it refuses bad text."""

from __future__ import annotations

from pathlib import Path

import pytest

from dslc.dsl import ast
from dslc.errors import SpecError
from dslc.dsl.diagnostics import Source
from dslc.dsl.parse import MAX_NESTING, parse, relocate
from dslc.dsl.read import read_spec

SPECS = Path(__file__).resolve().parents[1] / "specs"


def error(text: str, **kw) -> tuple:
    with pytest.raises(SpecError) as info:
        parse(text, "t.dlspec", **kw)
    d = info.value.diagnostics[0]
    return d.span.line, d.span.column, d.message, d.hint


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.dlspec")), ids=lambda p: p.stem)
def test_every_spec_parses(path: Path):
    spec, source = read_spec(path)
    assert spec.models and source.text == path.read_text()


def test_cnn_tree():
    spec, _ = read_spec(SPECS / "cnn_mnist.dlspec")
    assert [let.name for let in spec.lets] == ["lr"]
    [model] = spec.models
    assert model.name == "cnn"
    assert model.inputs[0].type == ast.TensorType(dtype="f32", dims=[1, 28, 28])
    assert [s.name for s in model.body] == ["conv2d", "relu", "maxpool2d", "conv2d", "relu", "maxpool2d",
                                            "flatten", "linear"]
    conv = model.body[0]
    assert [(a.name, a.value) for a in conv.args] == [(None, ast.Number(value=16)), ("kernel", ast.Number(value=5)),
                                                      ("padding", ast.Number(value=2))]
    assert (conv.span.line, conv.span.column, conv.name_span.end_column) == (11, 5, 11)
    linear = model.body[-1]
    assert linear.args[0].value == ast.Attr(value=ast.Var(name="data"), name="classes")
    train = spec.block("train")
    assert [s.key for s in train.settings] == ["loss", "optimizer", "epochs", "metrics", "evaluate"]


def test_expression_precedence_and_associativity():
    e = parse("a + b * c ** -d ** 2 - e / f", "e", start="expr")
    v = lambda n: ast.Var(name=n)
    power = ast.BinOp(op="**", left=v("c"), right=ast.Neg(operand=ast.BinOp(op="**", left=v("d"),
                                                                              right=ast.Number(value=2))))
    assert e == ast.BinOp(op="-", left=ast.BinOp(op="+", left=v("a"), right=ast.BinOp(op="*", left=v("b"), right=power)),
                          right=ast.BinOp(op="/", left=v("e"), right=v("f")))
    assert parse("x.y[0](1, k=2)", "e", start="expr") == ast.Call(
        func=ast.Index(value=ast.Attr(value=v("x"), name="y"), index=ast.Number(value=0)),
        args=[ast.Argument(value=ast.Number(value=1)), ast.Argument(name="k", value=ast.Number(value=2))])


def test_numbers_strings_and_booleans():
    assert parse("12", "e", start="expr") == ast.Number(value=12)
    assert isinstance(parse("12", "e", start="expr").value, int)
    assert parse("1e-3", "e", start="expr") == ast.Number(value=0.001)
    assert parse(".5", "e", start="expr") == ast.Number(value=0.5)
    assert parse('"a\\"b"', "e", start="expr") == ast.String(value='a"b')
    assert parse("[true, false, ]", "e", start="expr") == ast.ListExpr(items=[ast.Bool(value=True), ast.Bool(value=False)])


def test_layout_is_free_and_semicolons_separate():
    one_line = 'model m(x: f32[4],) { linear(8,) relu; linear(1) } train { loss = mse; epochs = 2 }'
    spread = '''
        # a comment
        model m(
            x: f32[4]
        ) {
            linear(8)      # another
            relu
            linear(1)
        }
        train {
            loss = mse
            epochs = 2
        }
    '''
    assert parse(one_line, "a") == parse(spread, "b")


def test_stages_blocks_params_bindings_and_returns():
    spec = parse("""model m(x: f32[T, 2], y: i64[]) {
        param w: f32[2] = normal(0, 1)
        block head { each each relu linear(1) }
        h = head(x) * w
        return h, -h
    }""", "m")
    param, block, binding, ret = spec.models[0].body
    assert param == ast.Param(name="w", type=ast.TensorType(dtype="f32", dims=[2]),
                              value=ast.Call(func=ast.Var(name="normal"),
                                             args=[ast.Argument(value=ast.Number(value=0)),
                                                   ast.Argument(value=ast.Number(value=1))]))
    assert block.stages[0] == ast.EachStage(stage=ast.EachStage(stage=ast.LayerStage(name="relu")))
    assert binding.name == "h" and isinstance(binding.value, ast.BinOp)
    assert len(ret.values) == 2 and isinstance(ret.values[1], ast.Neg)
    assert spec.models[0].inputs[0].type.dims == ["T", 2] and spec.models[0].inputs[1].type.dims == []


def test_variants_and_dotted_settings():
    spec = parse("variants { a: p = 1, train.epochs = 2\n b: p = 3 }", "v")
    a, b = spec.variants
    assert (a.name, [s.key for s in a.settings], b.name) == ("a", ["p", "train.epochs"], "b")


def test_equality_ignores_spans_and_block_splitting():
    assert parse("train { epochs = 1 }\ntrain { steps = 2 }", "a") == parse("train {\n epochs = 1\n steps = 2 }", "b")
    assert parse("let a = 1", "a") != parse("let a = 2", "b")


def test_syntax_errors_are_located():
    assert error("model m(x: f32[4]) {\n    linear(8) $\n}")[:3] == (2, 15, "unexpected character '$'")
    line, col, message, hint = error("model m(x: f32[4]) {\n    linear(8)\n")
    assert (line, message.split(";")[0]) == (2, "unexpected end of file")
    assert "'{' opened at line 1, column 20" in hint
    assert error("train { epochs 3 }")[3] == "a setting is written `name = value`"
    assert error("let x = f(a b)")[3].startswith("arguments are separated by commas")
    assert error("let x = [1 2]")[3].startswith("list items are separated by commas")
    assert error("modle m(x: f32[1]) { relu }")[3] == "did you mean 'model'?"


def test_crlf_and_tabs_keep_columns():
    text = "model m(x: f32[4]) {\r\n\tlinear(8) $\r\n}\r\n"
    line, col, message, _ = error(text)
    assert (line, col, message) == (2, 12, "unexpected character '$'")
    with pytest.raises(SpecError) as info:
        parse(text, "t.dlspec")
    rendered = str(info.value).splitlines()
    assert rendered[1] == "    2 |  linear(8) $"        # the tab shows as one space, as the parser counts it
    assert rendered[2].index("^") == rendered[1].index("$")


def test_limits():
    deep = "let x = " + "(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1)
    line, col, message, _ = error(deep)
    assert (line, col) == (1, 9 + MAX_NESTING) and "nested more than" in message
    assert "larger than" in error("#" * 1_000_001)[2]
    assert error("let x = 1e999")[2] == "the number 1e999 is too large"
    assert "too large" in error("let x = " + "9" * 400)[2]
    assert error("let x = " + " ** ".join(["2"] * 3000))[2] == "more than 100 operators in one expression"


def test_size_limits_are_located_and_checked_before_parsing():
    """Within the 1 MB file limit a spec could still hold ~500,000 tokens (minutes of parsing) or one
    expression thousands of operators deep (a RecursionError): both are located errors, found by a scan."""
    line, col, message, hint = error("let a = [" + "1," * 60_000 + "1]")
    assert (line, col, message) == (1, 10 + 2 * 24_998, "spec has more than 50,000 tokens")   # the 50,001st
    assert "repeat(N)" in hint and "data file" in hint
    stages = "model m(x: f32[4]) {\n" + "    relu\n" * 50_001 + "}\n"
    assert error(stages)[:3] == (1 + 50_001 - 11, 5, "spec has more than 50,000 tokens")   # 11 on line 1
    line, col, message, hint = error("let a = 1" + " + 1" * 101)
    assert (line, col, message) == (1, 9 + 4 * 100 + 2, "more than 100 operators in one expression")
    assert error("model m(x: f32[4]) {\n    return x" + "[0]" * 102 + "\n}")[2] == \
        "more than 100 operators in one expression"
    assert error("let a = " + "-" * 101 + "1")[2] == "more than 100 operators in one expression"
    # commas, statements and blocks start a new expression; numbers' points, strings and comments are no operators
    parse("let a = [" + ", ".join(["1 + 1"] * 200) + "]\nlet b = 1.5" + " + 2.5" * 100 + "  # " + "+" * 300)
    parse("let s = \"" + "+" * 300 + "\"\n" + "\n".join(f"let v{i} = 1" + " + 1" * 100 for i in range(3)))


def test_read_spec_refuses_unreadable_files(tmp_path: Path):
    with pytest.raises(SpecError, match="no such spec file"):
        read_spec(tmp_path / "missing.dlspec")
    bad = tmp_path / "latin1.dlspec"
    bad.write_bytes("let s = \"caf\xe9\"".encode("latin-1"))
    with pytest.raises(SpecError, match="not UTF-8"):
        read_spec(bad)


def test_relocated_spans_point_into_their_own_text():
    source = Source("--set", "lr=0.1")
    e = relocate(parse("   0.1", "--set", start="expr"), source)
    assert e.span.origin is source and e == ast.Number(value=0.1)


def test_a_byte_order_mark_is_skipped_and_a_stray_one_is_explained(tmp_path: Path):
    """Editors on Windows may start a UTF-8 file with a byte-order mark: it is not part of the spec, so
    columns stay where the user sees them. One in the middle of the text (two files joined) gets a hint."""
    for name, text in (("s.dlspec", "let lr = 0.1\nlet bad = )\n"), ("s.yaml", "let: {lr: 0.1, bad: ')'}\n")):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
        with pytest.raises(SpecError) as info:
            read_spec(path)
        d = info.value.diagnostics[0]
        assert "unexpected" in d.message and (d.span.line, d.span.column) == ((2, 11) if name == "s.dlspec" else (1, 22))
        path.write_bytes(b"\xef\xbb\xbf" + text.replace("bad = )", "b = 1").replace(", bad: ')'", "").encode())
        spec, source = read_spec(path)
        assert not source.text.startswith("\ufeff") and spec.lets[0].name == "lr"
    line, col, message, hint = error("let a = 1\n\ufefflet b = 2\n")
    assert (line, col) == (2, 1) and "byte-order mark" in hint
    assert "invisible character" in error("let a = 1\u200b\n")[3]
    utf16 = tmp_path / "utf16.dlspec"
    utf16.write_bytes("let a = 1\n".encode("utf-16"))
    with pytest.raises(SpecError) as info:
        read_spec(utf16)
    assert "UTF-16" in info.value.diagnostics[0].hint


def test_a_huge_spec_is_refused_without_being_read(tmp_path: Path):
    """The 1 MB limit is applied while reading: a 50 MB file (sparse: it costs no disk) is refused after a
    stat, with no more than a few kB read, and YAML specs have the same limit."""
    import tracemalloc
    big = tmp_path / "big.dlspec"
    with open(big, "wb") as f:
        f.truncate(50_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(SpecError, match="spec file is larger than 1000 kB"):
            read_spec(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000, f"{peak:,} bytes allocated"
    padded = tmp_path / "big.yaml"
    padded.write_text("# padding\n" * 110_000 + "let: {a: 1}\n")
    with pytest.raises(SpecError, match="spec file is larger than 1000 kB"):
        read_spec(padded)
