"""The YAML face: every spec written as YAML reads back as the same Spec, checks the same,
and mistakes in YAML files are reported at the YAML's own line and column."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings

from dslc.cli import load, main
from dslc.compiler.check import check_all
from dslc.errors import SpecError
from dslc.dsl.diagnostics import Source
from dslc.dsl.parse import parse
from dslc.dsl.yaml_face import from_yaml, to_yaml
from test_fuzz import mutated_specs

SPECS = Path(__file__).resolve().parents[1] / "specs"
SPEC_FILES = sorted(SPECS.glob("*.dlspec"))


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_yaml_face_reads_back_the_same_spec(path: Path):
    spec = parse(path.read_text(), str(path))
    assert from_yaml(to_yaml(spec), "spec.yaml") == spec


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_fmt_to_yaml_then_check_gives_the_same_model(path: Path, tmp_path: Path):
    target = tmp_path / f"{path.stem}.yaml"
    assert main(["fmt", str(path), "--to", "yaml", "--write", str(target)]) == 0
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["check", str(target)]) == 0
    assert "ok" in out.getvalue()
    a, b = load(str(path)), load(str(target))
    assert a.model.output_shapes == b.model.output_shapes
    assert [(l.name, l.args, l.output) for l in a.model.layers] == [(l.name, l.args, l.output) for l in b.model.layers]
    assert a.train == b.train or (a.train.loss.text, a.train.optimizer.args) == (b.train.loss.text, b.train.optimizer.args)


def test_a_yaml_spec_written_by_hand():
    text = """\
let: {hidden: 16}
data:
  source: table(x=[1.0, 2.0, 3.0], y=[2.0, 4.0, 6.0])
  inputs: [x]
  targets: [y]
  batch: all
models:
  net:
    inputs: {x: 'f32[1]'}
    body:
      - linear(hidden)
      - relu
      - linear(1)
train:
  loss: mse
  optimizer: adam(lr=0.01)
  steps: 10
variants:
  small: {hidden: 4}
  large: {hidden: 64}
