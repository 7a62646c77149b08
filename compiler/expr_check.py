"""Typing expressions into the IR: one checker for model, loss and data expressions alike.

`ExprChecker(report, ev, names, calls, where).check(e)` returns an IR node with its
per-sample type, or reports the mistake at its span and raises `Bail`. What differs
between the contexts is only what a name means and which calls are allowed (blocks
in a model, losses and `mean`/`sum` in a loss, generating functions in a data
source); numbers, `let` numbers, arithmetic, elementwise functions and
`concat`/`stack` follow the same rules everywhere. Arithmetic broadcasts per-sample
dims numpy-style; element types promote as torch and numpy do (shapes.result_dtype).
"""

from __future__ import annotations

import math
from typing import Callable

from dslc.dsl import ast
from dslc.dsl.diagnostics import Report, did_you_mean

from .functions import FUNCTIONS
from .ir import Const, Node, Op
from .shapes import INT_DTYPES, ShapeError, TensorShape, broadcast, result_dtype
from .values import Evaluator, NotConstant

OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow"}
JOINS = ("concat", "stack")
MAX_DIM = 1 << 31


_CONSTANT = {"exp": math.exp, "log": math.log, "sqrt": math.sqrt, "abs": abs, "sin": math.sin, "cos": math.cos,
             "tanh": math.tanh, "sigmoid": lambda v: 1 / (1 + math.exp(-v)), "relu": lambda v: max(v, 0),
             "softplus": lambda v: math.log1p(math.exp(v))}


class Bail(Exception):
    """Stop checking one expression after its mistake has been reported."""


def const(value) -> Const:
    return Const(value=value, shape=TensorShape("i64" if isinstance(value, int) else "f32", ()))


def _fold(op: str, a, b):
    if op == "pow" and isinstance(b, int) and abs(a) > 1 and b * math.log2(abs(a)) > 64:
        raise OverflowError
    return {"add": a.__add__, "sub": a.__sub__, "mul": a.__mul__, "div": a.__truediv__, "pow": a.__pow__}[op](b)


