"""The training loss and the metrics as torch functions, compiled once from the spec's IR.

`make_loss(checked, module)` returns `loss(output, inputs, targets) -> 0-d tensor`;
`make_metrics(checked)` returns the metrics, `fn(output, targets) -> [(sum, count), ...]`. Both
are the IR nodes the checker typed (compiler/ir.py), compiled by the torch backend
(compiler/torch_backend.py), so a step pays for the tensor operations only and
computes exactly what `dslc check` typed, per sample.
"""

from __future__ import annotations

import math

import torch

from dslc.compiler.ir import CheckedSpec
from dslc.compiler.metrics import METRICS
from dslc.compiler.torch_backend import MODULE, compile_torch


def _names(checked: CheckedSpec) -> tuple[list[str], list[str]]:
    return list(checked.model.inputs), list(checked.data.target_names)


def make_loss(checked: CheckedSpec, module: torch.nn.Module):
    """The spec's loss as `fn(output, inputs, targets) -> 0-d tensor`."""
    fn = compile_torch(checked.train.loss.node)
    input_names, target_names = _names(checked)

    def loss(output, inputs, targets):
        env = dict(zip(input_names, inputs))
        env.update(zip(target_names, targets))        # a target and an input of one name: the loss means the target
        env["output"] = output
        env[MODULE] = module
        return fn(env)
    return loss


class Metrics:
    """The spec's metrics: `keys` (accuracy, top5, ...) and `self(output, targets) -> [(sum, count), ...]`;
    `finish(means)` turns the split's means (sum / count) into the reported values (rmse: the square root)."""

    def __init__(self, checked: CheckedSpec):
        self.keys = [m.key for m in checked.train.metrics]
        try:
            self._fns = [compile_torch(m) for m in checked.train.metrics]
        except TypeError as err:        # a Fitted node: the caller passed the spec before its data was fitted
            raise ValueError(f"the metrics need the fitted spec (LoadedData.checked): {err}") from None
        self._roots = [METRICS[m.name].root for m in checked.train.metrics]
        self._targets = list(checked.data.target_names)

    def finish(self, means: list[float]) -> dict[str, float]:
        return {k: (math.sqrt(v) if root and v == v and v >= 0 else v)
                for k, v, root in zip(self.keys, means, self._roots)}

    def __len__(self) -> int:
        return len(self.keys)

    def __call__(self, output, targets) -> list:
        env = dict(zip(self._targets, targets))
        env["output"] = output
        return [fn(env) for fn in self._fns]


def make_metrics(checked: CheckedSpec) -> Metrics:
    return Metrics(checked)
