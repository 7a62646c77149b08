"""Metrics as a sum and a count per batch, added up over a split and divided once: exact over any batching.

`accuracy` and `top_k` count right predictions (class scores on the output's
last axis against class indices: one prediction per sample, or per step of a
sequence); `mse`, `mae` and `rmse` average each sample's error over its elements
(rmse: the square root of the split's mean). `Metrics` holds the metrics of a
run and turns the split's means into the reported values.
"""

from __future__ import annotations

import math


def _hits(args: dict):
    k = args.get("k", 1)

    def hits(output, target):
        target = target.long()
        if k == 1:
            right = output.argmax(dim=-1) == target
        else:
            top = output.topk(min(k, output.shape[-1]), dim=-1).indices
            right = (top == target.unsqueeze(-1)).any(dim=-1)
        return right.sum(), right.numel()
    return hits


def _errors(squared: bool):
    def build(args: dict):
        def error(output, target):
            diff = output - target.reshape(output.shape).to(output.dtype)
            per = diff.pow(2) if squared else diff.abs()
            per_sample = per.reshape(per.shape[0], -1).mean(dim=1) if per.dim() > 1 else per
            return per_sample.sum(), per_sample.shape[0]
        return error
    return build


# name -> (build(args) -> fn(output, target) -> (sum, count), report the square root of the mean)
METRICS = {
    "accuracy": (lambda args: _hits({"k": 1}), False),
    "top_k": (_hits, False),
    "mse": (_errors(True), False),
    "rmse": (_errors(True), True),
    "mae": (_errors(False), False),
}


def metric(name: str, args: dict | None = None):
    """`fn(output, target) -> (sum, count)` for one metric: its sum over the batch and how many it counts."""
    return METRICS[name][0](args or {})


def metric_key(name: str, args: dict | None = None) -> str:
    """The metric's name in records: accuracy, top5, mse."""
    return f"top{(args or {})['k']}" if name == "top_k" else name


class Metrics:
    """A run's metrics: `keys`, `self(output, targets) -> [(sum, count), ...]` for a batch, and
    `finish(means)` for the split's means (sum / count) as reported (rmse: the square root)."""

    def __init__(self, keys=(), functions=(), roots=()):
        self.keys, self.functions, self.roots = list(keys), list(functions), list(roots)

    @classmethod
    def of(cls, settings: list[dict], operands=None) -> Metrics:
        """From plain settings (`[{"name": "accuracy"}, {"name": "top_k", "k": 5}]`); `operands(output,
        targets) -> (output, target)` says what they compare (by default the output and the first target)."""
        operands = operands or (lambda output, targets: (output, targets[0]))
        functions, roots = [], []
        for s in settings:
            args = {k: v for k, v in s.items() if k != "name"}
            fn = metric(s["name"], args)
            functions.append(lambda output, targets, fn=fn: fn(*operands(output, targets)))
            roots.append(METRICS[s["name"]][1])
        return cls([metric_key(s["name"], s) for s in settings], functions, roots)

    def __len__(self) -> int:
        return len(self.keys)

    def __call__(self, output, targets) -> list:
        return [fn(output, targets) for fn in self.functions]

    def finish(self, means: list[float]) -> dict[str, float]:
        return {k: (math.sqrt(v) if root and not math.isnan(v) and v >= 0 else v)
                for k, v, root in zip(self.keys, means, self.roots)}
