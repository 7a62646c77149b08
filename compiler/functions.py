"""The expression-function catalog: functions a model `return` or a loss expression may call.

Each entry has a kind that fixes its shape rule (elementwise keeps the shape;
reduce gives one number for the whole batch) and a torch implementation that
is looked up only when the model runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Function:
    name: str
    kind: str          # "elementwise" | "reduce"
    torch_name: str    # attribute of torch
    doc: str


FUNCTIONS: dict[str, Function] = {}


def register(name: str, kind: str, torch_name: str, doc: str) -> None:
    FUNCTIONS[name] = Function(name, kind, torch_name, doc)


for _name, _doc in [("exp", "e to the x"), ("log", "natural logarithm"), ("sqrt", "square root"),
                    ("abs", "absolute value"), ("sin", "sine"), ("cos", "cosine"), ("tanh", "hyperbolic tangent"),
                    ("sigmoid", "logistic sigmoid"), ("relu", "max(0, x)")]:
    register(_name, "elementwise", _name, _doc)
register("softplus", "elementwise", "nn.functional.softplus", "log(1 + e^x)")
register("mean", "reduce", "mean", "mean over the batch and every axis: one number")
register("sum", "reduce", "sum", "sum over the batch and every axis: one number")
