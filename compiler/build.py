"""Build: a checked ModelIR becomes a torch `nn.Module` (compiler.modules.SpecModule); catalog settings become
torch optimizers (made by the training kit, dslc/kit/optim.py, which makes the schedules too).

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
from .optimizers import OPTIMIZERS
from . import modules
from .modules import Block, Each, SpecModule
from .values import bind
from dslc.dsl.diagnostics import Report
from dslc.kit.optim import make_optimizer


def module_class(name: str) -> type:
    """A catalog entry's module class: `nn.Linear` from torch.nn, anything else from compiler/modules.py."""
    if name.startswith("nn."):
        return getattr(nn, name[3:])
    return getattr(modules, name)


def build_layer(l: LayerIR) -> nn.Module:
    """The module of one checked layer, constructed as its catalog entry says (`each`: for one time step)."""
    layer = LAYERS[l.layer]
    x = l.step_input
    module = module_class(layer.module_name(x, l.args))(**layer.kwargs(x, l.args))
    # Layers that act on the last axis need no wrapper, so `each linear(1)` keeps `linear_1.weight`.
    module = Each(module) if l.each and not layer.last_axis else module
    module.mask_from = l.mask            # (model input, padding id) of the mask a mask-aware layer reads, or None
    module.value_masks = l.value_masks   # the same for value arguments (memory=)
    return module


def _param(p) -> nn.Parameter:
    dims = tuple(p.shape.dims)
    if isinstance(p.init, (int, float, list)):
        t = torch.tensor(p.init, dtype=torch.float32).reshape(dims) if dims else torch.tensor(float(p.init))
    else:
        t = torch.empty(dims, dtype=torch.float32)
        init = INITIALIZERS[p.init.name]
        initialise(t, init, _init_args(init, p.init))
    return nn.Parameter(t)


def _init_args(init, call) -> dict:
    args = bind(init.name, init.args, list(call.args), call.span, Report())
    args.pop("__spans__", None)
    return args


def build_model(ir: ModelIR, init: list[InitIR] = ()) -> SpecModule:
    """The model's nn.Module with freshly initialised weights (seed torch first for repeatability)."""
    params = {p.name: _param(p) for p in ir.params}
    blocks = {b.name: build_block(ir, b.name) for b in ir.top_blocks}
    layers = {l.name: build_layer(l) for l in ir.layers}
    module = SpecModule(ir, layers, blocks, params)
    apply_init(module, ir, init)
    return module


def build_block(ir: ModelIR, path: str) -> Block:
    """A block's module: its layers and nested blocks in order (a residual block adds its input)."""
    block = ir.blocks[path]
    children = {}
    for step in block.steps:
        if isinstance(step, str):
            children[step.rsplit(".", 1)[-1]] = build_block(ir, step)
        else:
            children[step.name] = build_layer(step)
    return Block(children, residual=block.residual)


def apply_init(module: nn.Module, ir: ModelIR, rules: list[InitIR]) -> None:
    """Fill weights or biases of matching layers, by layer kind (`linear`) or by name (`encoder.linear_1`)."""
    if not rules:
        return
    kinds = {path: l.layer for path, l in ir.all_layers}
    for rule in rules:
        init = INITIALIZERS[rule.dist.name]
        for path, kind in kinds.items():
            if rule.target not in (path, kind):
                continue
            for name, tensor in module.get_submodule(path).named_parameters():
                leaf = name.rsplit(".", 1)[-1]
                if leaf.startswith(rule.param) and (tensor.dim() >= 2 or not init.needs_matrix):
                    initialise(tensor, init, rule.dist.args)


def initialise(tensor, init, args: dict, generator=None) -> None:
    """Fill a tensor in place with an initialiser of the catalog (torch.nn.init)."""
    kwargs = {k: v for k, v in args.items() if not k.startswith("__")}
    fn = getattr(nn.init, init.torch_fn)
    with torch.no_grad():
        if init.positional:
            fn(tensor, *kwargs.values(), generator=generator)
        else:
            fn(tensor, **kwargs)


def build_optimizer(call, params):
    """The torch.optim optimizer of a checked `optimizer = ...` setting (compiler.ir.CallIR), as the training kit
    makes it."""
    args = {k: v for k, v in call.args.items() if not k.startswith("__")}
    return make_optimizer({"class": OPTIMIZERS[call.name].torch_class, **args}, params)

