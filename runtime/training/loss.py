"""The training loss and the metrics as torch functions, compiled once from the spec's IR.

`make_loss(checked, module)` returns `loss(output, inputs, targets) -> 0-d tensor`;
`make_metrics(checked)` returns the metrics, `fn(output, targets) -> [(sum, count), ...]`. Both
are the IR nodes the checker typed (compiler/ir.py), compiled by the torch backend
(compiler/torch_backend.py), so a step pays for the tensor operations only and
computes exactly what `dslc check` typed, per sample.
"""

from __future__ import annotations

import torch

from dslc.compiler.ir import CheckedSpec
from dslc.compiler.metrics import METRICS
from dslc.compiler.torch_backend import MODULE, compile_torch
from dslc.kit.metrics import Metrics


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


def make_metrics(checked: CheckedSpec) -> Metrics:
    """The spec's metrics as the kit's `Metrics` (dslc/kit/metrics.py): each metric node compiled with its
    operands (a scaled target's metrics back in its column's units), the catalog's sum and count at its core."""
    targets = list(checked.data.target_names)
    try:
        compiled = [compile_torch(m) for m in checked.train.metrics]
    except TypeError as err:        # a Fitted node: the caller passed the spec before its data was fitted
        raise ValueError(f"the metrics need the fitted spec (LoadedData.checked): {err}") from None

    def bound(fn):
        return lambda output, values: fn({**dict(zip(targets, values)), "output": output})
    return Metrics([m.key for m in checked.train.metrics], [bound(fn) for fn in compiled],
                   [METRICS[m.name].root for m in checked.train.metrics])
