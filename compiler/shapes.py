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
