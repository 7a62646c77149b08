"""The expression-function catalog: functions model, loss and data expressions may call.

Each entry is everything the function needs, in one place: its kind (elementwise
keeps the shape; reduce gives one number for the batch; encode and fitted are
data-block functions: `one_hot` turns a category into a vector, `standardize` and
`min_max` scale with statistics fitted on the training split), its torch form (an
attribute path of torch, used by the model, the loss and `dslc emit`), and its
numpy form (a function of the numpy module and a value, and the same as source
text for ejected code), used for data columns and prediction-time
preprocessing. Nothing here imports torch or numpy. Adding a function is one
`register(...)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Function:
    name: str
    kind: str                           # "elementwise" | "reduce" | "encode" | "fitted"
    doc: str
    torch: str                          # attribute path of torch: "exp", "nn.functional.softplus"
    numpy: Callable | None = None       # (numpy module, value) -> value
    numpy_source: str | None = None     # the same as source text, e.g. "np.exp({x})"
    keeps_integers: bool = False        # abs, relu: an integer stays an integer; others give floats


FUNCTIONS: dict[str, Function] = {}


def register(f: Function) -> None:
    FUNCTIONS[f.name] = f


def _numpy_named(name: str) -> dict:
    return dict(numpy=lambda np, x: getattr(np, name)(x), numpy_source=f"np.{name}({{x}})")


for _name, _doc in [("exp", "e to the x"), ("log", "natural logarithm"), ("sqrt", "square root"),
                    ("abs", "absolute value"), ("sin", "sine"), ("cos", "cosine"), ("tanh", "hyperbolic tangent")]:
    register(Function(_name, "elementwise", _doc, torch=_name, keeps_integers=_name == "abs", **_numpy_named(_name)))
register(Function("sigmoid", "elementwise", "logistic sigmoid", torch="sigmoid",
                  numpy=lambda np, x: 1.0 / (1.0 + np.exp(-x)), numpy_source="1.0 / (1.0 + np.exp(-{x}))"))
register(Function("relu", "elementwise", "max(0, x)", torch="relu", keeps_integers=True,
                  numpy=lambda np, x: np.maximum(x, 0), numpy_source="np.maximum({x}, 0)"))
register(Function("softplus", "elementwise", "log(1 + e^x)", torch="nn.functional.softplus",
                  numpy=lambda np, x: np.logaddexp(0.0, x), numpy_source="np.logaddexp(0.0, {x})"))
register(Function("one_hot", "encode", "a category (or whole number below n: one_hot(x, n)) as a vector of n "
                  "values, 1 at its index", torch="nn.functional.one_hot",
                  numpy=lambda np, x, n: np.eye(n)[np.asarray(x, dtype=np.int64)],
                  numpy_source="np.eye({n})[{x}]"))
register(Function("standardize", "fitted", "(x - mean) / std, the mean and std (per element) fitted on the training "
                  "split", torch=""))
register(Function("min_max", "fitted", "(x - min) / (max - min), min and max (per element) fitted on the training "
                  "split", torch=""))
register(Function("mean", "reduce", "mean over the batch and every axis: one number", torch="mean"))
register(Function("sum", "reduce", "sum over the batch and every axis: one number", torch="sum"))


ELEMENTWISE = tuple(n for n, f in FUNCTIONS.items() if f.kind == "elementwise")
DATA_ONLY = tuple(n for n, f in FUNCTIONS.items() if f.kind in ("encode", "fitted"))
