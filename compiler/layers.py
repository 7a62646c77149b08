"""The layer catalog: every layer a spec can name, one entry each.

An entry is a `Layer`: its arguments, its shape rule (per-sample shape in,
per-sample shape out, or a `ShapeError` with a hint) and its builder (the
`nn.Module` it becomes). Shape rules run at check time without torch; builders
import torch only when a model is built. Adding a layer is one `register(...)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .shapes import ShapeError, TensorShape
from .values import Arg, non_negative, positive, probability


def _no_params(x: TensorShape, a: dict) -> int:
    return 0


@dataclass(frozen=True)
class Layer:
    name: str
    doc: str
    shape: Callable[[TensorShape, dict], TensorShape]
    build: Callable[[TensorShape, dict], object]
    args: list[Arg] = field(default_factory=list)
    sequence_input: bool = False   # takes [T, F] and is not applied per step by `each`
    params: Callable[[TensorShape, dict], int] = _no_params   # trainable values, counted without torch


LAYERS: dict[str, Layer] = {}


def register(layer: Layer) -> Layer:
    LAYERS[layer.name] = layer
    return layer


def layer_params(l) -> int:
    """Trainable values of a checked layer (a compiler.ir.LayerIR); `each` layers count one step's layer."""
    x = TensorShape(l.input.dtype, l.input.dims[1:]) if l.each else l.input
    return LAYERS[l.layer].params(x, l.args)


def _nn():
    from torch import nn
    return nn


def _modules():
    from . import modules
    return modules


# ---------------------------------------------------------------- shape helpers


def need_float(x: TensorShape, layer: str) -> None:
    if not x.is_float:
        raise ShapeError(f"{layer} needs floating-point values but gets {x}",
                         "integer token ids go through `embedding` first" if x.is_int else None)


def need_rank(x: TensorShape, layer: str, rank: int, what: str, hint: str | None = None) -> None:
    need_float(x, layer)
    if x.rank != rank:
        raise ShapeError(f"{layer} expects {what} but gets {x.dims_text}", hint or _rank_hint(x, rank))


def _rank_hint(x: TensorShape, rank: int) -> str | None:
    if rank == 1 and x.rank == 3:
        return "add `flatten` before it"
    if rank == 1 and x.rank == 2:
        return "for a sequence, use `last` or `mean_over_time` first, or `each` to apply it at every step; else `flatten`"
    if rank == 2 and x.rank == 1:
        return "a sequence has a time axis and a feature axis, e.g. f32[T, 1]; declare the input that way or `reshape`"
    if rank == 3 and x.rank == 1:
        return "an image is [channels, height, width]; use `reshape(1, 28, 28)` to restore one"
    if rank == 2 and x.rank == 3:
        return "an image is not a sequence; `reshape` it to [T, F] first"
    return None


