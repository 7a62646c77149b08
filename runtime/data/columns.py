"""Data expressions evaluated over numpy columns: `t_u * scale`, `x + normal(0, 0.3)`, `sin(t)`.

A column is an array whose first axis runs over samples ([N] for numbers,
[N, 10, 1] for windows); a number is a 0-d value. Arithmetic follows the
checker's per-sample rule: per-sample dims are aligned from the right, so a
[N] column combines with a [N, 10, 1] one. `let` numbers are looked up after
columns. Generating functions (linspace, normal, uniform, arange) make one
value per row and draw from the numpy Generator they are given.
"""

from __future__ import annotations

import numpy as np

from dslc.errors import UserError
from dslc.dsl import ast
from dslc.dsl.format import format_expr

ELEMENTWISE = {"sin": np.sin, "cos": np.cos, "exp": np.exp, "log": np.log, "abs": np.abs, "sqrt": np.sqrt,
               "tanh": np.tanh}
# Generating functions: parameter names with defaults (None: required). Each makes n values.
GENERATORS = {"linspace": (("start", None), ("stop", None)),
              "normal": (("mean", 0.0), ("std", 1.0)),
              "uniform": (("low", 0.0), ("high", 1.0)),
              "arange": (("start", 0.0), ("step", 1.0))}


def evaluate(expr: ast.Expr, columns: dict[str, np.ndarray], lets: dict | None = None, n: int | None = None,
             rng: np.random.Generator | None = None):
    """The value of a data expression: an array with one entry per row, or a plain number."""
    return _Evaluator(columns, lets or {}, n, rng)(expr)


def evaluate_column(expr: ast.Expr, columns: dict[str, np.ndarray], lets: dict | None = None, n: int | None = None,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """Like `evaluate`, but a constant becomes a column of n equal values."""
    value = evaluate(expr, columns, lets, n, rng)
    if np.ndim(value) == 0:
        if n is None:
            raise UserError(f"'{format_expr(expr)}' is a single number, not a column")
        return np.full(n, float(value))
    return value


def inline_lets(expr: ast.Expr, lets: dict) -> ast.Expr:
    """The expression with `let` numbers written in place, so it can be evaluated without the spec."""
    if isinstance(expr, ast.Var):
        v = lets.get(expr.name)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return ast.Number(value=v) if v >= 0 else ast.Neg(operand=ast.Number(value=-v))
        return expr
    if isinstance(expr, ast.BinOp):
        return ast.BinOp(op=expr.op, left=inline_lets(expr.left, lets), right=inline_lets(expr.right, lets))
    if isinstance(expr, ast.Neg):
        return ast.Neg(operand=inline_lets(expr.operand, lets))
    if isinstance(expr, ast.Call):
        return ast.Call(func=expr.func, args=[ast.Argument(name=a.name, value=inline_lets(a.value, lets))
                                              for a in expr.args])
    return expr


def _align(a, b):
    """Insert axes after the sample axis of the lower-rank column so per-sample dims align from the right."""
    if np.ndim(a) == 0 or np.ndim(b) == 0 or a.ndim == b.ndim:
        return a, b
    if a.ndim < b.ndim:
        return a.reshape(a.shape[:1] + (1,) * (b.ndim - a.ndim) + a.shape[1:]), b
    return a, b.reshape(b.shape[:1] + (1,) * (a.ndim - b.ndim) + b.shape[1:])


_BINARY = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide, "**": np.power}


class _Evaluator:
    def __init__(self, columns, lets, n, rng):
        self.columns = columns
        self.lets = lets
        self.n = n
        self.rng = rng

    def __call__(self, e):
        if isinstance(e, ast.Number):
            return float(e.value)
        if isinstance(e, ast.Var):
            if e.name in self.columns:
                return np.asarray(self.columns[e.name])
            v = self.lets.get(e.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
            known = ", ".join(self.columns) or "none"
            raise UserError(f"the data has no column '{e.name}' (columns: {known})")
        if isinstance(e, ast.Neg):
            return np.negative(self(e.operand))
        if isinstance(e, ast.BinOp):
            a, b = _align(self(e.left), self(e.right))
            if e.op == "**" and np.ndim(a) == 0 and np.ndim(b) == 0:
                return float(a) ** float(b)
            try:
                with np.errstate(all="ignore"):
                    out = _BINARY[e.op](a, b)
            except ValueError:
                raise UserError(f"cannot combine columns of shapes {np.shape(a)[1:]} and {np.shape(b)[1:]} "
                                f"in '{format_expr(e)}'") from None
            return float(out) if np.ndim(out) == 0 else out
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Var):
            return self.call(e)
        raise UserError(f"'{format_expr(e)}' cannot be computed from data columns")

    def call(self, e: ast.Call):
        name = e.func.name
        if name in ELEMENTWISE:
            if len(e.args) != 1 or e.args[0].name:
                raise UserError(f"{name}(...) takes one value, in '{format_expr(e)}'")
            with np.errstate(all="ignore"):
                out = ELEMENTWISE[name](self(e.args[0].value))
            return float(out) if np.ndim(out) == 0 else out
        if name not in GENERATORS:
            raise UserError(f"unknown function '{name}' in the data expression '{format_expr(e)}'; "
                            f"functions: {', '.join(list(ELEMENTWISE) + list(GENERATORS))}")
        if self.n is None:
            raise UserError(f"{name}(...) makes one value per row and can only be used where the number of "
                            f"rows is known (generate, sequence)")
        params = self.bind(name, e)
        n = self.n
        if name == "linspace":
            return np.linspace(params["start"], params["stop"], n)
        if name == "arange":
            return params["start"] + params["step"] * np.arange(n, dtype=np.float64)
        if self.rng is None:
            raise UserError(f"{name}(...) draws random numbers but no seed was given")
        if name == "normal":
            if np.any(np.asarray(params["std"]) < 0):
                raise UserError(f"normal(...) needs std >= 0, in '{format_expr(e)}'")
            return self.rng.normal(params["mean"], params["std"], size=n)
        if np.any(np.asarray(params["high"]) < np.asarray(params["low"])):
            raise UserError(f"uniform(...) needs low <= high, in '{format_expr(e)}'")
        return self.rng.uniform(params["low"], params["high"], size=n)

    def bind(self, name: str, e: ast.Call) -> dict:
        signature = GENERATORS[name]
        names = [p for p, _ in signature]
        usage = f"{name}({', '.join(names)})"
        out: dict = {}
        for i, a in enumerate(e.args):
            key = a.name if a.name else (names[i] if i < len(names) else None)
            if key is None or key not in names:
                raise UserError(f"{usage} does not take {'argument ' + repr(a.name) if a.name else 'so many values'}"
                                f", in '{format_expr(e)}'")
            if key in out:
                raise UserError(f"{usage}: '{key}' is given twice, in '{format_expr(e)}'")
            value = self(a.value)
            if np.ndim(value) != 0 and np.shape(value)[0] != self.n:
                raise UserError(f"{usage}: '{key}' must be a number or a column of {self.n} rows")
            out[key] = value
        for key, default in signature:
            if key not in out:
                if default is None:
                    raise UserError(f"{usage} needs '{key}', in '{format_expr(e)}'")
                out[key] = default
        return out