class ExprChecker:
    """Types one context's expressions.

    names(var) -> Node | None resolves a name (reporting unknown ones itself and raising Bail);
    calls(call) -> Node | None handles the context's own calls (None: not one of them);
    where: how messages name the context ("in model m", "in the loss", "in a data expression");
    index(e) -> Node handles `value[i]` where the context allows it (the loss's output[i]).
    """

    def __init__(self, report: Report, ev: Evaluator, names: Callable, calls: Callable, where: str,
                 functions: tuple[str, ...] | None = None, index: Callable | None = None):
        self.report, self.ev, self.names, self.calls, self.where = report, ev, names, calls, where
        self.index = index
        self.functions = functions if functions is not None else tuple(FUNCTIONS)

    def error(self, message: str, span, hint: str | None = None):
        self.report.error(message, span, hint)
        raise Bail

    def check(self, e) -> Node:
        if isinstance(e, ast.Number):
            return const(e.value)
        if isinstance(e, ast.Var):
            return self.names(e)
        if isinstance(e, ast.Neg):
            x = self.check(e.operand)
            if isinstance(x, Const):
                return const(-x.value)
            return Op(name="neg", args=(x,), shape=x.shape, batched=x.batched)
        if isinstance(e, ast.BinOp):
            return self.binary(e)
        if isinstance(e, ast.Index) and self.index is not None:
            return self.index(e)
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Var):
            node = self.calls(e)
            if node is not None:
                return node
            name = e.func.name
            if name in JOINS:
                return self.join(e)
            f = FUNCTIONS.get(name)
            if f is not None and f.kind == "elementwise" and name in self.functions:
                return self.function(e)
            if f is not None and f.kind in ("encode", "fitted"):
                self.error(f"{name}(...) prepares data, so it belongs in the data block's inputs or targets, not "
                           f"{self.where}", e.func.span)
            self.unknown_function(e)
        return self.not_here(e)

    def not_here(self, e):
        what = {ast.String: "a string", ast.Bool: "a boolean", ast.ListExpr: "a list", ast.Index: "indexing",
                ast.Attr: "a data fact", ast.Call: "this call"}.get(type(e), "this")
        self.error(f"{what} cannot be computed {self.where}", e.span)

    def unknown_function(self, e: ast.Call):
        name = e.func.name
        known = [n for n in self.functions if FUNCTIONS.get(n) is None or FUNCTIONS[n].kind == "elementwise"]
        self.error(f"unknown function '{name}' {self.where}", e.func.span, did_you_mean(name, known + list(JOINS)))

    # ------------------------------------------------------------ arithmetic and functions

    def binary(self, e: ast.BinOp) -> Node:
        a, b = self.check(e.left), self.check(e.right)
        op = OPS[e.op]
        if isinstance(a, Const) and isinstance(b, Const):
            try:
                value = _fold(op, a.value, b.value)
            except ZeroDivisionError:
                self.error("division by zero", e.span)
            except OverflowError:
                self.error("number too large", e.span)
            if isinstance(value, complex) or (isinstance(value, float) and not math.isfinite(value)):
                self.error("result is not a real number" if isinstance(value, complex) else "number too large", e.span)
            return const(value)
        try:
            dims = broadcast(a.shape, b.shape).dims
        except ShapeError as err:
            self.error(err.message, e.span, err.hint)
        if op == "pow" and a.shape.dtype in INT_DTYPES and not (isinstance(b, Const) and isinstance(b.value, int)
                                                              and b.value >= 0):
            self.error(f"an integer value {a.shape} can only be raised to a whole, non-negative power", e.span,
                       "convert it to floats first, e.g. multiply by 1.0")
        dtype = result_dtype(op, [(a.shape.dtype, isinstance(a, Const)), (b.shape.dtype, isinstance(b, Const))])
        return Op(name=op, args=(a, b), shape=TensorShape(dtype, dims), batched=a.batched or b.batched)

    def function(self, e: ast.Call) -> Node:
        name = e.func.name
        if len(e.args) != 1 or e.args[0].name:
            self.error(f"{name}(...) takes one value here", e.span)
        x = self.check(e.args[0].value)
        f = FUNCTIONS[name]
        dtype = x.shape.dtype if f.keeps_integers or x.shape.dtype not in INT_DTYPES else "f32"
        if isinstance(x, Const):
            try:
                value = _CONSTANT[name](x.value)
            except (ValueError, OverflowError, KeyError):
                value = None
            if value is not None and not isinstance(value, complex) and math.isfinite(value):
                return const(value if dtype in INT_DTYPES else float(value))
        return Op(name=name, args=(x,), shape=TensorShape(dtype, x.shape.dims), batched=x.batched)

    def join(self, e: ast.Call) -> Node:
        """concat(a, b, ..., axis=-1) and stack(a, b, ..., axis=-1) along a per-sample axis."""
        name = e.func.name
        values = [a for a in e.args if a.name is None]
        keywords = [a for a in e.args if a.name is not None]
        axis = -1
        for k in keywords:
            if k.name != "axis":
                self.error(f"{name} has no argument '{k.name}'", k.span, "its arguments are the values and axis=")
            try:
                axis = self.ev(k.value)
            except NotConstant:
                raise Bail from None
            if not isinstance(axis, int) or isinstance(axis, bool):
                self.error(f"the axis of {name} is a whole number (a per-sample axis: 0, 1, ... or -1)", k.value.span)
        if len(values) < 2:
            self.error(f"{name} takes two or more values: {name}(a, b, axis=-1)", e.span)
        parts = [self.check(v.value) for v in values]
        first = parts[0].shape
        rank = first.rank + (1 if name == "stack" else 0)
        if not -rank <= axis < max(rank, 1) or rank == 0:
            self.error(f"{name}: axis {axis} does not exist for values of shape {first.dims_text}", e.span,
                       f"a per-sample axis between {-max(rank, 1)} and {max(rank, 1) - 1}; the batch axis is not counted")
        axis %= rank
        for v, p in zip(values[1:], parts[1:]):
            s = p.shape
            if name == "stack" and s.dims != first.dims:
                self.error(f"stack needs values of one shape, but gets {first.dims_text} and {s.dims_text}", v.span,
                           "use concat to join along an existing axis")
            if name == "concat" and (s.rank != first.rank or any(
                    i != axis and x != y for i, (x, y) in enumerate(zip(first.dims, s.dims)))):
                self.error(f"concat along axis {axis} needs the other axes equal, but gets {first.dims_text} and "
                           f"{s.dims_text}", v.span, "stack scalars with stack(...); reshape or flatten values first")
        if name == "concat":
            sizes = [p.shape.dims[axis] for p in parts]
            size = sum(sizes) if all(isinstance(d, int) for d in sizes) else None
            if size is None:
                self.error(f"concat joins along axis {axis}, which must have a fixed size, not "
                           f"{', '.join(str(d) for d in sizes)}", e.span)
            dims = first.dims[:axis] + (size,) + first.dims[axis + 1:]
        else:
            dims = first.dims[:axis] + (len(parts),) + first.dims[axis:]
        if any(isinstance(d, int) and d >= MAX_DIM for d in dims):
            self.error(f"{name} would produce a dimension over {MAX_DIM - 1}", e.span)
        dtype = result_dtype("add", [(p.shape.dtype, isinstance(p, Const)) for p in parts])
        return Op(name=name, args=tuple(parts), axis=axis, shape=TensorShape(dtype, tuple(dims)),
                  batched=any(p.batched for p in parts))
