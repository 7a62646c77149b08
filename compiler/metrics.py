"""The metric catalog: `metrics = [accuracy, top_k(k=5)]`.

`target` is as for losses: "class" metrics compare class scores with class
indices, "same" metrics compare values. Each is computed as a sum over a
batch and divided by the number of samples, so evaluation is exact over a split.
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

    def batch_sum(self, output, target, args: dict):
        """Sum of the metric over the samples of one batch (a 0-d tensor)."""
        import torch
        if self.name == "accuracy":
            return (output.argmax(dim=1) == target.long()).sum()
        if self.name == "top_k":
            k = min(args["k"], output.shape[1])
            return (output.topk(k, dim=1).indices == target.long().unsqueeze(1)).any(dim=1).sum()
        diff = output - target.reshape(output.shape).to(output.dtype)
        per_sample = diff.pow(2) if self.name == "mse" else diff.abs()
        return per_sample.reshape(output.shape[0], -1).mean(dim=1).sum() if per_sample.dim() > 1 else per_sample.sum()


METRICS: dict[str, Metric] = {}


def register(m: Metric) -> None:
    METRICS[m.name] = m


register(Metric("accuracy", "Share of samples whose highest score is the true class.", "class"))
register(Metric("top_k", "Share of samples whose true class is among the k highest scores.", "class",
                [Arg("k", "int", 5, check=positive)]))
register(Metric("mse", "Mean squared error.", "same"))
register(Metric("mae", "Mean absolute error.", "same"))
