"""Table columns as the data expressions read them, fitted on the training rows only.

A column's plan (`{"kind", "fill", "value", "categories"}`: what the spec
says) becomes a recipe (`{"kind", "fill", "categories"}`: what the training
rows say) that encodes every split: missing cells filled, categories as their
indices. `fitted_fill` and `fit_scale` are the rules dslc's loader applies
(runtime/data/columns.py, compiler/fitting.py); `drop_missing`, `fit_columns`
and `encode_columns` apply them to plain columns for an ejected train.py.
numpy only.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .cells import MISSING, category_name, is_missing, sort_categories


def fitted_fill(fill: str, kind: str, values: list):
    """What a missing cell becomes, from the training values: their mean or median (numbers), or their most
    frequent value (mode; a tie goes to the first category in index order, or the smallest number)."""
    if fill == "mean":
        return float(np.mean(values))
    if fill == "median":
        return float(np.median(values))
    counts = Counter(values)
    top = max(counts.values())
    candidates = [v for v, c in counts.items() if c == top]
    return sort_categories([str(v) for v in candidates])[0] if kind == "category" else int(min(candidates))


def drop_missing(columns: dict, plan: dict, markers=MISSING) -> dict:
    """The columns without the rows that a `fill=drop` column misses (dslc drops them before it splits)."""
    n = len(next(iter(columns.values())))
    drop = [name for name in plan if plan[name]["fill"] == "drop"]
    keep = [i for i in range(n) if not any(is_missing(columns[name][i], markers) for name in drop)]
    return {name: [cells[i] for i in keep] for name, cells in columns.items()}


def fit_columns(columns: dict, plan: dict, rows, markers=MISSING) -> dict:
    """Each planned column's recipe from the training rows `rows`: its fill value and its categories."""
    recipes = {}
    for name, p in plan.items():
        kind, fill = p["kind"], p["value"]
        cells = [columns[name][i] for i in rows if not is_missing(columns[name][i], markers)]
        values = [category_name(c) for c in cells] if kind == "category" else [float(c) for c in cells]
        if kind == "integer":
            values = [int(v) for v in values]
        if fill is not None and kind == "category":
            fill = category_name(fill)
        elif fill is None and p["fill"] in ("mean", "median", "mode"):
            fill = fitted_fill(p["fill"], kind, values)
        recipe = {"kind": kind, "fill": fill}
        if kind == "category":
            recipe["categories"] = p["categories"] or sort_categories(values + ([fill] if fill is not None else []))
        recipes[name] = recipe
    return recipes


def encode_columns(columns: dict, recipes: dict, markers=MISSING) -> dict:
    """The columns as the expressions read them: missing cells filled, categories as their indices."""
    out = {}
    for name, r in recipes.items():
        cells = [r["fill"] if is_missing(c, markers) else c for c in columns[name]]
        if any(c is None for c in cells):
            raise ValueError(f"column {name!r} has a missing value and no fill")
        if r["kind"] == "category":
            index = {c: k for k, c in enumerate(r["categories"])}
            out[name] = np.array([index[category_name(c)] for c in cells], dtype=np.int64)
        else:
            out[name] = np.array([float(c) for c in cells], dtype=np.float64 if r["kind"] == "number" else np.int64)
    return out


def fit_scale(name: str, values) -> tuple:
    """(centre, spread) of standardize (mean, standard deviation) or min_max (minimum, range) over the training
    values [rows, ...], per element; a constant element is centred, not divided. Floats for one element."""
    values = np.asarray(values, dtype=np.float64)
    if name == "standardize":
        centre, spread = values.mean(axis=0), values.std(axis=0)
    else:
        centre, spread = values.min(axis=0), values.max(axis=0) - values.min(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    if np.ndim(centre) == 0:
        return float(centre), float(spread)
    return centre, spread


def scale(x, statistics: tuple):
    """x in standardize/min_max units."""
    centre, spread = statistics
    return (x - centre) / spread


def unscale(y, statistics: tuple):
    """A torch tensor in standardize/min_max units back in its column's units."""
    centre, spread = statistics
    if np.ndim(centre):
        centre, spread = y.new_tensor(np.float32(centre)), y.new_tensor(np.float32(spread))
    return y * spread + centre