def _conv_dim(d, kernel, stride, padding, dilation, layer):
    if isinstance(d, str):      # a symbolic length: the same formula, written out
        shrink = dilation * (kernel - 1) - 2 * padding + (stride != 1)
        base = d if shrink == 0 else f"{d}{'-' if shrink > 0 else '+'}{abs(shrink)}"
        return base if stride == 1 else f"({base})/{stride}+1"
    out = (d + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        raise ShapeError(f"{layer}: a size of {d} is too small for kernel {kernel} "
                         f"(stride {stride}, padding {padding}); the output would be empty",
                         "use a smaller kernel, add padding, or pool less before this layer")
    return out


def _per_axis(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _check_axes(v, n, layer, arg):
    if isinstance(v, (tuple, list)) and len(v) != n:
        raise ShapeError(f"{layer}: '{arg}' needs {n} values, one per spatial axis, but has {len(v)}")


def _spatial(x: TensorShape, a: dict, n: int, layer: str, channels: int | None) -> TensorShape:
    for arg in ("kernel", "stride", "padding", "dilation"):
        if a.get(arg) is not None:
            _check_axes(a[arg], n, layer, arg)
    k = _per_axis(a["kernel"], n)
    s = _per_axis(a["stride"] if a.get("stride") is not None else a["kernel"], n)
    p = _per_axis(a.get("padding", 0), n)
    d = _per_axis(a.get("dilation", 1), n)
    dims = tuple(_conv_dim(x.dims[1 + i], k[i], s[i], p[i], d[i], layer) for i in range(n))
    return x.with_dims((channels if channels is not None else x.dims[0],) + dims)


def _flat_size(x: TensorShape, layer: str) -> int:
    n = x.numel()
    if n is None:
        raise ShapeError(f"{layer} needs fixed sizes but gets {x.dims_text}",
                         "a sequence of any length cannot be flattened; use `last` or `mean_over_time`")
    return n


# ---------------------------------------------------------------- dense and convolution

register(Layer(
    "linear", "Fully connected layer: [F] -> [features].",
    args=[Arg("features", "int", check=positive), Arg("bias", "bool", True)],
    shape=lambda x, a: (need_rank(x, "linear", 1, "a flat feature vector [F]"), x.with_dims([a["features"]]))[1],
    build=lambda x, a: _nn().Linear(x.dims[0], a["features"], bias=a["bias"]),
    params=lambda x, a: a["features"] * (x.dims[0] + a["bias"]),
))

_CONV_ARGS = [Arg("channels", "int", check=positive), Arg("kernel", "size", check=positive),
              Arg("stride", "size", 1, check=positive), Arg("padding", "size", 0, check=non_negative),
              Arg("dilation", "size", 1, check=positive), Arg("groups", "int", 1, check=positive),
              Arg("bias", "bool", True)]


def _conv_shape(n):
    def rule(x: TensorShape, a: dict) -> TensorShape:
        name = f"conv{n}d"
        need_rank(x, name, n + 1, "[channels, length]" if n == 1 else "[channels, height, width]")
        if isinstance(x.dims[0], str):
            raise ShapeError(f"{name} needs a fixed number of channels, not {x.dims[0]}")
        if x.dims[0] % a["groups"] or a["channels"] % a["groups"]:
            raise ShapeError(f"{name}: groups={a['groups']} must divide both {x.dims[0]} input and "
                             f"{a['channels']} output channels")
        return _spatial(x, a, n, name, a["channels"])
    return rule


def _conv_build(n):
    def build(x: TensorShape, a: dict):
        cls = _nn().Conv1d if n == 1 else _nn().Conv2d
        return cls(x.dims[0], a["channels"], a["kernel"], stride=a["stride"], padding=a["padding"],
                   dilation=a["dilation"], groups=a["groups"], bias=a["bias"])
    return build


def _conv_params(n):
    def count(x: TensorShape, a: dict) -> int:
        kernel = 1
        for k in _per_axis(a["kernel"], n):
            kernel *= k
        return a["channels"] * (x.dims[0] // a["groups"] * kernel + a["bias"])
    return count


register(Layer("conv1d", "1-D convolution: [C, L] -> [channels, L'].", _conv_shape(1), _conv_build(1), _CONV_ARGS,
               params=_conv_params(1)))
register(Layer("conv2d", "2-D convolution: [C, H, W] -> [channels, H', W'].", _conv_shape(2), _conv_build(2), _CONV_ARGS,
               params=_conv_params(2)))

_POOL_ARGS = [Arg("kernel", "size", check=positive), Arg("stride", "size", None, check=positive),
              Arg("padding", "size", 0, check=non_negative)]


def _pool(kind: str, n: int):
    name = f"{kind}pool{n}d"

    def rule(x, a):
        need_rank(x, name, n + 1, "[channels, length]" if n == 1 else "[channels, height, width]")
        k = _per_axis(a["kernel"], n)
        if any(2 * p > kk for p, kk in zip(_per_axis(a["padding"], n), k)):
            raise ShapeError(f"{name}: padding must be at most half the kernel")
        return _spatial(x, a, n, name, None)

    def build(x, a):
        cls = getattr(_nn(), f"{kind.capitalize()}Pool{n}d")
        return cls(a["kernel"], stride=a["stride"], padding=a["padding"])

    register(Layer(name, f"{kind.capitalize()} pooling over {n} spatial {'axis' if n == 1 else 'axes'}.", rule, build,
                   _POOL_ARGS))


for _kind in ("max", "avg"):
    for _n in (1, 2):
        _pool(_kind, _n)


def _adaptive(n: int):
    name = f"adaptive_avgpool{n}d"

    def rule(x, a):
        need_rank(x, name, n + 1, "[channels, length]" if n == 1 else "[channels, height, width]")
        _check_axes(a["size"], n, name, "size")
        return x.with_dims((x.dims[0],) + _per_axis(a["size"], n))

    def build(x, a):
        return getattr(_nn(), f"AdaptiveAvgPool{n}d")(a["size"])

    register(Layer(name, f"Average pooling to a fixed output size over {n} spatial {'axis' if n == 1 else 'axes'}.",
                   rule, build,
                   [Arg("size", "size", check=positive)]))


_adaptive(1)
_adaptive(2)


# ---------------------------------------------------------------- normalisation and regularisation


def _batchnorm_shape(x, a):
    need_float(x, "batchnorm")
    if x.rank not in (1, 2, 3):
        raise ShapeError(f"batchnorm works on [F], [C, L] or [C, H, W], not {x.dims_text}")
    if isinstance(x.dims[0], str):
        raise ShapeError(f"batchnorm needs a fixed number of features, not {x.dims[0]}")
    return x


def _batchnorm_build(x, a):
    cls = _nn().BatchNorm2d if x.rank == 3 else _nn().BatchNorm1d
    return cls(x.dims[0], eps=a["eps"], momentum=a["momentum"])


register(Layer("batchnorm", "Batch normalisation over the channel (or feature) axis; 1-D or 2-D from the shape.",
               _batchnorm_shape, _batchnorm_build,
               [Arg("momentum", "float", 0.1, check=probability), Arg("eps", "float", 1e-5, check=positive)],
               params=lambda x, a: 2 * x.dims[0]))


def _layernorm_shape(x, a):
    need_float(x, "layernorm")
    if x.rank < 1 or isinstance(x.dims[-1], str):
        raise ShapeError(f"layernorm normalises the last axis, which must have a fixed size; got {x.dims_text}")
    return x


register(Layer("layernorm", "Layer normalisation over the last axis.", _layernorm_shape,
               lambda x, a: _nn().LayerNorm(x.dims[-1], eps=a["eps"]), [Arg("eps", "float", 1e-5, check=positive)],
               params=lambda x, a: 2 * x.dims[-1]))


def _any_float(name):
    def rule(x, a):
        need_float(x, name)
        return x
    return rule


register(Layer("dropout", "Zeroes each value with probability p while training.", _any_float("dropout"),
               lambda x, a: _nn().Dropout(a["p"]), [Arg("p", "float", 0.5, check=probability)]))
register(Layer("identity", "Passes its input through.", lambda x, a: x, lambda x, a: _nn().Identity()))


# ---------------------------------------------------------------- activations

def _activation(name: str, doc: str, build, args=()):
    register(Layer(name, doc, _any_float(name), build, list(args)))


_activation("relu", "max(0, x).", lambda x, a: _nn().ReLU())
_activation("leaky_relu", "x if x > 0 else slope * x.", lambda x, a: _nn().LeakyReLU(a["slope"]),
            [Arg("slope", "float", 0.01)])
_activation("elu", "Exponential linear unit.", lambda x, a: _nn().ELU(a["alpha"]), [Arg("alpha", "float", 1.0)])
_activation("gelu", "Gaussian error linear unit.", lambda x, a: _nn().GELU())
_activation("tanh", "Hyperbolic tangent.", lambda x, a: _nn().Tanh())
_activation("sigmoid", "Logistic sigmoid.", lambda x, a: _nn().Sigmoid())


def _softmax(name, cls):
    def rule(x, a):
        need_float(x, name)
        if not -x.rank <= a["dim"] < max(x.rank, 1):
            raise ShapeError(f"{name}: dim {a['dim']} does not exist in {x.dims_text}")
        return x

    def build(x, a):
        return getattr(_nn(), cls)(dim=a["dim"] if a["dim"] < 0 else a["dim"] + 1)

    register(Layer(name, f"{cls} over one per-sample axis (default: the last).", rule, build, [Arg("dim", "int", -1)]))


_softmax("softmax", "Softmax")
_softmax("log_softmax", "LogSoftmax")


# ---------------------------------------------------------------- shape changes


def _flatten_shape(x, a):
    return x.with_dims([_flat_size(x, "flatten")])


register(Layer("flatten", "All per-sample axes into one: [C, H, W] -> [C*H*W].", _flatten_shape,
               lambda x, a: _nn().Flatten()))


def _reshape_shape(x, a):
    dims = a["dims"]
    if not dims:
        raise ShapeError("reshape needs the new dims, e.g. reshape(1, 28, 28)")
    if any(d == 0 or d < -1 for d in dims) or dims.count(-1) > 1:
        raise ShapeError("reshape dims must be positive, with at most one -1 for 'the rest'")
    n = _flat_size(x, "reshape")
    known = 1
    for d in dims:
        if d != -1:
            known *= d
    if -1 in dims:
        if n % known:
            raise ShapeError(f"reshape: {x.dims_text} ({n} values) cannot be split into {dims}")
        dims = [n // known if d == -1 else d for d in dims]
    elif known != n:
        raise ShapeError(f"reshape: {x.dims_text} holds {n} values but {list(dims)} holds {known}",
                         "the product of the new dims must equal the old one")
    return x.with_dims(dims)


register(Layer("reshape", "New per-sample dims with the same number of values (one may be -1).", _reshape_shape,
               lambda x, a: _modules().Reshape(a["dims"]), [Arg("dims", "int", variadic=True)]))


# ---------------------------------------------------------------- embeddings and recurrent layers


def _embedding_shape(x, a):
    if not x.is_int:
        raise ShapeError(f"embedding takes integer token ids but gets {x}", "declare the input as i64[T]")
    if a["padding"] is not None and not 0 <= a["padding"] < a["vocab"]:
        raise ShapeError(f"embedding: padding index {a['padding']} is outside the vocabulary of {a['vocab']}")
    return TensorShape("f32", x.dims + (a["dim"],))


register(Layer("embedding", "Token ids -> vectors: i64[T] -> [T, dim].", _embedding_shape,
               lambda x, a: _nn().Embedding(a["vocab"], a["dim"], padding_idx=a["padding"]),
               [Arg("vocab", "int", check=positive), Arg("dim", "int", check=positive),
                Arg("padding", "int", None)], params=lambda x, a: a["vocab"] * a["dim"]))

_RNN_ARGS = [Arg("hidden", "int", check=positive), Arg("layers", "int", 1, check=positive),
             Arg("bidirectional", "bool", False), Arg("dropout", "float", 0.0, check=probability),
             Arg("carry_state", "bool", False)]


_GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}


def _recurrent(name: str, cls: str, extra=()):
    def rule(x, a):
        need_rank(x, name, 2, "a sequence [T, F]")
        if isinstance(x.dims[1], str):
            raise ShapeError(f"{name} needs a fixed number of features per step, not {x.dims[1]}")
        if a["dropout"] and a["layers"] < 2:
            raise ShapeError(f"{name}: dropout={a['dropout']} acts between stacked layers and needs layers >= 2",
                             "add layers=2, or put a `dropout` stage after the recurrent layer")
        return x.with_dims((x.dims[0], a["hidden"] * (2 if a["bidirectional"] else 1)))

    def build(x, a):
        kw = {"nonlinearity": a["nonlinearity"]} if "nonlinearity" in a else {}
        return getattr(_modules(), cls)(x.dims[1], a["hidden"], num_layers=a["layers"], batch_first=True,
                                        bidirectional=a["bidirectional"], dropout=a["dropout"],
                                        carry_state=a["carry_state"], **kw)

    def count(x, a):
        gates, hidden, directions = _GATES[cls], a["hidden"], 2 if a["bidirectional"] else 1
        total = 0
        for layer in range(a["layers"]):
            features = x.dims[1] if layer == 0 else hidden * directions
            total += directions * gates * hidden * (features + hidden + 2)
        return total

    register(Layer(name, f"{cls} over a sequence: [T, F] -> [T, hidden] (x2 if bidirectional).", rule, build,
                   _RNN_ARGS + list(extra), sequence_input=True, params=count))


_recurrent("rnn", "RNN", [Arg("nonlinearity", "str", "tanh", choices=("tanh", "relu"))])
_recurrent("lstm", "LSTM")
_recurrent("gru", "GRU")


def _over_time(name):
    def rule(x, a):
        if x.rank != 2:
            raise ShapeError(f"{name} takes a sequence [T, F] but gets {x.dims_text}",
                             "it follows a recurrent layer such as lstm(64)")
        return x.with_dims([x.dims[1]])
    return rule


register(Layer("last", "The last time step: [T, F] -> [F].", _over_time("last"),
               lambda x, a: _modules().Last(), sequence_input=True))
register(Layer("mean_over_time", "The mean over time steps: [T, F] -> [F].", _over_time("mean_over_time"),
               lambda x, a: _modules().MeanOverTime(), sequence_input=True))
