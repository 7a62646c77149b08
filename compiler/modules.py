"""The torch modules a checked model is built from, beyond torch.nn's own.

`SpecModule` runs a ModelIR's forward program, compiled once by the torch backend of the IR; the small layers here
(recurrent layers that return only their outputs, `last`, `each`, ...) keep
torch's parameter names so state_dicts read like the spec.
"""

from __future__ import annotations

from torch import nn

from .torch_backend import MODULE, compile_torch


class Reshape(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x):
        return x.reshape((x.shape[0],) + self.dims)

    def extra_repr(self) -> str:
        return str(list(self.dims))


class Last(nn.Module):
    def forward(self, x):
        return x[:, -1]


class MeanOverTime(nn.Module):
    def forward(self, x):
        return x.mean(dim=1)


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

    def forward(self, x):
        start = x
        for m in self._modules.values():
            x = m(x)
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

