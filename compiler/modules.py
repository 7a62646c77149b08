"""The torch modules a checked model is built from, beyond torch.nn's own.

`SpecModule` runs a ModelIR's forward program, compiled once by the torch backend of the IR; the small layers here
(recurrent layers that return only their outputs, `last`, `each`, ...) keep
torch's parameter names so state_dicts read like the spec.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .torch_backend import MODULE, compile_torch, padding_mask


def _real(mask):
    """A padding mask [B, T] (True: a real step) with fully padded rows treated as all real, so that a sample of
    nothing but padding averages, attends and ends over its steps instead of dividing by zero."""
    return mask | ~mask.any(dim=1, keepdim=True)


class Reshape(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x):
        return x.reshape((x.shape[0],) + self.dims)

    def extra_repr(self) -> str:
        return str(list(self.dims))


class Permute(nn.Module):
    """Reorders the per-sample axes (the batch axis stays first)."""

    def __init__(self, order):
        super().__init__()
        self.order = tuple(order)

    def forward(self, x):
        return x.permute((0,) + tuple(i + 1 for i in self.order))

    def extra_repr(self) -> str:
        return str(list(self.order))


class Last(nn.Module):
    """The last time step; with a padding mask, the last real one."""

    mask_aware = True

    def forward(self, x, mask=None):
        if mask is None:
            return x[:, -1]
        steps = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
        last = torch.where(_real(mask), steps, torch.zeros_like(steps)).amax(dim=1)
        return x[torch.arange(x.shape[0], device=x.device), last]


class MeanOverTime(nn.Module):
    """The mean over time steps; with a padding mask, over the real ones."""

    mask_aware = True

    def forward(self, x, mask=None):
        if mask is None:
            return x.mean(dim=1)
        real = _real(mask).to(x.dtype).unsqueeze(-1)
        return (x * real).sum(dim=1) / real.sum(dim=1)


class SumOverTime(nn.Module):
    """The sum over time steps; with a padding mask, over the real ones."""

    mask_aware = True

    def forward(self, x, mask=None):
        if mask is None:
            return x.sum(dim=1)
        return (x * mask.to(x.dtype).unsqueeze(-1)).sum(dim=1)


class PositionEmbedding(nn.Embedding):
    """A learned vector per position added to a sequence [B, T, D] (T up to `max_len`): torch's embedding table,
    indexed by position."""

    def __init__(self, max_len: int, dim: int):
        super().__init__(max_len, dim)

    def forward(self, x):
        return x + self.weight[: x.shape[1]]


class SinusoidalPosition(nn.Module):
    """The fixed sine/cosine position code of "Attention Is All You Need" added to a sequence [B, T, D]."""

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        self.dim, self.base = dim, base

    def forward(self, x):
        t = torch.arange(x.shape[1], device=x.device, dtype=torch.float32).unsqueeze(1)
        i = torch.arange(0, self.dim, 2, device=x.device, dtype=torch.float32)
        angle = t * torch.exp(-math.log(self.base) * i / self.dim)
        code = torch.zeros(x.shape[1], self.dim, device=x.device, dtype=torch.float32)
        code[:, 0::2] = torch.sin(angle)
        code[:, 1::2] = torch.cos(angle[:, : self.dim // 2])
        return x + code.to(x.dtype)


def causal_mask(steps: int, device) -> torch.Tensor:
    """[T, T], True where a step may not look (at later steps)."""
    return torch.ones(steps, steps, dtype=torch.bool, device=device).triu(1)


class MultiheadAttention(nn.MultiheadAttention):
    """Self-attention over a sequence [B, T, D] (torch's parameters and names), optionally causal; with a
    padding mask, padded steps are not attended to. `cross(query, memory)` attends from one sequence to another."""

    mask_aware = True

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = True, causal: bool = False):
        super().__init__(embed_dim, num_heads, dropout=dropout, bias=bias, batch_first=batch_first)
        self.causal = causal

    def forward(self, x, mask=None, memory=None, memory_mask=None):
        source = x if memory is None else memory
        source_mask = mask if memory is None else memory_mask
        attn = causal_mask(x.shape[1], x.device) if self.causal and memory is None else None
        padding = ~_real(source_mask) if source_mask is not None else None
        return super().forward(x, source, source, key_padding_mask=padding, attn_mask=attn, need_weights=False)[0]


class TransformerEncoder(nn.TransformerEncoder):
    """`layers` encoder layers (torch's nn.TransformerEncoderLayer), batch first; causal for a decoder-only
    (GPT-style) model; with a padding mask, padded steps are not attended to."""

    mask_aware = True

    def __init__(self, dim: int, layers: int, heads: int, ff: int, dropout: float, activation: str,
                 norm_first: bool, causal: bool = False):
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=ff, dropout=dropout, activation=activation,
                                           batch_first=True, norm_first=norm_first)
        super().__init__(layer, layers, enable_nested_tensor=False)
        self.causal = causal

    def forward(self, x, mask=None):
        attn = causal_mask(x.shape[1], x.device) if self.causal else None
        padding = ~_real(mask) if mask is not None else None
        return super().forward(x, mask=attn, src_key_padding_mask=padding, is_causal=False)


class Each(nn.Module):
    """Applies a per-step layer at every time step of a [B, T, ...] sequence."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        y = self.inner(x.flatten(0, 1))
        return y.unflatten(0, (x.shape[0], x.shape[1]))


class _Recurrent:
    """Returns only the output sequence; with carry_state, the last state seeds the next
    training batch (detached: truncated backpropagation through time)."""

    def __init__(self, *args, carry_state: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.carry_state = carry_state
        self._state = None

    def reset_state(self) -> None:
        self._state = None

    def forward(self, x):
        state = None
        if self.carry_state and self.training and self._state is not None:
            first = self._state[0] if isinstance(self._state, tuple) else self._state
            if first.shape[1] == x.shape[0]:
                state = self._state
        out, new_state = super().forward(x, state)
        if self.carry_state and self.training:
            self._state = tuple(s.detach() for s in new_state) if isinstance(new_state, tuple) else new_state.detach()
        return out


class RNN(_Recurrent, nn.RNN):
    pass


class LSTM(_Recurrent, nn.LSTM):
    pass


class GRU(_Recurrent, nn.GRU):
    pass


class Block(nn.Module):
    """A named chain of layers and blocks (a `block` in the spec); a residual one (`residual { }`) adds its
    input to the chain's value."""

    def __init__(self, layers: dict[str, nn.Module], residual: bool = False):
        super().__init__()
        self.residual = residual
        for name, m in layers.items():
            self.add_module(name, m)

    def forward(self, x, env=None):
        start = x
        for m in self._modules.values():
            if isinstance(m, Block):
                x = m(x, env)
                continue
            source = getattr(m, "mask_from", None)
            x = m(x, mask=padding_mask(env, source)) if source and env is not None else m(x)
        return x + start if self.residual else x

    def extra_repr(self) -> str:
        return "residual" if self.residual else ""


class SpecModule(nn.Module):
    """A model compiled from a spec: inputs in the spec's order, outputs as `return` lists them."""

    def __init__(self, ir, layers: dict[str, nn.Module], blocks: dict[str, Block], params: dict[str, nn.Parameter]):
        super().__init__()
        self.spec_name = ir.name
        self.input_names = list(ir.inputs)
        self.output_count = len(ir.outputs)
        for name, p in params.items():
            self.register_parameter(name, p)
        for name, b in blocks.items():
            self.add_module(name, b)
        for name, m in layers.items():
            self.add_module(name, m)
        # The forward program, compiled once into closures (compiler/ir_compile.py with the torch primitives).
        self._steps = [(name, compile_torch(node)) for name, node in ir.steps]
        self._outputs = [compile_torch(node) for node in ir.outputs]

    def forward(self, *inputs):
        env = dict(zip(self.input_names, inputs))
        env[MODULE] = self
        for name, fn in self._steps:
            env[name] = fn(env)
        outs = tuple(fn(env) for fn in self._outputs)
        return outs[0] if len(outs) == 1 else outs

    def reset_state(self) -> None:
        for m in self.modules():
            if isinstance(m, _Recurrent):
                m.reset_state()

