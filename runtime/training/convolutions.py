"""Faster 2-d convolutions with the same numbers: channels_last memory, and max-pooling before ReLU.

`speed_up(module, model, device, precision)` is applied to the module that
trains (and to the one `dslc eval` runs); it changes how the module computes,
never what: the state_dict keys and values, the checkpoints and the exported
ONNX graph (built afresh from the checkpoint) are those of the plain module.

- **channels_last**: a model with `nn.Conv2d` layers keeps its 4-d weights
  in NHWC order, so oneDNN (CPU) and cuDNN run their NHWC kernels and the
  activations between conv, ReLU and pooling stay NHWC (the input is read as
  it is; a [N, 1, H, W] image is already both). Chosen on the CPU when
  oneDNN is there, and on CUDA under `amp`/`bf16` (tensor cores prefer
  NHWC). Sums may run in another order: each step's loss agrees to float
  rounding (~1e-7 relative) and its gradients to ~1e-6 of the largest one.
  Not for training a model with normalisation layers (batch, instance,
  group or layer norm): PyTorch's NHWC batch-norm backward on the CPU is
  10-100x less exact than its NCHW one (1e-6 to 4e-5 relative on its input
  gradient), and the convolution before it, whose true gradient is a small
  residual after batch norm removes each channel's mean, magnifies that to a
  3% error in its weight gradient (cnn_batchnorm, against float64: NCHW
  8e-6). `dslc eval` makes the same choice as training, so it reproduces the
  figures the run recorded.
- **pooling before ReLU**: `relu maxpool2d(k)` computes `maxpool2d(k) relu`,
  so the activation and its backward touch k*k times fewer values. max and
  ReLU commute exactly (ReLU does not decrease), and the gradient reaches the
  same element (ties included: where the window's maximum is not positive
  both orders give zero), so values and gradients are bit-identical. Only
  adjacent layers of one chain or block, whose ReLU output nothing else reads,
  are swapped.

Measured on the 2-core CPU machine this project runs on, one thread, the
cnn_mnist epoch (bench/train_overhead.py): NCHW 1.04 s, channels_last 0.79 s,
both 0.69 s (min of 4 rounds; the machine is shared, so the figures move).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dslc.compiler.ir import Chain, walk


class MaxPool2dReLU(nn.MaxPool2d):
    """max-pooling, then ReLU: the same values as ReLU then max-pooling, on k*k times fewer elements."""

    def forward(self, x):
        return F.relu(super().forward(x))


def has_conv2d(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


NORMALISATION = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def channels_last_pays(module: nn.Module, device: torch.device, precision: str = "fp32") -> bool:
    """True when the module has 2-d convolutions, no normalisation layer (see the module docstring), and the
    device runs them faster in NHWC order."""
    if not has_conv2d(module):
        return False
    if any(isinstance(m, NORMALISATION) for m in module.modules()):
        return False
    if device.type == "cpu":
        return torch.backends.mkldnn.is_available()
    if device.type == "cuda":
        return precision in ("amp", "bf16")
    return False


def relu_pool_pairs(module: nn.Module, model) -> list[tuple[nn.Module, str, str]]:
    """(parent, relu name, pool name) of every ReLU whose only reader is the max-pooling right after it."""
    pairs = []

    def consider(parent: nn.Module, names) -> None:
        children = parent._modules
        for a, b in zip(names, names[1:]):
            relu, pool = children.get(a), children.get(b)
            if (type(relu) is nn.ReLU and type(pool) is nn.MaxPool2d and not pool.return_indices
                    and getattr(relu, "mask_from", None) is None and getattr(pool, "mask_from", None) is None):
                pairs.append((parent, a, b))

    if model is not None:
        for node in [n for _, step in model.steps for n in walk(step)] + [n for o in model.outputs for n in walk(o)]:
            if isinstance(node, Chain):
                consider(module, list(node.layers))
    from dslc.compiler.modules import Block
    for m in module.modules():
        if isinstance(m, Block):
            consider(m, list(m._modules))
    return pairs


def pool_before_relu(module: nn.Module, model) -> int:
    """Swap every eligible `relu maxpool2d` pair in place (see the module docstring); returns how many."""
    pairs = relu_pool_pairs(module, model)
    for parent, relu_name, pool_name in pairs:
        pool = parent._modules[pool_name]
        fused = MaxPool2dReLU(pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                              ceil_mode=pool.ceil_mode)
        fused.mask_from = getattr(pool, "mask_from", None)
        fused.value_masks = getattr(pool, "value_masks", ())
        identity = nn.Identity()
        identity.mask_from = None
        identity.value_masks = ()
        parent._modules[pool_name] = fused
        parent._modules[relu_name] = identity
    return len(pairs)


def speed_up(module: nn.Module, model, device: torch.device, precision: str = "fp32") -> list[str]:
    """Apply what pays for this module on this device; returns what was applied."""
    applied = []
    if pool_before_relu(module, model):
        applied.append("pool_before_relu")
    if channels_last_pays(module, device, precision):
        module.to(memory_format=torch.channels_last)
        applied.append("channels_last")
    return applied
