"""Table columns from cells to numbers: kinds, missing values and categories, fitted on the training rows.

A table source (`csv`, `table`) gives raw cells (`Table`). For the columns the
data block reads, `parse` reads each cell as its kind says (compiler/column_kinds.py:
numbers, whole numbers, category names, texts), `drop_rows` removes the rows a `fill=drop`
column is missing in and refuses any other missing cell (`fill=error`, the default)
naming the file, row and column. `fit` then makes each column's recipe from the
training rows alone: the fill value (mean, median, mode or the spec's value:
dslc/kit/tables.py `fitted_fill`, the rule an ejected train.py applies too), a
text column's vocabulary, and a category column's categories (the declared ones, or those of the training rows,
which must be the ones `dslc check` read). `encode` applies a recipe to any rows —
every split, and at prediction time the records of a request (`encode_values`) —
so a category the training rows never had is refused by name wherever it appears.
The recipes are JSON (`{"kind": "category", "categories": [...], "fill": "Dream"}`)
and travel in the recorded preprocessing. numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dslc.compiler.column_kinds import MISSING, category_name, number, sort_categories, whole_number
from dslc.errors import UserError
from dslc.kit.tables import fitted_fill

from dslc.kit import text as text_lib


@dataclass
class Table:
    """The raw cells of a table source: one list per column (None where a row has no such cell)."""

    where: str                             # the file, or "the table source"
    cells: dict[str, list]                 # strings from a CSV file; numbers or names from a spec's table
    lines: list[int] | None = None         # the file line of each row (None: rows counted from 1)
    markers: tuple = MISSING               # the cells that mean "missing"
    header: list[str] = field(default_factory=list)
    widths: list[int] | None = None        # cells in each row (a CSV row may be short)

    @property
    def rows(self) -> int:
        return len(next(iter(self.cells.values()))) if self.cells else 0

    def row(self, i: int) -> str:
        return f"row {self.lines[i] if self.lines is not None else i + 1}"

    def take(self, keep: np.ndarray) -> Table:
        """The rows `keep`, with their lines and widths."""
        lines = [self.lines[i] for i in keep] if self.lines is not None else [int(i) + 1 for i in keep]
        widths = [self.widths[i] for i in keep] if self.widths is not None else None
        return Table(self.where, {k: [v[i] for i in keep] for k, v in self.cells.items()}, lines, self.markers,
                     self.header, widths)

    def missing_text(self, i: int, name: str, marker) -> str:
        """`row 5, column 'x' is missing ('NA')`, or for a short row `row 5 has 3 cells, so column 'x' ...`."""
        if marker is None and self.widths is not None and name in self.header:
            return (f"{self.row(i)} has {self.widths[i]} cells, so column '{name}' (number "
                    f"{self.header.index(name) + 1}) is missing")
        if isinstance(marker, str) and not marker.strip():
            return f"{self.row(i)}, column '{name}' is empty"
        return f"{self.row(i)}, column '{name}' is missing" + (f" ({marker!r})" if marker is not None else "")


@dataclass
class Parsed:
    """One column read as its kind: values (float64, int64, or names as an object array) and where it is missing."""

    kind: str
    values: np.ndarray
    missing: np.ndarray                    # bool, one per row
    marker: list                           # the missing cell as written (for messages), one per row


@dataclass(frozen=True)
class Plan:
    """What the spec says about one column: its kind, missing-value policy and categories."""

    kind: str
    fill: str | None = None                # error | drop | mean | median | mode (None with a fill value)
    fill_value: object = None
    declared: tuple | None = None          # declared categories, in index order
    expected: tuple | None = None          # the categories `dslc check` found (None: not known then)
    text: dict | None = None               # text: max_len, vocab, tokenizer, min_count, lowercase


def plans(facts: dict, names: list[str]) -> dict[str, Plan]:
    """The plan of each column read, from the source's check-time facts."""
    kinds = facts.get("kinds") or {}
    declared = facts.get("_declared") or {}
    categories = facts.get("categories") or {}
    default = facts.get("_fill") or "error"
    out = {}
    for name in names:
        decl = declared.get(name)
        kind = kinds.get(name, "number")
        fill = decl.fill if decl is not None and (decl.fill or decl.fill_value is not None) else default
        value = decl.fill_value if decl is not None else None
        expected = categories.get(name)
        out[name] = Plan(kind, fill if value is None else None, value,
                         tuple(decl.categories) if decl is not None and decl.categories is not None else None,
                         tuple(expected) if expected is not None else None,
                         decl.text_options if decl is not None and kind == "text" else None)
    return out


