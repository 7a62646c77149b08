"""`dslc fmt`: the canonical text is idempotent, means the same spec, and looks hand-written."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dslc.cli import main
from dslc.dsl import ast
from dslc.errors import SpecError
from dslc.compiler.layers import LINE_STARTERS
from dslc.dsl.format import format_expr, format_spec
from dslc.dsl.parse import parse
from test_fuzz import mutated_specs

SPECS = Path(__file__).resolve().parents[1] / "specs"
SPEC_FILES = sorted(SPECS.glob("*.dlspec"))


def fmt(text: str) -> str:
    return format_spec(parse(text, "spec.dlspec"), LINE_STARTERS)


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_fmt_is_idempotent_and_keeps_the_meaning(path: Path):
    text = path.read_text()
    once = fmt(text)
    assert fmt(once) == once
    assert parse(once, "a") == parse(text, "b")


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_fmt_cli_prints_and_writes_the_canonical_text(path: Path, tmp_path: Path):
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["fmt", str(path)]) == 0
    assert out.getvalue() == fmt(path.read_text())
    target = tmp_path / path.name
    assert main(["fmt", str(path), "--write", str(target)]) == 0
    assert target.read_text() == out.getvalue()
    assert main(["check", str(target)]) == 0


def test_fmt_breaks_chains_as_a_person_would():
    assert fmt((SPECS / "cnn_mnist.dlspec").read_text()).split("model cnn")[1].split("}")[0] == (
        "(image: f32[1, 28, 28]) {\n"
        "    conv2d(16, kernel=5, padding=2) relu maxpool2d(2)\n"
        "    conv2d(32, kernel=5, padding=2) relu maxpool2d(2)\n"
        "    flatten\n"
        "    linear(data.classes)\n")
    text = "model m(x: f32[T, 4]) { block head { linear(4) tanh linear(1) } lstm(8) each relu dropout(0.1) last head }"
    assert fmt(text) == ("model m(x: f32[T, 4]) {\n"
                         "    block head {\n"
                         "        linear(4) tanh\n"
                         "        linear(1)\n"
                         "    }\n"
                         "    lstm(8) each relu dropout(0.1)\n"
                         "    last\n"
                         "    head\n"
                         "}\n")


def test_fmt_aligns_settings_and_splits_long_calls():
    text = ('data { source = text_csv("a/very/long/path/to/some/reviews.csv", text="review", label="sentiment", '
            'vocab=20000, max_len=200) batch = 64 }\nexport{format=onnx}\nmodel m(x: i64[T]) { embedding(10, 2) }')
    out = fmt(text)
    assert out.startswith("data {\n    source = text_csv(\n        \"a/very/long/path/to/some/reviews.csv\",\n")
    assert "        max_len=200,\n    )\n    batch  = 64\n}\n" in out
    assert "export { format = onnx }\n" in out
    assert fmt(out) == out


def test_strings_keep_their_characters():
    text = 'let s = "tab\\there \\"quoted\\" back\\\\slash\\nnewline\\q"\nmodel m(x: f32[1]) { linear(1) }'
    spec = parse(text, "s")
    assert spec.lets[0].value.value == 'tab\there "quoted" back\\slash\nnewline\\q'
    assert parse(fmt(text), "t") == spec


# ---------------------------------------------------------------- hypothesis: random expressions and mutants

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(lambda n: n not in ("true", "false"))
LEAVES = st.one_of(
    st.integers(0, 10**30).map(lambda v: ast.Number(value=v)),
    st.floats(0, 1e30, allow_nan=False, allow_infinity=False).map(lambda v: ast.Number(value=v)),
    st.text(max_size=8).map(lambda v: ast.String(value=v)),
    st.booleans().map(lambda v: ast.Bool(value=v)),
    NAMES.map(lambda n: ast.Var(name=n)),
)


def _extend(children):
    args = st.lists(st.builds(ast.Argument, name=st.none() | NAMES, value=children), max_size=3)
    return st.one_of(
        st.builds(ast.BinOp, op=st.sampled_from(["+", "-", "*", "/", "**"]), left=children, right=children),
        st.builds(ast.Neg, operand=children),
        st.builds(ast.Call, func=children, args=args),
        st.builds(ast.Index, value=children, index=children),
        st.builds(ast.Attr, value=children, name=NAMES),
        st.builds(ast.ListExpr, items=st.lists(children, max_size=3)),
    )


EXPRESSIONS = st.deferred(lambda: st.recursive(LEAVES, _extend, max_leaves=12))   # deferred: a short repr


@settings(max_examples=300, deadline=None)
@given(EXPRESSIONS)
def test_expressions_print_with_just_enough_parentheses(e):
    text = format_expr(e)
    assert parse(text, "e", start="expr") == e, text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(mutated_specs())
def test_fmt_round_trips_every_spec_that_parses(case):
    name, text = case
    try:
        spec = parse(text, name)
    except SpecError:
        assume(False)
    once = format_spec(spec, LINE_STARTERS)
    assert parse(once, name) == spec
    assert format_spec(parse(once, name), LINE_STARTERS) == once
