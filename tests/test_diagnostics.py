"""Rendering of diagnostics: long lines are clipped around the caret."""

from dslc.errors import SpecError

from dslc.dsl.diagnostics import MAX_SHOWN
from dslc.dsl.parse import parse
from dslc.compiler.check import check
from dslc.dsl.diagnostics import Source

import pytest


def _render(text: str) -> str:
    with pytest.raises(SpecError) as err:
        check(parse(text, "long.dlspec"), Source("long.dlspec", text))
    return str(err.value)


def test_a_long_line_is_clipped_and_the_caret_still_points_at_the_mistake():
    text = "model m(x: f32[4]) { " + "relu " * 60 + "lienar(3) " + "relu " * 60 + "}\n"
    out = _render(text).splitlines()
    assert out[0].startswith("long.dlspec:1:322: error: unknown layer 'lienar'")
    shown, caret = out[1], out[2]
    assert len(shown) < MAX_SHOWN + 20 and shown.split("| ", 1)[1].startswith("...")
    at = caret.index("^")
    assert shown[at:at + 6] == "lienar" and caret.count("^") == 6


def test_a_short_line_is_shown_whole():
    out = _render("model m(x: f32[4]) { lienar(3) }\n").splitlines()
    assert out[1].endswith("model m(x: f32[4]) { lienar(3) }")
    assert out[2].index("^") == out[1].index("lienar")
