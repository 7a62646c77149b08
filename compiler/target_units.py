"""A scaled target's original units: the inverse of a target expression, as an IR expression over the output.

A regression trained on `price / 100`, `standardize(body_mass_g)` or
`log(income)` learns in those units; `undo(target, y)` writes the expression that
brings a value `y` in the target's units back to the column's own units
(`y * 100`, `undo_standardize(y)`, `exp(y)`), so metrics and predictions report
grams, not standard deviations. It inverts arithmetic with constants, `neg`,
`exp`/`log`, `sqrt` and the fitted transforms, along a path to exactly one
column; anything else (two columns, `abs`, ...) has no inverse and stays in the
target's units. No torch, no numpy.
"""

from __future__ import annotations

from .ir import Const, Fitted, Node, Op, Ref
from .shapes import TensorShape

_INVERSE_FUNCTION = {"exp": "log", "log": "exp"}


def column_of(target: Node) -> str | None:
    """The one column an invertible target expression reads, or None."""
    node = target
    while True:
        if isinstance(node, Ref):
            return node.name if node.role == "column" else None
        step = _step(node)
        if step is None:
            return None
        node = step[0]


def _step(node: Node):
    """(the operand on the path to the column, a function of y that undoes this node) or None."""
    if isinstance(node, Fitted) and node.of is None:
        return node.arg, lambda y: Fitted(name=node.name, arg=y, of=node, shape=_float(y), batched=y.batched)
    if not isinstance(node, Op):
        return None
    args = node.args
    if node.name == "neg":
        return args[0], lambda y: Op(name="neg", args=(y,), shape=_float(y), batched=y.batched)
    if node.name in _INVERSE_FUNCTION:
        return args[0], lambda y: Op(name=_INVERSE_FUNCTION[node.name], args=(y,), shape=_float(y), batched=y.batched)
    if node.name == "sqrt":
        return args[0], lambda y: _bin("pow", y, Const(value=2, shape=TensorShape("i64", ())))
    if node.name not in ("add", "sub", "mul", "div") or len(args) != 2:
        return None
    a, b = args
    constant_b, constant_a = isinstance(b, Const), isinstance(a, Const)
    if constant_b == constant_a:
        return None
    c, x = (b, a) if constant_b else (a, b)
    if node.name in ("mul", "div") and _is_zero(c.value):
        return None
    if node.name == "add":
        return x, lambda y: _bin("sub", y, c)
    if node.name == "mul":
        return x, lambda y: _bin("div", y, c)
    if node.name == "sub":                   # x - c -> y + c;  c - x -> c - y
        return x, (lambda y: _bin("add", y, c)) if constant_b else (lambda y: _bin("sub", c, y))
    return x, (lambda y: _bin("mul", y, c)) if constant_b else (lambda y: _bin("div", c, y))   # x / c; c / x


def _is_zero(value) -> bool:
    return any(v == 0 for v in value) if isinstance(value, tuple) else value == 0


def _float(y: Node) -> TensorShape:
    return TensorShape(y.shape.dtype if y.shape.is_float else "f32", y.shape.dims)


def _bin(name: str, a: Node, b: Node) -> Op:
    like = a if a.batched or not b.batched else b
    return Op(name=name, args=(a, b), shape=_float(like), batched=a.batched or b.batched)


def undo(target: Node, y: Node) -> Node | None:
    """`y` (a value in the units of `target`) in the units of the column `target` reads; None when the target
    expression cannot be inverted. A bare column gives `y` itself."""
    steps = []
    node = target
    while not isinstance(node, Ref):
        step = _step(node)
        if step is None:
            return None
        node, inverse = step
        steps.append(inverse)
    if node.role != "column":
        return None
    for inverse in steps:                    # the outermost operation is undone first
        y = inverse(y)
    return y


def scaled(target: Node) -> bool:
    """The target is an invertible expression of a column, not the column itself: its units differ."""
    return not isinstance(target, Ref) and undo(target, Ref(name="y", role="output", shape=target.shape,
                                                            batched=True)) is not None
