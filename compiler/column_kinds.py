"""The column-kind catalog of tables: what a CSV cell means, and what a missing one becomes.

A `csv(...)` source declares a column's kind with a keyword argument named after
it (`island = category`, `bill_length_mm = number(fill=mean)`); undeclared
columns get their kind from the file (compiler/data_files.py). Each kind says
how a cell is read and which per-sample type the column has in expressions:

    number     a float per row (f32[]); fill: mean, median, drop, error or a number
    integer    a whole number per row (i64[]); fill: mode, drop, error or a whole number
    category   one of a set of names (i64[]: its index in the sorted or declared
               categories); fill: mode, drop, error or a name (then one of the categories)
    text       free text, tokenised into ids (i64[max_len]: 0 pads, 1 is out of the
               vocabulary fitted on the training split); fill: drop, error or a text

`fill` says what a missing cell (a marker of `MISSING`, or an empty cell) becomes:
`error` (the default) refuses it naming the file, row and column; `drop` drops the
row; `mean`, `median` and `mode` are fitted on the training split; a value is used as
it is. The cell rules (`is_missing`, `number`, `sort_categories`: dslc/kit/cells.py) are the
one definition the checker's scan, the loader, prediction and an ejected train.py share.
No torch, no numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .shapes import TensorShape
from dslc.kit.cells import MISSING, category_name, number, sort_categories, whole_number  # noqa: F401 (the rules)

POLICIES = ("error", "drop")                   # what every kind accepts
STATISTICS = {"number": ("mean", "median"), "integer": ("mode",), "category": ("mode",), "text": ()}
SHAPES = {"number": TensorShape("f32", ()), "integer": TensorShape("i64", ()), "category": TensorShape("i64", ())}
KINDS = (*SHAPES, "text")
NAMES = ("category", "text")                   # kinds whose cells are names, not numbers
TEXT_OPTIONS = {"max_len": 200, "vocab": 20000, "tokenizer": "word", "min_count": 1, "lowercase": True}


@dataclass(frozen=True)
class ColumnKind:
    """A declared column: its kind, its categories (declared, in index order) and its missing-value policy:
    a named option (`fill`: mean, median, mode, drop, error) or a value (`fill_value`); neither means the
    source's default."""

    kind: str                                  # number | integer | category | text
    categories: tuple[str, ...] | None = None
    fill: str | None = None
    fill_value: str | float | int | None = None
    options: tuple = ()                        # text: (name, value) pairs of TEXT_OPTIONS that differ

    @property
    def shape(self) -> TensorShape:
        if self.kind == "text":
            return TensorShape("i64", (self.text_options["max_len"],))
        return SHAPES[self.kind]

    @property
    def text_options(self) -> dict:
        return {**TEXT_OPTIONS, **dict(self.options)}

    def text(self) -> str:
        """The declaration as a spec writes it: `category(["a", "b"], fill=mode)`."""
        parts = []
        if self.categories is not None:
            parts.append("[" + ", ".join(quoted(c) for c in self.categories) + "]")
        for key, value in self.options:
            parts.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
        if self.fill is not None:
            parts.append(f"fill={self.fill}")
        elif self.fill_value is not None:
            parts.append(f"fill={quoted(self.fill_value)}")
        return f"{self.kind}({', '.join(parts)})" if parts else self.kind


def quoted(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def options(kind: str) -> tuple[str, ...]:
    """The named fill options of a kind."""
    return STATISTICS[kind] + POLICIES


def fill_choices(kind: str) -> str:
    """The fill options of a kind, for messages."""
    value = {"number": "a number", "integer": "a whole number", "category": "a name in quotes",
             "text": "a text in quotes"}[kind]
    return ", ".join(options(kind)) + f" or {value}"


def check_fill_option(kind: str, name: str) -> str | None:
    """A complaint about a named fill option for a column of `kind`, or None."""
    if name in options(kind):
        return None
    other = [k for k, names in STATISTICS.items() if name in names]
    if other:
        return f"fill={name} applies to {' and '.join(other)} columns, not to a {kind} column; choose {fill_choices(kind)}"
    return f"fill must be {fill_choices(kind)}, not '{name}'"


def check_fill_value(kind: str, value) -> str | None:
    """A complaint about a literal fill value for a column of `kind`, or None."""
    if isinstance(value, (bool, list, tuple)):
        return f"fill must be {fill_choices(kind)}"
    if kind == "number" and isinstance(value, (int, float)) and math.isfinite(value):
        return None
    if kind == "integer" and isinstance(value, int):
        return None
    if kind == "category" and isinstance(value, (str, int, float)):
        return None
    if kind == "text" and isinstance(value, str):
        return None
    return f"fill must be {fill_choices(kind)}, not {quoted(value)}"
