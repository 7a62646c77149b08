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
AXIS_FUNCTIONS = ("softmax", "log_softmax")          # value, axis=-1
REDUCTIONS = ("mean", "sum", "max", "min")           # value, axis=k: over one per-sample axis
SHAPE_FUNCTIONS = ("transpose", "permute", "split")
STRUCTURAL = JOINS + AXIS_FUNCTIONS + REDUCTIONS + SHAPE_FUNCTIONS
MAX_DIM = 1 << 31


_CONSTANT = {"exp": math.exp, "log": math.log, "sqrt": math.sqrt, "abs": abs, "sin": math.sin, "cos": math.cos,
             "tanh": math.tanh, "sigmoid": lambda v: 1 / (1 + math.exp(-v)), "relu": lambda v: max(v, 0),
             "softplus": lambda v: math.log1p(math.exp(v))}


def keep_mask(shape: TensorShape, *operands: Node):
    """The padding mask a result keeps: an operand's, when the result still has that operand's time axis first."""
    for op in operands:
        if op.mask and op.mask[1] is not None and op.shape.rank >= 2 and shape.rank >= 2 \
                and op.shape.dims[0] == shape.dims[0]:
            return op.mask
    return None


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
            return Op(name="neg", args=(x,), shape=x.shape, batched=x.batched, mask=x.mask)
        if isinstance(e, ast.BinOp):
            if e.op == "@":
                return self.matmul(e)
            return self.binary(e)
        if isinstance(e, (ast.Index, ast.Subscript)):
            if self.index is not None:
                node = self.index(e)
                if node is not None:
                    return node
            return self.subscript(e)
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Var):
            node = self.calls(e)
            if node is not None:
                return node
            name = e.func.name
            if name in JOINS:
                return self.join(e)
            if name in AXIS_FUNCTIONS or (name in REDUCTIONS and any(a.name == "axis" for a in e.args)):
                return self.along_axis(e)
            if name in ("transpose", "permute"):
                return self.reorder(e)
            if name == "split":
                self.error("split(...) gives several values: name them, `a, b = split(h, 2)`, or pick one, "
                           "`split(h, 2)[0]`", e.span)
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
        if name in REDUCTIONS:
            self.error(f"{name}(...) here reduces one per-sample axis: {name}(x, axis=-1)", e.span,
                       "only a loss reduces over the batch (mean(...) or sum(...) without an axis)")
        known = [n for n in self.functions if FUNCTIONS.get(n) is None or FUNCTIONS[n].kind == "elementwise"]
        self.error(f"unknown function '{name}' {self.where}", e.func.span,
                   did_you_mean(name, known + list(STRUCTURAL)))

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
        shape = TensorShape(dtype, dims)
        return Op(name=op, args=(a, b), shape=shape, batched=a.batched or b.batched, mask=keep_mask(shape, a, b))

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
        return Op(name=name, args=(x,), shape=TensorShape(dtype, x.shape.dims), batched=x.batched, mask=x.mask)

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
        shape = TensorShape(dtype, tuple(dims))
        return Op(name=name, args=tuple(parts), axis=axis, shape=shape, batched=any(p.batched for p in parts),
                  mask=keep_mask(shape, *parts) if axis != 0 else None)

    # ------------------------------------------------------------ axes, indexing, matmul

    def constant(self, e, what: str):
        try:
            v = self.ev(e)
        except NotConstant:
            raise Bail from None
        if not isinstance(v, int) or isinstance(v, bool):
            self.error(f"{what} is a whole number, not {v!r}", e.span)
        return v

    def axis(self, shape: TensorShape, e, name: str, rank: int | None = None) -> int:
        """A per-sample axis given as a number (negative from the end) or by a symbolic dim's name (`axis=T`)."""
        rank = shape.rank if rank is None else rank
        if isinstance(e, ast.Var) and e.name in [d for d in shape.dims if isinstance(d, str)]:
            return [d for d in shape.dims].index(e.name)
        axis = self.constant(e, f"the axis of {name}")
        if rank == 0 or not -rank <= axis < rank:
            self.error(f"{name}: axis {axis} does not exist for values of shape {shape.dims_text}", e.span,
                       f"a per-sample axis between {-max(rank, 1)} and {max(rank, 1) - 1}; the batch axis is not "
                       "counted")
        return axis % rank

    def _value_and_keywords(self, e: ast.Call, allowed: tuple[str, ...]):
        values = [a for a in e.args if a.name is None]
        keywords = {a.name: a for a in e.args if a.name is not None}
        for k, a in keywords.items():
            if k not in allowed:
                self.error(f"{e.func.name} has no argument '{k}'", a.span, did_you_mean(k, allowed))
        return values, keywords

    def along_axis(self, e: ast.Call) -> Node:
        """softmax(x, axis=-1), log_softmax(...), and the per-sample reductions mean/sum/max/min(x, axis=k)."""
        name = e.func.name
        values, keywords = self._value_and_keywords(e, ("axis",))
        if len(values) != 1:
            self.error(f"{name}(...) takes one value and axis=: {name}(x, axis=-1)", e.span)
        x = self.check(values[0].value)
        if not x.shape.is_float and name != "sum" and name not in ("max", "min"):
            self.error(f"{name} needs floating-point values, not {x.shape}", e.span)
        axis_e = keywords["axis"].value if "axis" in keywords else ast.Number(value=-1, span=e.span)
        axis = self.axis(x.shape, axis_e, name)
        if name in AXIS_FUNCTIONS:
            return Op(name=name, args=(x,), axis=axis, shape=x.shape, batched=x.batched, mask=x.mask)
        shape = TensorShape(x.shape.dtype, x.shape.dims[:axis] + x.shape.dims[axis + 1:])
        return Op(name=name, args=(x,), axis=axis, shape=shape, batched=x.batched,
                  mask=keep_mask(shape, x) if axis != 0 else None)

    def reorder(self, e: ast.Call) -> Node:
        """transpose(x, a, b) swaps two per-sample axes; permute(x, d0, d1, ...) reorders all of them."""
        name = e.func.name
        values, _ = self._value_and_keywords(e, ())
        if not values:
            self.error(f"{name} takes a value first: {name}(x, 0, 1)", e.span)
        x = self.check(values[0].value)
        axes = [self.axis(x.shape, a.value, name) for a in values[1:]]
        if name == "transpose":
            if len(axes) != 2:
                self.error("transpose swaps two axes: transpose(x, 0, 1)", e.span)
            order = list(range(x.shape.rank))
            order[axes[0]], order[axes[1]] = order[axes[1]], order[axes[0]]
        else:
            if sorted(axes) != list(range(x.shape.rank)):
                self.error(f"permute needs each of the {x.shape.rank} per-sample axes once, in the new order",
                           e.span, f"e.g. permute(x, {', '.join(str(i) for i in reversed(range(x.shape.rank)))})")
            order = axes
        shape = TensorShape(x.shape.dtype, tuple(x.shape.dims[i] for i in order))
        return Op(name="permute", args=(x,), params=tuple(order), shape=shape, batched=x.batched,
                  mask=keep_mask(shape, x) if order and order[0] == 0 else None)

    def split_parts(self, e: ast.Call) -> list[Node]:
        """split(x, n, axis=-1): n equal parts along an axis, as slices."""
        values, keywords = self._value_and_keywords(e, ("axis",))
        if len(values) != 2:
            self.error("split takes a value and a number of parts: split(h, 2, axis=-1)", e.span)
        x = self.check(values[0].value)
        n = self.constant(values[1].value, "the number of parts of split")
        axis_e = keywords["axis"].value if "axis" in keywords else ast.Number(value=-1, span=e.span)
        axis = self.axis(x.shape, axis_e, "split")
        size = x.shape.dims[axis]
        if n < 1 or not isinstance(size, int) or size % n:
            self.error(f"split cannot cut axis {axis} of {x.shape.dims_text} into {n} equal parts", e.span,
                       "the axis must have a fixed size that the number of parts divides")
        part = size // n
        out = []
        for i in range(n):
            items = tuple([(None, None, None)] * axis + [(i * part, (i + 1) * part, None)])
            dims = x.shape.dims[:axis] + (part,) + x.shape.dims[axis + 1:]
            shape = TensorShape(x.shape.dtype, dims)
            out.append(Op(name="index", args=(x,), params=items, shape=shape, batched=x.batched,
                          mask=keep_mask(shape, x) if axis != 0 else None))
        return out

    def subscript(self, e) -> Node:
        """value[i], value[:, -1], value[1:3, ::2]: indexing and slicing of the per-sample axes."""
        if isinstance(e, ast.Index) and isinstance(e.value, ast.Call) and isinstance(e.value.func, ast.Var) \
                and e.value.func.name == "split":
            parts = self.split_parts(e.value)
            i = self.constant(e.index, "the part of split")
            if not -len(parts) <= i < len(parts):
                self.error(f"split makes {len(parts)} parts; part {i} does not exist", e.index.span)
            return parts[i]
        items_e = [e.index] if isinstance(e, ast.Index) else list(e.items)
        x = self.check(e.value)
        if len(items_e) > x.shape.rank:
            self.error(f"{len(items_e)} subscripts for a value of shape {x.shape.dims_text}", e.span,
                       "subscripts index the per-sample axes; the batch axis is not counted")
        items, dims = [], []
        for k, item in enumerate(items_e):
            d = x.shape.dims[k]
            if isinstance(item, ast.Slice):
                parts = [None if v is None else self.constant(v, "a slice bound") for v in (item.start, item.stop,
                                                                                            item.step)]
                if parts[2] is not None and parts[2] <= 0:
                    self.error("a slice step is a positive whole number", item.span)
                if isinstance(d, int):
                    size = len(range(d)[slice(*parts)])
                    if size == 0:
                        self.error(f"the slice {_slice_text(parts)} of an axis of size {d} is empty", item.span)
                elif parts == [None, None, None]:
                    size = d
                elif parts[0] is not None and parts[0] >= 0 and parts[1] is None and parts[2] is None:
                    size = f"{d}-{parts[0]}" if parts[0] else d
                else:
                    self.error(f"only whole-axis or `start:` slices of an axis of any length ({d})", item.span)
                items.append(tuple(parts))
                dims.append(size)
            else:
                i = self.constant(item, "an index")
                if isinstance(d, int) and not -d <= i < d:
                    self.error(f"index {i} is out of range for an axis of size {d}", item.span)
                items.append(i)
        dims += list(x.shape.dims[len(items_e):])
        shape = TensorShape(x.shape.dtype, tuple(dims))
        whole_time = not items or items[0] == (None, None, None)
        return Op(name="index", args=(x,), params=tuple(items), shape=shape, batched=x.batched,
                  mask=keep_mask(shape, x) if whole_time else None)

    def matmul(self, e: ast.BinOp) -> Node:
        """a @ b per sample: [..., n, k] @ [..., k, m] -> [..., n, m]; a vector [k] counts as a row or column."""
        a, b = self.check(e.left), self.check(e.right)
        sa, sb = a.shape, b.shape
        if sa.rank == 0 or sb.rank == 0:
            self.error(f"@ multiplies matrices and vectors, not {sa.dims_text} and {sb.dims_text}", e.span,
                       "use * for numbers")
        if not sa.is_float or not sb.is_float:
            self.error(f"@ needs floating-point values, not {sa} and {sb}", e.span)
        ka = sa.dims[-1]
        kb = sb.dims[-2] if sb.rank >= 2 else sb.dims[-1]
        if isinstance(ka, int) and isinstance(kb, int) and ka != kb or (isinstance(ka, str) != isinstance(kb, str)) \
                or (isinstance(ka, str) and ka != kb):
            self.error(f"@: {sa.dims_text} @ {sb.dims_text} — the left's last axis ({ka}) must equal the right's "
                       f"{'second-to-last' if sb.rank >= 2 else 'only'} axis ({kb})", e.span)
        lead_a = sa.dims[:-2] if sa.rank >= 2 else ()
        lead_b = sb.dims[:-2] if sb.rank >= 2 else ()
        try:
            lead = broadcast(TensorShape("f32", lead_a), TensorShape("f32", lead_b)).dims
        except ShapeError as err:
            self.error(err.message, e.span, err.hint)
        dims = lead + ((sa.dims[-2],) if sa.rank >= 2 else ()) + ((sb.dims[-1],) if sb.rank >= 2 else ())
        dtype = result_dtype("mul", [(sa.dtype, False), (sb.dtype, False)])
        shape = TensorShape(dtype, tuple(dims))
        return Op(name="matmul", args=(a, b), shape=shape, batched=a.batched or b.batched, mask=keep_mask(shape, a))


def _slice_text(parts) -> str:
    start, stop, step = parts
    text = f"{'' if start is None else start}:{'' if stop is None else stop}"
    return text + (f":{step}" if step is not None else "")