# ---------------------------------------------------------------- reading cells


def _text(cell) -> str | None:
    if cell is None:
        return None
    if isinstance(cell, float) and math.isnan(cell):
        return None
    return cell if isinstance(cell, str) else category_name(cell)


def parse(table: Table, name: str, kind: str) -> Parsed:
    """Column `name` read as `kind`; a cell that is not a number in a number column is refused by its row."""
    cells = table.cells[name]
    n = len(cells)
    missing = np.zeros(n, dtype=bool)
    marker: list = [None] * n
    markers = set(table.markers)
    if kind in ("category", "text"):
        values = np.empty(n, dtype=object)
        for i, cell in enumerate(cells):
            text = _text(cell)
            if text is None or text.strip() in markers:
                missing[i], marker[i] = True, cell
            else:
                values[i] = text.strip() if kind == "category" else text
        return Parsed(kind, values, missing, marker)
    out = np.zeros(n, dtype=np.float64 if kind == "number" else np.int64)
    for i, cell in enumerate(cells):
        if cell is None or (isinstance(cell, float) and math.isnan(cell)) or (
                isinstance(cell, str) and cell.strip() in markers):
            missing[i], marker[i] = True, cell
            continue
        if isinstance(cell, (int, float)) and not isinstance(cell, bool):
            value = cell if kind == "number" or float(cell).is_integer() else None
        else:
            value = number(cell) if kind == "number" else whole_number(cell)
        if value is None:
            what = "a number" if kind == "number" else "a whole number"
            hint = (f"; if the column holds names, declare it: {name} = category" if kind == "number"
                    and number(str(cell)) is None else "")
            raise UserError(f"{table.where}: {table.row(i)}, column '{name}' holds {str(cell)!r}, which is not "
                            f"{what}{hint}")
        out[i] = value
    return Parsed(kind, out, missing, marker)


def drop_rows(table: Table, parsed: dict[str, Parsed], plan: dict[str, Plan]) -> np.ndarray:
    """The rows kept: without those a `fill=drop` column is missing in. A missing cell whose column has no
    fill is refused, naming its row and column."""
    n = table.rows
    keep = np.ones(n, dtype=bool)
    for name, p in parsed.items():
        if plan[name].fill == "drop":
            keep &= ~p.missing
    for name, p in parsed.items():
        if plan[name].fill not in ("error", None) or plan[name].fill_value is not None:
            continue
        bad = np.flatnonzero(p.missing & keep)
        if bad.size:
            i = int(bad[0])
            more = f" (and {bad.size - 1} more row(s))" if bad.size > 1 else ""
            raise UserError(f"{table.where}: {table.missing_text(i, name, p.marker[i])}{more}; "
                            f"say what a missing {name} becomes: {name} = {p.kind}(fill=...) with "
                            f"{_fill_words(p.kind)}, or fill=drop in the source to drop such rows")
    return np.flatnonzero(keep)


def _fill_words(kind: str) -> str:
    return {"number": "mean, median, drop or a number", "integer": "mode, drop or a whole number",
            "category": "mode, drop or a name in quotes", "text": "drop or a text in quotes"}[kind]


def dropped_counts(parsed: dict[str, Parsed], plan: dict[str, Plan], keep: np.ndarray) -> dict[str, int]:
    """Per `fill=drop` column, how many of the dropped rows it was missing in."""
    n = len(next(iter(parsed.values())).missing) if parsed else 0
    gone = np.ones(n, dtype=bool)
    gone[keep] = False
    return {name: int((p.missing & gone).sum()) for name, p in parsed.items()
            if plan[name].fill == "drop" and (p.missing & gone).any()}


# ---------------------------------------------------------------- fitting on the training rows


