"""The metric catalog: `metrics = [accuracy, top_k(k=5)]`.

`target` is as for losses: "class" metrics compare class scores (on the output's
last axis) with class indices, "same" metrics compare values. Each is computed as a
sum over a batch and a count, added up over the batches and divided at the end, so
evaluation is exact over a split (compiler/torch_backend.py `metric_function`);
`root` metrics take the square root of that mean (rmse).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .values import Arg, positive


@dataclass(frozen=True)
class Metric:
    name: str
    doc: str
    target: str
    args: list[Arg] = field(default_factory=list)
    root: bool = False                  # the square root of the mean over the split (rmse)


METRICS: dict[str, Metric] = {}


def register(m: Metric) -> None:
    METRICS[m.name] = m


register(Metric("accuracy", "Share of samples whose highest score is the true class.", "class"))
register(Metric("top_k", "Share of samples whose true class is among the k highest scores.", "class",
                [Arg("k", "int", 5, check=positive)]))
register(Metric("mse", "Mean squared error.", "same"))
register(Metric("rmse", "Root mean squared error (in the target's units).", "same", root=True))
register(Metric("mae", "Mean absolute error.", "same"))
