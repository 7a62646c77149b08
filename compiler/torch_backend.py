"""The torch backend of the IR: model forward programs, losses and metrics, with batch axes.

The primitives compiler/ir_compile.py calls, in torch. Names resolve from the
environment: inputs, bindings, `output` and targets by name, params and layers
through the module under `MODULE` (looked up at call time, so a deep-copied or
moved module runs its own weights). Losses and metrics follow the per-sample
rule too: a class loss reads class scores on the LAST per-sample axis
(`[T, classes]` against labels `[T]` is one prediction per step), a value loss
compares equal-sized samples.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from .functions import FUNCTIONS
from .ir import BlockCall, Chain, Generate, LossCall, MetricCall, Node, Ref
from .ir_compile import compile_node
from .losses import LOSSES
from dslc.kit.metrics import metric

MODULE = "__module__"

_BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
           "pow": operator.pow, "neg": operator.neg, "matmul": torch.matmul}
_ALONG = {"softmax": torch.softmax, "log_softmax": torch.log_softmax, "mean": torch.mean, "sum": torch.sum,
          "max": torch.amax, "min": torch.amin}


def padding_mask(env: dict, source: tuple):
    """[B, T], True at real steps: the model input's token ids against the padding id (computed once a pass)."""
    key = ("mask",) + tuple(source)
    mask = env.get(key)
    if mask is None:
        name, pad = source
        mask = env[key] = env[name] != pad
    return mask


def _attr(path: str):
    target = torch
    for part in path.split("."):
        target = getattr(target, part)
    return target


def class_scores_first(output: torch.Tensor) -> torch.Tensor:
    """[B, ..., C] -> [B, C, ...], the layout torch's class losses take (a no-op for [B, C])."""
    return output.movedim(-1, 1) if output.dim() > 2 else output


def loss_function(name: str, args: dict):
    """`fn(output, target) -> 0-d tensor` for a loss of the catalog, batched per the per-sample rule."""
    entry = LOSSES[name]
    fn = getattr(F, entry.functional)
    kwargs = {k: v for k, v in args.items() if not k.startswith("__")}
    if entry.target == "class":
        return lambda output, target: fn(class_scores_first(output), target.long(), **kwargs)
    return lambda output, target: fn(output, target.reshape(output.shape).to(output.dtype), **kwargs)


class TorchBackend:
    def ref(self, node: Ref):
        name, index = node.name, node.index
        if node.role == "param":
            return lambda env: getattr(env[MODULE], name)
        if index is not None:
            return lambda env: env[name][index]
        return lambda env: env[name]

    def const(self, value):
        if isinstance(value, tuple):              # fitted statistics, one per element
            return torch.tensor(value, dtype=torch.float32)
        return value                  # a Python number: ints stay ints (x ** 2 is torch's fast square)

    def op(self, name: str):
        if name in _BINARY:
            return _BINARY[name]
        if name == "one_hot":
            return lambda x, n: F.one_hot(torch.as_tensor(x).long(), n).to(torch.get_default_dtype())
        return _attr(FUNCTIONS[name].torch)

    def pad(self, x, count: int):
        return x[(slice(None),) + (None,) * count]

    def join(self, name: str, values: list, axis: int, batched: list[bool]):
        rows = next((v.shape[0] for v, b in zip(values, batched) if b), None)
        values = [torch.as_tensor(v) for v in values]
        if rows is not None:
            values = [v if b else v.expand(rows, *v.shape) for v, b in zip(values, batched)]
        floats = [v.dtype for v in values if v.is_floating_point()]
        if floats:
            values = [v.to(floats[0]) for v in values]
        at = axis + (1 if rows is not None else 0)
        return torch.cat(values, dim=at) if name == "concat" else torch.stack(values, dim=at)

    def along(self, name: str, x, axis: int):
        return _ALONG[name](x, axis)

    def permute(self, x, order: tuple):
        return x.permute(order)

    def expand(self, x, axis: int):
        return x.unsqueeze(axis)

    def squeeze(self, x, axis: int):
        return x.squeeze(axis)

    def reduce(self, name: str):
        if name == "mean":
            return lambda x: torch.as_tensor(x).mean()
        return lambda x: torch.as_tensor(x).sum()

    def chain(self, node: Chain):
        names = node.layers

        def run(env, x):
            modules = env[MODULE]._modules
            for n in names:
                m = modules[n]
                source = getattr(m, "mask_from", None)
                x = m(x, mask=padding_mask(env, source)) if source else m(x)
            return x
        return run

    def block(self, node: BlockCall):
        name = node.block
        return lambda env, x: env[MODULE]._modules[name](x, env)

    def layer_call(self, node):
        name = node.layer

        def run(env, x, **values):
            m = env[MODULE]._modules[name]
            source = getattr(m, "mask_from", None)
            masks = {f"{k}_mask": padding_mask(env, src) for k, src in getattr(m, "value_masks", ())}
            if source:
                masks["mask"] = padding_mask(env, source)
            return m(x, **values, **masks)
        return run

    def loss(self, node: LossCall):
        return loss_function(node.name, node.kwargs)

    def metric(self, node: MetricCall):
        return metric(node.name, node.kwargs)

    def generate(self, node: Generate):
        raise TypeError(f"{node.name}(...) makes data columns and runs on the numpy backend only")


BACKEND = TorchBackend()


def compile_torch(node: Node):
    """`fn(env) -> tensor`: the node compiled once for torch."""
    return compile_node(node, BACKEND)
