"""What an ejected train.py needs for tables and fitted scaling: the same steps as dslc's loader, as plain numpy.

For a `csv` or `table` source whose columns have categories, whole numbers or
missing-value policies, train.py reads the raw cells, drops the rows a
`fill=drop` column misses, splits, fits each column's fill value and categories
on the training rows and encodes every split with them (runtime/data/columns.py
does this for dslc). For `standardize`/`min_max` it fits their statistics on the
training rows (compiler/fitting.py) and writes `scale(x, STATISTICS[k])`, and
`unscale(y, STATISTICS[k])` where a metric reports a scaled target in its
column's units. The helpers are written once, as source (`HELPERS`,
`SCALE_HELPERS`, `UNSCALE_HELPER`). Nothing here imports torch or numpy.
"""

from __future__ import annotations

from .column_kinds import MISSING
from .ir import CheckedSpec, Fitted, Op, walk


def fitted_nodes(nodes) -> list[Fitted]:
    """The transforms to fit, innermost first, each once (the order compiler/fitting.py fits them in)."""
    out: list[Fitted] = []

    def visit(n) -> None:                  # children first, left to right: the order they appear in
        for child in n.children():
            visit(child)
        if isinstance(n, Fitted) and n.of is None and n not in out:
            out.append(n)
    for node in nodes:
        visit(node)
    return out


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


def markers(checked: CheckedSpec) -> tuple:
    given = checked.data.source.args.get("missing")
    return tuple(given) if given is not None else MISSING


HELPERS = '''
def missing(cell):
    """An absent cell, an empty one, or one of MISSING (NA, null, ...)."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return True
    return isinstance(cell, str) and cell.strip() in MISSING


def text(cell):
    """A category's name as dslc reads it (2007, not 2007.0)."""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


def drop_missing(columns, plan):
    """Without the rows a fill=drop column misses (dslc drops them before it splits)."""
    n = len(next(iter(columns.values())))
    keep = [i for i in range(n) if not any(plan[c]["fill"] == "drop" and missing(columns[c][i]) for c in plan)]
    return {name: [cells[i] for i in keep] for name, cells in columns.items()}


def sort_categories(names):
    """Categories in index order: by value when every name is a number, else alphabetically."""
    names = sorted(set(names))
    try:
        numbers = [float(name) for name in names]
    except ValueError:
        return names
    return [name for _, name in sorted(zip(numbers, names))] if all(map(math.isfinite, numbers)) else names


def fit_columns(columns, plan, rows):
    """Each column's fill value and categories, from the training rows only."""
    recipes = {}
    for name, p in plan.items():
        kind, fill = p["kind"], p["value"]
        cells = [columns[name][i] for i in rows if not missing(columns[name][i])]
        values = [text(c) for c in cells] if kind == "category" else [float(c) for c in cells]
        if kind == "integer":
            values = [int(v) for v in values]
        if fill is not None and kind == "category":
            fill = text(fill)
        elif p["fill"] in ("mean", "median"):
            fill = float(np.mean(values) if p["fill"] == "mean" else np.median(values))
        elif p["fill"] == "mode":
            counts = Counter(values)
            top = [v for v, c in counts.items() if c == max(counts.values())]
            fill = sort_categories(top)[0] if kind == "category" else min(top)
        recipe = {"kind": kind, "fill": fill}
        if kind == "category":
            recipe["categories"] = p["categories"] or sort_categories(values + ([fill] if fill is not None else []))
        recipes[name] = recipe
    return recipes


def encode_columns(columns, recipes):
    """The columns as the expressions read them: missing cells filled, categories as their indices."""
    out = {}
    for name, r in recipes.items():
        cells = [r["fill"] if missing(c) else c for c in columns[name]]
        if any(c is None for c in cells):
            raise ValueError(f"column {name!r} has a missing value and no fill")
        if r["kind"] == "category":
            index = {c: k for k, c in enumerate(r["categories"])}
            out[name] = np.array([index[text(c)] for c in cells], dtype=np.int64)
        else:
            out[name] = np.array([float(c) for c in cells], dtype=np.float64 if r["kind"] == "number" else np.int64)
    return out
'''

SPLIT_ROWS = '''
def split_rows(n, fractions, seed, keep_order):
    """The rows of each split: a seeded permutation, the first parts held out."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    parts, start = {}, 0
    for role, fraction in fractions.items():
        k = max(1, int(fraction * n))
        parts[role] = order[start:start + k]
        start += k
    parts["train"] = order[start:]
    if keep_order:
        parts = {role: np.sort(index) for role, index in parts.items()}
    return parts
'''

SCALE_HELPERS = '''
STATISTICS = []     # (centre, spread) of each standardize/min_max, fitted on the training rows by load_data


def fit_scale(name, values):
    """standardize: the mean and standard deviation of the training values; min_max: their minimum and range
    (per element; a constant element is not divided)."""
    values = np.asarray(values, dtype=np.float64)
    if name == "standardize":
        centre, spread = values.mean(axis=0), values.std(axis=0)
    else:
        centre, spread = values.min(axis=0), values.max(axis=0) - values.min(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    if np.ndim(centre) == 0:
        return float(centre), float(spread)
    return centre, spread


def scale(x, statistics):
    centre, spread = statistics
    return (x - centre) / spread
'''

UNSCALE_HELPER = '''
def unscale(y, statistics):
    """A value in standardize/min_max units back in its column's units."""
    centre, spread = statistics
    if np.ndim(centre):
        centre, spread = torch.tensor(centre, dtype=torch.float32), torch.tensor(spread, dtype=torch.float32)
    return y * spread + centre
'''
