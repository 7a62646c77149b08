"""Fitting `standardize` and `min_max` on the training split: their statistics become constants of the IR.

`fit(nodes, columns)` evaluates the argument of every `Fitted` node of the
expressions over the training rows (`columns`, already encoded: numbers, category
indices) with the numpy backend and returns the statistics of each (dslc/kit/tables.py
`fit_scale`, which an ejected train.py fits with too); `resolve(node,
statistics)` rewrites an expression with each `Fitted` node replaced by plain
arithmetic, the statistics as constants: `standardize(x)` becomes `(x - 43.9) / 5.46`
and its inverse (a prediction back in the target's units) `output * 5.46 + 43.9`.
What is recorded for prediction is the resolved expression, so training,
evaluation, export and serving apply one formula with one set of numbers.
numpy only.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np

from .ir import Const, Fitted, Node, Op, walk
from .numpy_backend import evaluate
from .shapes import TensorShape
from dslc.kit.tables import fit_scale


def fitted_nodes(nodes: list[Node]) -> list[Fitted]:
    """The transforms to fit (not their inverses), innermost first, each once."""
    out: list[Fitted] = []

    def visit(n) -> None:                  # children first, left to right: the order they appear in
        for child in n.children():
            visit(child)
        if isinstance(n, Fitted) and n.of is None and n not in out:
            out.append(n)
    for node in nodes:
        visit(node)
    return out


def statistics(name: str, values: np.ndarray) -> dict:
    """The statistics of one transform over [rows, *dims] values: per element, as numbers or nested lists."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0:
        values = values.reshape(1)
    centre, spread = fit_scale(name, values)         # a constant column: centred, not divided by zero
    names = ("mean", "std") if name == "standardize" else ("min", "range")
    return {names[0]: _plain(np.asarray(centre)), names[1]: _plain(np.asarray(spread))}


def _plain(a: np.ndarray):
    return float(a) if a.ndim == 0 else tuple(_plain(x) for x in a)


def fit(nodes: list[Node], columns: dict, rows: int) -> dict[Fitted, dict]:
    """The statistics of every transform in `nodes`, over `columns` (the training rows)."""
    stats: dict[Fitted, dict] = {}
    for node in fitted_nodes(nodes):
        arg = resolve(node.arg, stats)
        values = evaluate(arg, columns, rows)
        if np.ndim(values) == 0 or len(values) == 0:
            raise ValueError(f"{node.name}: no training values to fit")
        stats[node] = statistics(node.name, values)
    return stats


def _const(value, dims) -> Const:
    return Const(value=value, shape=TensorShape("f32", tuple(dims) if isinstance(value, tuple) else ()))


def _op(name: str, a: Node, b: Node, like: Node) -> Op:
    return Op(name=name, args=(a, b), shape=TensorShape("f32", like.shape.dims), batched=like.batched)


def apply(name: str, stats: dict, x: Node, inverse: bool) -> Node:
    """The transform (or its inverse) of `x` as arithmetic with the statistics as constants."""
    dims = x.shape.dims
    if name == "standardize":
        centre, scale = _const(stats["mean"], dims), _const(stats["std"], dims)
    else:
        centre, scale = _const(stats["min"], dims), _const(stats["range"], dims)
    if inverse:
        return _op("add", _op("mul", x, scale, x), centre, x)
    return _op("div", _op("sub", x, centre, x), scale, x)


def resolve(node: Node, stats: dict[Fitted, dict]) -> Node:
    """`node` with every Fitted node (fitted in `stats`) replaced by its arithmetic; other nodes unchanged."""
    if isinstance(node, Fitted):
        key = node.of if node.of is not None else node
        if key not in stats:
            raise KeyError(f"{node.name}(...) was not fitted")
        return apply(node.name, stats[key], resolve(node.arg, stats), inverse=node.of is not None)
    changes = {}
    for f in fields(node):
        value = getattr(node, f.name)
        if isinstance(value, Node):
            new = resolve(value, stats)
            if new is not value:
                changes[f.name] = new
        elif isinstance(value, tuple) and value and all(isinstance(v, Node) for v in value):
            new = tuple(resolve(v, stats) for v in value)
            if any(a is not b for a, b in zip(new, value)):
                changes[f.name] = new
        elif isinstance(value, tuple) and value and all(isinstance(v, tuple) and len(v) == 2
                                                        and isinstance(v[1], Node) for v in value):
            new = tuple((k, resolve(v, stats)) for k, v in value)
            if any(a[1] is not b[1] for a, b in zip(new, value)):
                changes[f.name] = new
    return replace(node, **changes) if changes else node


def is_fitted(node: Node) -> bool:
    """No Fitted node left: the expression can be computed."""
    return not any(isinstance(n, Fitted) for n in walk(node))
