"""What an ejected train.py writes for tables and fitted scaling: the recipes and statistics of the training rows.

For a `csv` or `table` source whose columns have categories, whole numbers or
missing-value policies, train.py holds each column's plan (`COLUMNS`) and
loads as dslc does: it drops the rows a `fill=drop` column misses, splits, fits
each column's fill value and categories on the training rows and encodes every
split with them (dslc_kit/tables.py, the rules of runtime/data/columns.py). For
`standardize`/`min_max` it fits their statistics on the training rows
(`fit_statistics`, with the kit's `fit_scale`, as compiler/fitting.py does) and
writes `tables.scale(x, STATISTICS[k])`, and `tables.unscale(y, STATISTICS[k])`
where a metric reports a scaled target in its column's units. Nothing here
imports torch.
"""

from __future__ import annotations

from .column_kinds import MISSING
from .emit_expr import SourceExpr, py
from .emit_python import local
from .emit_sources import TRAIN_NAMES, Code, EjectError
from .fitting import fitted_nodes
from .ir import CheckedSpec, Fitted, Op, Ref, walk


def column_plans(checked: CheckedSpec) -> dict | None:
    """{column: {"kind", "fill", "value", "categories"}} for the columns a table source's data block reads, when
    they need more than numbers (categories, whole numbers, missing-value policies); None otherwise."""
    data = checked.data
    source = data.source
    if source.name not in ("csv", "table"):
        return None
    facts = source.facts
    kinds = facts.get("kinds") or {}
    declared = facts.get("_declared") or {}
    default = facts.get("_fill") or "error"
    plans = {}
    for name in data.columns_read:
        decl = declared.get(name)
        value = decl.fill_value if decl is not None else None
        fill = decl.fill if decl is not None and decl.fill else (None if value is not None else default)
        plans[name] = {"kind": kinds.get(name, "number"), "fill": fill, "value": value,
                       "categories": list(decl.categories) if decl is not None and decl.categories else None}
    simple = all(p["kind"] == "number" and p["fill"] == "error" and p["value"] is None for p in plans.values())
    one_hot = any(isinstance(n, Op) and n.name == "one_hot" for x in data.inputs + data.targets for n in walk(x))
    return None if simple and not one_hot else plans


class TableWriter:
    """The table and scaling parts of train.py: constants, `fit_statistics`, and lines of `load_data`."""

    def __init__(self, checked: CheckedSpec, code: Code):
        self.checked, self.code = checked, code
        self.plans = column_plans(checked)            # a table's categories, whole numbers, missing values
        if self.plans and any(p["kind"] == "text" for p in self.plans.values()):
            raise EjectError("train.py cannot be written yet for text columns of a table (its tokeniser and "
                             "vocabulary); `dslc train` trains this spec, and text_csv sources eject")
        self.fits = fitted_nodes(checked.data.inputs + checked.data.targets)     # standardize/min_max to fit
        given = checked.data.source.args.get("missing")
        self.markers = "" if given is None or tuple(given) == MISSING else ", MISSING"
        self.fitting = self.plans is not None or bool(self.fits)

    def constants(self) -> None:
        c = self.code
        if self.plans is not None:
            c.imports.add("from dslc_kit import tables")
            c.add("", "COLUMNS = {  # each column read: its kind, what a missing cell becomes, its declared categories")
            c.add(*[f'"{name}": {py(plan)},' for name, plan in self.plans.items()], depth=1)
            c.add("}")
            if self.markers:
                c.add(f"MISSING = {py(list(self.checked.data.source.args['missing']))}  # the cells that mean "
                      "a missing value")
        if self.fits:
            c.imports.add("from dslc_kit import tables")
            c.add("", "STATISTICS = []  # (centre, spread) of each standardize/min_max, fitted on the training rows")

    def scaled(self, node: Fitted, arg: str) -> str:
        """standardize/min_max (or an inverse) of `arg` with its fitted statistics."""
        k = self.fits.index(node.of if node.of is not None else node)
        return f"tables.{'unscale' if node.of is not None else 'scale'}({arg}, STATISTICS[{k}])"

    def fit_function(self) -> None:
        """`fit_statistics(columns)`: each standardize/min_max's statistics over the training rows."""
        if not self.fits:
            return
        writer = SourceExpr("numpy", lambda ref: local(ref.name, TRAIN_NAMES),
                            fitted=lambda node, arg: f"tables.scale({arg}, statistics[{self.fits.index(node)}])")
        used = sorted({n.name for node in self.fits for n in walk(node.arg) if isinstance(n, Ref) and n.role == "column"})
        self.code.function(
            "fit_statistics(columns)", "The statistics of standardize and min_max over the training rows "
            "(as dslc fits them).", *[f'{local(name, TRAIN_NAMES)} = columns["{name}"]' for name in used],
            "statistics = []",
            *[f'statistics.append(tables.fit_scale("{node.name}", {writer(node.arg)[0]}))' for node in self.fits],
            "return statistics")

    def drop_lines(self) -> list[str]:
        return [f"columns = tables.drop_missing(columns, COLUMNS{self.markers})"] if self.plans is not None else []

    def fit_lines(self) -> list[str]:
        """Fit on the training rows (`parts["train"]`): the column recipes, then the statistics."""
        lines = []
        if self.plans is not None:
            lines += [f'recipes = tables.fit_columns(columns, COLUMNS, parts["train"]{self.markers})',
                      f"columns = tables.encode_columns(columns, recipes{self.markers})"]
        if self.fits:
            lines.append('STATISTICS[:] = fit_statistics({name: values[parts["train"]] for name, values in '
                         "columns.items()})")
        return lines

    def encoded(self, call: str) -> str:
        """The columns of a held-out split's own source, encoded with the training rows' recipes."""
        if self.plans is None:
            return call
        return f"tables.encode_columns(tables.drop_missing({call}, COLUMNS{self.markers}), recipes{self.markers})"