"""
    spec = from_yaml(text, "net.yaml")
    results = check_all(spec, Source("net.yaml", text))
    assert [r.variant for r in results] == ["small", "large"]
    assert [r.model.layers[0].args["features"] for r in results] == [4, 64]


def _error(text: str, path: str = "bad.yaml") -> SpecError:
    with pytest.raises(SpecError) as info:
        check_all(from_yaml(text, path), Source(path, text))
    return info.value


def test_errors_inside_yaml_strings_point_into_the_yaml():
    text = "models:\n  m:\n    inputs: {x: 'f32[4]'}\n    body: ['linear(1, bais=true)']\n"
    [d] = _error(text).diagnostics
    assert (d.span.line, d.span.column) == (4, 23)
    assert "no argument 'bais'" in d.message and "did you mean 'bias'" in d.hint
    rendered = d.render().splitlines()
    assert rendered[0].startswith("bad.yaml:4:23: error:")
    assert rendered[2].index("^") == rendered[1].index("bais")


def test_yaml_structure_errors_are_located():
    d = _error("models:\n  m:\n    inputs: {x: 'f32[4]'}\n    body: linear(1)\n").diagnostics[0]
    assert (d.span.line, d.span.column) == (4, 11) and "needs `body:` with a list" in d.message
    d = _error("models:\n  m:\n    inputs: {x: 'f32[4]'}\n").diagnostics[0]
    assert (d.span.line, d.span.column) == (2, 3) and "needs `body:`" in d.message
    d = _error("train:\n  optimizer: {adam: 1}\nmodels: {}\n").diagnostics[0]
    assert (d.span.line, d.span.column) == (2, 14) and "not a mapping" in d.message
    d = _error("models:\n  m:\n    inputs: {x: 'f32[4]'}\n    body:\n      - {bind: y}\n").diagnostics[0]
    assert d.span.line == 5 and "needs `value:`" in d.message


def test_dslc_check_reports_yaml_errors_with_exit_2(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  source: mnist(root='x')\nmodels: {}\n")
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["check", str(path)]) == 2
    assert f"{path}:2:22: error: unexpected character \"'\"" in err.getvalue()
    assert "double quotes" in err.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(mutated_specs())
def test_yaml_round_trips_every_spec_that_checks(case):
    name, text = case
    try:
        spec = parse(text, name)
        check_all(spec, Source(name, text))
    except SpecError:
        assume(False)
    assert from_yaml(to_yaml(spec), "x.yaml") == spec


MODEL = "models:\n  m:\n    inputs: {x: 'f32[4]'}\n    body: [linear(1)]\n"


@pytest.mark.parametrize("value, message", [
    ("!!int abc", "'abc' is not a whole number, as its tag !!int says"),
    ("!!float many", "'many' is not a number, as its tag !!float says"),
    ("!!bool maybe", "'maybe' is not true or false, as its tag !!bool says"),
    ("!!binary aGVsbG8=", "the YAML tag !!binary is not allowed in a spec"),
    ("!!timestamp 2001-12-14", "the YAML tag !!timestamp is not allowed in a spec"),
    ("!custom 3", "the YAML tag !custom is not allowed in a spec"),
    ("!!python/tuple [1, 2]", "the YAML tag !!python/tuple is not allowed in a spec"),
])
def test_yaml_tags_are_located_errors(tmp_path: Path, value, message):
    """A tag outside YAML's core schema, or a core tag its text does not fit, is a spec error at the value
    (not an internal error)."""
    d = _error(f"data:\n  batch: {value}\n" + MODEL).diagnostics[0]
    assert (d.span.line, d.span.column) == (2, 10) and message in d.message
    path = tmp_path / "tag.yaml"
    path.write_text(f"data:\n  batch: {value}\n" + MODEL)
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["check", str(path)]) == 2
    assert "internal error" not in err.getvalue() and f"{path}:2:10: error: " in err.getvalue()


@pytest.mark.parametrize("text, where, message", [
    ("models:\n  m:\n    inputs: {x: }\n    body: [linear(1)]\n", (3, 16), "a value is missing here"),
    ("models:\n  m:\n    inputs: {x: 'f32[4]'}\n    body:\n    -\n    - linear(1)\n", (5, 6),
     "a value is missing here"),
    ("models:\n  m:\n    inputs: {x: 'f32[4]'}\n    body:\n    - {param: w, type: , value: 1.0}\n", (5, 23),
     "a value is missing here"),
    ("train:\n" + MODEL, (1, 7), "the train block is empty"),
    (MODEL + "variants:\n  small:\n", (6, 9), "variant small is empty"),
    ("models:\n  m:\n", (2, 5), "model m is empty"),
])
def test_an_empty_yaml_value_is_reported_where_it_is(text, where, message):
    d = _error(text).diagnostics[0]
    assert (d.span.line, d.span.column) == where and message in d.message, d.render()


@pytest.mark.parametrize("text, where, what", [
    ("data:\n  batch: 4\n  batch: 8\n" + MODEL, (3, 3), "'batch' appears twice in the data block"),
    (MODEL + "models:\n  n:\n    inputs: {x: 'f32[4]'}\n    body: [linear(1)]\n", (5, 1),
     "'models' appears twice in a YAML spec"),
    ("models:\n  m:\n    inputs: {x: 'f32[4]'}\n    body: [linear(1)]\n    body: [linear(2)]\n", (5, 5),
     "'body' appears twice in model m"),
    ("models:\n  m:\n    inputs: {x: 'f32[4]'}\n    body:\n    - {param: w, value: 1.0, value: 2.0}\n"
     "    - return: [w * x]\n", (5, 30), "'value' appears twice in a model statement"),
    ("let: {lr: 0.1, lr: 0.2}\n" + MODEL, (1, 16), "'lr' appears twice in let"),
])
def test_a_key_given_twice_in_yaml_is_an_error(text, where, what):
    """YAML keeps only the last of two equal keys; the spec reader refuses them instead, at the second."""
    d = _error(text).diagnostics[0]
    assert (d.span.line, d.span.column) == where and what in d.message, d.render()
    assert "the first is at line" in d.hint


def test_deeply_nested_yaml_is_refused_before_it_is_composed():
    """PyYAML composes recursively: 5000 nested lists would exhaust Python's stack (an internal error)."""
    d = _error("let: {a: " + "[" * 5000 + "1" + "]" * 5000 + "}\n" + MODEL).diagnostics[0]
    assert d.span.line == 1 and "nested more than" in d.message
