"""Tensor types known at check time: an element type and per-sample dims.

The batch dimension is implicit and never written. A dim is a whole number or
a symbol (`T`, any length). Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

DTYPES = {"f16": "float16", "bf16": "bfloat16", "f32": "float32", "f64": "float64",
          "i32": "int32", "i64": "int64", "bool": "bool"}
FLOAT_DTYPES = {"f16", "bf16", "f32", "f64"}
INT_DTYPES = {"i32", "i64"}

Dim = int | str


class ShapeError(Exception):
    """A layer cannot take the value it is given; message and hint for the spec's author."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class TensorShape:
    dtype: str
    dims: tuple[Dim, ...]

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(str(d) for d in self.dims)}]"

    @property
    def dims_text(self) -> str:
        return "[" + ", ".join(str(d) for d in self.dims) + "]"

    @property
    def rank(self) -> int:
        return len(self.dims)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def is_int(self) -> bool:
        return self.dtype in INT_DTYPES

    def with_dims(self, dims, dtype: str | None = None) -> "TensorShape":
        return TensorShape(dtype or self.dtype, tuple(dims))

    @property
    def symbolic(self) -> bool:
        return any(isinstance(d, str) for d in self.dims)

    def numel(self) -> int | None:
        n = 1
        for d in self.dims:
            if isinstance(d, str):
                return None
            n *= d
        return n


def broadcast(a: TensorShape, b: TensorShape) -> TensorShape:
    """numpy-style broadcasting of per-sample dims; raises ShapeError when they do not fit."""
    dims = []
    for i in range(max(a.rank, b.rank)):
        x = a.dims[a.rank - 1 - i] if i < a.rank else 1
        y = b.dims[b.rank - 1 - i] if i < b.rank else 1
        if x == y or y == 1:
            dims.append(x)
        elif x == 1:
            dims.append(y)
        else:
            raise ShapeError(f"shapes {a.dims_text} and {b.dims_text} do not match",
                             "elementwise arithmetic needs equal sizes, or size 1 to broadcast")
    dtype = a.dtype if a.is_float or not b.is_float else b.dtype
    return TensorShape(dtype, tuple(reversed(dims)))


# ---------------------------------------------------------------- element types of results

_FLOAT_RANK = {"f16": 1, "bf16": 1, "f32": 2, "f64": 3}
_INT_RANK = {"bool": 0, "i32": 1, "i64": 2}
MAKES_FLOAT = ("div",)          # integer operands give floats (true division)


def result_dtype(op: str, operands: list[tuple[str, bool]]) -> str:
    """The element type of `op` over (dtype, is a plain number) operands, as torch and numpy compute it.

    Tensors promote by kind and width (i32 + i64 -> i64, i64 + f32 -> f32, f32 + f64 -> f64); a plain number
    counts by kind only (f16 * 2.0 stays f16, i64 * 2.5 becomes the default float f32); true division and
    floating-point functions of integers give f32.
    """
    tensors = [d for d, const in operands if not const] or [d for d, _ in operands]
    consts = [d for d, const in operands if const]
    floats = [d for d in tensors if d in _FLOAT_RANK]
    if floats:
        out = max(floats, key=_FLOAT_RANK.get)
    elif any(d in _FLOAT_RANK for d in consts):
        out = "f32"
    else:
        out = max(tensors, key=lambda d: _INT_RANK.get(d, 0))
    if out not in _FLOAT_RANK and op in MAKES_FLOAT:
        out = "f32"
    return out


# ---------------------------------------------------------------- symbolic dims bound to sizes

def dim_bindings(declared: TensorShape, given: TensorShape) -> dict[str, int]:
    """The sizes a declared shape's bare symbolic dims take for a given shape: f32[T, 1] given [10, 1] -> {T: 10}."""
    if declared.rank != given.rank:
        return {}
    return {d: g for d, g in zip(declared.dims, given.dims) if isinstance(d, str) and d.isidentifier()
            and isinstance(g, int)}


def bind_dims(shape: TensorShape, bindings: dict[str, int]) -> TensorShape:
    """The shape with its symbolic dims computed for the bound sizes (`T-2` with T=10 is 8); others stay symbolic."""
    if not bindings or not shape.symbolic:
        return shape
    return shape.with_dims(_bound(d, bindings) for d in shape.dims)


def _bound(dim, bindings: dict[str, int]):
    """A symbolic dim as the layer shape rules write it (`T`, `T-2`, `(T-2)/2+1`; `/` divides whole numbers),
    computed for the bound sizes; the dim itself when a symbol is unbound or the text is not such a formula."""
    if not isinstance(dim, str):
        return dim
    text = dim.replace(" ", "")
    pos = 0

    def peek() -> str:
        return text[pos] if pos < len(text) else ""

    def atom() -> int:
        nonlocal pos
        c = peek()
        if c == "(":
            pos += 1
            value = expr()
            if peek() != ")":
                raise ValueError
            pos += 1
            return value
        start = pos
        while peek() and (peek().isalnum() or peek() == "_"):
            pos += 1
        word = text[start:pos]
        if word.isdigit():
            return int(word)
        if word in bindings:
            return bindings[word]
        raise ValueError

    def term() -> int:
        nonlocal pos
        value = atom()
        while peek() in ("*", "/"):
            op = peek()
            pos += 1
            right = atom()
            value = value * right if op == "*" else value // right
        return value

    def expr() -> int:
        nonlocal pos
        value = term()
        while peek() in ("+", "-"):
            op = peek()
            pos += 1
            right = term()
            value = value + right if op == "+" else value - right
        return value

    try:
        value = expr()
    except (ValueError, ZeroDivisionError):
        return dim
    return value if pos == len(text) and value > 0 else dim
