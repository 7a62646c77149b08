"""Build: a checked ModelIR becomes a torch `nn.Module` (compiler.modules.SpecModule).

Module and parameter names follow the spec: top-level layers are `conv2d_1`,
`linear_2`, ...; a block's layers live under the block's name
(`encoder.linear_1.weight`); params keep their own names (`w`, `b`).
"""

from __future__ import annotations

import torch
from torch import nn

from .initializers import INITIALIZERS
from .ir import InitIR, LayerIR, ModelIR
from .layers import LAYERS
from .modules import _LAST_AXIS, Block, Each, SpecModule
from .shapes import TensorShape
from .values import bind
from dslc.dsl.diagnostics import Report


def build_layer(l: LayerIR) -> nn.Module:
    layer = LAYERS[l.layer]
    if l.each:
        step = TensorShape(l.input.dtype, l.input.dims[1:])
        inner = layer.build(step, l.args)
        # Layers that act on the last axis need no wrapper, so `each linear(1)` keeps `linear_1.weight`.
        return inner if isinstance(inner, _LAST_AXIS) else Each(inner)
    return layer.build(l.input, l.args)


def _param(p) -> nn.Parameter:
    dims = tuple(p.shape.dims)
    if isinstance(p.init, (int, float, list)):
        t = torch.tensor(p.init, dtype=torch.float32).reshape(dims) if dims else torch.tensor(float(p.init))
    else:
        t = torch.empty(dims, dtype=torch.float32)
        init = INITIALIZERS[p.init.name]
        init.apply(t, _init_args(init, p.init))
    return nn.Parameter(t)


def _init_args(init, call) -> dict:
    args = bind(init.name, init.args, list(call.args), call.span, Report())
    args.pop("__spans__", None)
    return args


def build_model(ir: ModelIR, init: list[InitIR] = ()) -> SpecModule:
    """The model's nn.Module with freshly initialised weights (seed torch first for repeatability)."""
    params = {p.name: _param(p) for p in ir.params}
    blocks = {b.name: Block({l.name: build_layer(l) for l in b.layers}) for b in ir.blocks.values()}
    layers = {l.name: build_layer(l) for l in ir.layers}
    module = SpecModule(ir, layers, blocks, params)
    apply_init(module, ir, init)
    return module


def apply_init(module: nn.Module, ir: ModelIR, rules: list[InitIR]) -> None:
    """Fill weights or biases of matching layers, by layer kind (`linear`) or by name (`encoder.linear_1`)."""
    if not rules:
        return
    kinds = {l.name: l.layer for l in ir.layers}
    kinds.update({f"{b.name}.{l.name}": l.layer for b in ir.blocks.values() for l in b.layers})
    for rule in rules:
        init = INITIALIZERS[rule.dist.name]
        for path, kind in kinds.items():
            if rule.target not in (path, kind):
                continue
            for name, tensor in module.get_submodule(path).named_parameters():
                leaf = name.rsplit(".", 1)[-1]
                if leaf.startswith(rule.param) and (tensor.dim() >= 2 or not init.needs_matrix):
                    init.apply(tensor, rule.dist.args)
