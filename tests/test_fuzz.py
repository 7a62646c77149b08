"""Fuzzing the front end: mutated specs either check or fail with located diagnostics, never a crash.

The real specs are mutated at the level of tokens (delete, insert, swap,
duplicate), characters, spliced random text and whole random strings or
bytes; their YAML faces are mutated too. Parsing and checking such text may
only succeed or raise SpecError whose every diagnostic renders as
`path:line:col: error|warning: message`. `bench/fuzz.py --count 10000` runs the
same properties with many more examples.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dslc.compiler.check import check_all
from dslc.compiler.layers import LAYERS
from dslc.compiler.losses import LOSSES
from dslc.errors import SpecError
from dslc.dsl.diagnostics import Source
from dslc.dsl.parse import parse
from dslc.dsl.read import read_spec
from dslc.dsl.yaml_face import from_yaml, to_yaml

SPECS = Path(__file__).resolve().parents[1] / "specs"
TEXTS = {p.name: p.read_text(encoding="utf-8") for p in sorted(SPECS.glob("*.dlspec"))}
YAMLS = {name.replace(".dlspec", ".yaml"): to_yaml(parse(text, name)) for name, text in TEXTS.items()}

TOKEN = re.compile(r'\s+|#[^\n]*|"(?:[^"\\\n]|\\.)*"|[A-Za-z_]\w*|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\*\*|.', re.S)
VOCAB = (["let", "data", "model", "train", "export", "init", "variants", "block", "param", "return", "each",
          "true", "false", "{", "}", "(", ")", "[", "]", ",", ";", ":", "=", ".", "+", "-", "*", "/", "**",
          "'", '"', '"x"', "#", "\n", "0", "1", "-1", "2.5", "1e999", "99999999999999999999", "10 ** 12",
          "T", "f32", "i64", "f32[]", "f32[T, 1]", "data.classes", "output", "output[1]", "x", "mean", "every",
          "adam(lr=0.1)", "source", "batch", "epochs", "steps", "loss", "inputs", "targets", "validation"]
         + list(LAYERS) + list(LOSSES))
DIAGNOSTIC = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (error|warning): \S")


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


@st.composite
def mutations(draw, text: str) -> str:
    """One to four random edits of `text`."""
    for _ in range(draw(st.integers(1, 4))):
        toks = tokens(text) or [""]
        i = draw(st.integers(0, len(toks) - 1))
        op = draw(st.sampled_from(["delete", "insert", "swap", "duplicate", "replace", "char_delete",
                                   "char_insert", "char_swap", "splice", "number"]))
        if op == "delete":
            del toks[i]
        elif op == "insert":
            toks.insert(i, draw(st.sampled_from(VOCAB + toks)) + draw(st.sampled_from(["", " "])))
        elif op == "swap":
            j = draw(st.integers(0, len(toks) - 1))
            toks[i], toks[j] = toks[j], toks[i]
        elif op == "duplicate":
            j = draw(st.integers(i, min(len(toks), i + 8)))
            toks[i:i] = toks[i:j]
        elif op == "replace":
            toks[i] = draw(st.sampled_from(VOCAB))
        elif op == "number":
            toks[i] = str(draw(st.one_of(st.integers(-10**6, 10**6), st.integers(), st.floats(allow_nan=False,
                                                                                           allow_infinity=False))))
        text = "".join(toks)
        if op.startswith("char") or op == "splice":
            k = draw(st.integers(0, len(text)))
            if op == "char_delete":
                text = text[:k] + text[k + 1:]
            elif op == "char_insert":
                text = text[:k] + draw(st.characters()) + text[k:]
            elif op == "char_swap":
                text = text[:k] + text[k + 1:k + 2] + text[k:k + 1] + text[k + 2:]
            else:
                text = text[:k] + draw(st.text(max_size=20)) + text[k:]
    return text


@st.composite
def mutated_specs(draw) -> tuple[str, str]:
    """(file name, text): a real spec with random edits, or now and then random text."""
    name = draw(st.sampled_from(sorted(TEXTS)))
    if draw(st.integers(0, 19)) == 0:
        return name, draw(st.text(max_size=200))
    return name, draw(mutations(TEXTS[name]))


@st.composite
def mutated_yaml(draw) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(YAMLS)))
    return name, draw(mutations(YAMLS[name]))


def assert_well_reported(err: SpecError, path: str) -> None:
    assert err.diagnostics
    for d in err.diagnostics:
        first = d.render().splitlines()[0]
        m = DIAGNOSTIC.match(first)
        assert m, first
        assert m["path"] == path and int(m["line"]) >= 1 and int(m["col"]) >= 1, first


def parse_and_check(text: str, path: str) -> None:
    """Parse (text or YAML by the path's suffix) and check; only SpecError may escape, well located."""
    try:
        spec = from_yaml(text, path) if path.endswith(".yaml") else parse(text, path)
        check_all(spec, Source(path, text))
    except SpecError as err:
        assert_well_reported(err, path)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mutated_specs())
def test_mutated_specs_check_or_fail_cleanly(case):
    name, text = case
    parse_and_check(text, name)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_yaml())
def test_mutated_yaml_checks_or_fails_cleanly(case):
    name, text = case
    parse_and_check(text, name)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([".dlspec", ".yaml"]))
def test_random_bytes_are_refused_cleanly(data, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"spec{suffix}"
        path.write_bytes(data)
        try:
            spec, source = read_spec(path)
            check_all(spec, source)
        except SpecError as err:
            assert_well_reported(err, str(path))


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=30),
                 st.sampled_from(["lr=0.01", "train.epochs=3", "data.batch=all", "init.linear.weight=zeros",
                                  "export.opset=17", "p=0.5"]).flatmap(mutations)))
def test_random_overrides_are_refused_cleanly(text):
    from dslc.compiler.check import check, parse_override
    spec_text = TEXTS["cnn_mnist.dlspec"]
    try:
        check(parse(spec_text, "cnn_mnist.dlspec"), Source("cnn_mnist.dlspec", spec_text), [parse_override(text)])
    except SpecError as err:
        for d in err.diagnostics:
            first = d.render().splitlines()[0]
            m = DIAGNOSTIC.match(first)
            assert m and m["path"] in ("--set", "cnn_mnist.dlspec"), first


def test_a_mutant_reaches_the_checker():
    """Mutants that still parse are caught by the checker, with the mistake named."""
    text = TEXTS["cnn_mnist.dlspec"].replace("flatten", "")
    spec = parse(text, "cnn_mnist.dlspec")
    try:
        check_all(spec, Source("cnn_mnist.dlspec", text))
    except SpecError as err:
        assert_well_reported(err, "cnn_mnist.dlspec")
        assert "add `flatten` before it" in str(err)
    else:
        raise AssertionError("a linear layer fed an image must not check")