def fit(table: Table, name: str, p: Parsed, plan: Plan, train: np.ndarray) -> dict:
    """The column's recipe, fitted on the rows `train`: kind, fill value and (categories) the categories."""
    recipe: dict = {"kind": p.kind, "fill": None}
    present = train[~p.missing[train]]
    if p.kind == "text":
        o = plan.text
        texts = [str(t) for t in p.values[present]] + ([str(plan.fill_value)] if plan.fill_value is not None else [])
        tokens = [text_lib.tokenize(t, o["tokenizer"], o["lowercase"]) for t in texts]
        recipe["tokenizer"] = {"kind": o["tokenizer"], "lowercase": o["lowercase"], "max_len": o["max_len"],
                               "vocab": text_lib.build_vocab(tokens, o["vocab"], o["min_count"]), "pad_side": "left"}
        recipe["fill"] = plan.fill_value
        return recipe
    if p.kind == "category":
        seen = [str(v) for v in p.values[present]]
        if plan.fill_value is not None:
            seen.append(str(plan.fill_value))
        if plan.declared is not None:
            categories = list(plan.declared)
        else:
            categories = sort_categories(seen)
            _unseen(table, name, p, categories, train)
            if plan.expected is not None and list(plan.expected) != categories:
                raise UserError(f"{table.where}: the categories of column '{name}' in the training rows "
                                f"({_few(categories)}) differ from those `dslc check` read ({_few(plan.expected)}); "
                                f"the file changed since, or another file was given: check the spec again, or "
                                f"declare them: {name} = category([...])")
        recipe["categories"] = categories
    if plan.fill_value is not None:
        recipe["fill"] = plan.fill_value
    elif plan.fill in ("mean", "median", "mode"):
        if present.size == 0:
            raise UserError(f"{table.where}: column '{name}' has no value in the training rows to take the "
                            f"{plan.fill} of")
        recipe["fill"] = fitted_fill(plan.fill, p.kind, p.values[present].tolist())
    return recipe


def _few(values, k: int = 8) -> str:
    values = list(values)
    return ", ".join(values[:k]) + (f", ... ({len(values)} in all)" if len(values) > k else "")


def _unseen(table: Table, name: str, p: Parsed, categories: list[str], train: np.ndarray) -> None:
    """A category of the held-out rows that the training rows lack: refused, naming its first row."""
    known = set(categories)
    held = np.ones(len(p.values), dtype=bool)
    held[train] = False
    for i in np.flatnonzero(held & ~p.missing):
        if p.values[i] not in known:
            raise UserError(f"{table.where}: {table.row(int(i))}, column '{name}' holds {p.values[i]!r}, a category "
                            f"the training split never has (it has {_few(categories)}); a model cannot learn it: "
                            f"drop such rows, or let the training split hold some")


# ---------------------------------------------------------------- applying a recipe


def encode(table: Table, name: str, p: Parsed, recipe: dict) -> np.ndarray:
    """The column as the expressions read it: numbers (filled), whole numbers, or category indices."""
    return encode_values(p, recipe, lambda i: f"{table.where}: {table.row(i)}, column '{name}'", name)


def encode_values(p: Parsed, recipe: dict, where, name: str) -> np.ndarray:
    """`p`'s values with the recipe applied; `where(i)` names row i in messages (a file row, a request field)."""
    fill = recipe.get("fill")
    if p.kind == "text":
        texts = []
        for i, (value, missing) in enumerate(zip(p.values, p.missing)):
            if missing and fill is None:
                raise UserError(f"{where(i)} is missing, and the model was trained with no missing {name}")
            texts.append(fill if missing else str(value))
        t = recipe["tokenizer"]
        return text_lib.encode_texts(texts, t["vocab"], t["max_len"], t["kind"], t["lowercase"])
    if p.kind == "category":
        index = {c: k for k, c in enumerate(recipe["categories"])}
        out = np.empty(len(p.values), dtype=np.int64)
        for i, (value, missing) in enumerate(zip(p.values, p.missing)):
            if missing:
                if fill is None:
                    raise UserError(f"{where(i)} is missing, and the model was trained with no missing {name}")
                value = fill
            k = index.get(value)
            if k is None:
                raise UserError(f"{where(i)} holds {value!r}, which is not one of its categories "
                                f"({_few(recipe['categories'])})")
            out[i] = k
        return out
    values = p.values.copy()
    if p.missing.any():
        if fill is None:
            i = int(np.flatnonzero(p.missing)[0])
            raise UserError(f"{where(i)} is missing, and the model was trained with no missing {name}")
        values[p.missing] = fill
    return values
