"""The layer catalog: every layer a spec can name, one entry each, with everything the layer needs.

An entry is a `Layer`: its arguments and doc (the docs table, editor keywords and
completion come from these), its shape rule (per-sample shape in, per-sample
shape out, or a `ShapeError` with a hint), its parameter count (without torch),
and its torch form: the module class by name (`nn.Linear`, or `Last` from
compiler/modules.py) and the constructor's arguments for an input shape. The
builder (compiler/build.py) constructs it; `dslc emit` writes the same
constructor as source (`nn.Linear(784, 10)`), or the entry's `inline` form for
layers a person would write inline (`x[:, -1]`). Nothing here imports torch.
Adding a layer is one `register(...)` and one row in tests/test_layer_catalog.py.
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
    module: str | Callable[[TensorShape, dict], str]     # torch class: "nn.Linear", or a compiler/modules.py class
    kwargs: Callable[[TensorShape, dict], dict] = lambda x, a: {}   # constructor arguments, in torch's order
    args: list[Arg] = field(default_factory=list)
    positional: int = 0            # how many leading constructor arguments `dslc emit` writes positionally
    torch_defaults: dict = field(default_factory=dict)   # keyword arguments `dslc emit` leaves out at these values
    sequence_input: bool = False   # takes [T, F] and is not applied per step by `each`
    last_axis: bool = False        # acts on the last axis only, so `each` needs no wrapper
    recurrent: bool = False        # returns (outputs, state); may carry its state between batches
    mask_aware: bool = False       # reads a padding mask [B, T] when its input's time axis has padding
    inline: str | Callable | None = None   # how `dslc emit` writes it in forward: a template in `x` and `out`
                                           # (the output dims), or fn(x text, layer, mask text) for layers without
                                           # weights; for layers with weights, how their module is called
    emit_module: str | None = None   # the torch.nn class ejected code constructs when dslc's own module subclasses it
    emit_constructor: Callable | None = None   # fn(input shape, args) -> constructor source, when not derived
    dslc_kwargs: tuple = ()        # constructor arguments of dslc's own module that the torch class lacks
    traced_shapes_freeze: bool = False   # the TorchScript ONNX exporter would freeze its sequence length
    starts_line: bool = False      # `dslc fmt` starts a new line with it (layers with weights, or that reshape)
    params: Callable[[TensorShape, dict], int] = _no_params   # trainable values, counted without torch

    @property
    def value_args(self) -> tuple[str, ...]:
        """Arguments that name other values of the model (`memory=` of cross-attention)."""
        return tuple(a.name for a in self.args if a.kind == "value")

    @property
    def inline_only(self) -> bool:
        """Ejected code writes it inline in forward, with no module of its own (it has no weights)."""
        return self.inline is not None and self.emit_module is None and not str(self.module).startswith("nn.") \
            and not self.recurrent and not callable(self.module)

    def module_name(self, x: TensorShape, args: dict) -> str:
        return self.module(x, args) if callable(self.module) else self.module


LAYERS: dict[str, Layer] = {}


def register(layer: Layer) -> Layer:
    LAYERS[layer.name] = layer
    return layer


def layer_params(l) -> int:
    """Trainable values of a checked layer (a compiler.ir.LayerIR); `each` layers count one step's layer."""
    x = TensorShape(l.input.dtype, l.input.dims[1:]) if l.each else l.input
    return LAYERS[l.layer].params(x, l.args)


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

def _linear_shape(x: TensorShape, a: dict) -> TensorShape:
    need_rank(x, "linear", 1, "a flat feature vector [F]")
    if isinstance(x.dims[0], str):
        raise ShapeError(f"linear needs a fixed number of features, not {x.dims[0]} (any length)",
                         "declare the input with a size, e.g. f32[8]; for a sequence use `last`, `mean_over_time` "
                         "or `each linear(...)`")
    return x.with_dims([a["features"]])


register(Layer(
    "linear", "Fully connected layer: [F] -> [features].",
    args=[Arg("features", "int", check=positive), Arg("bias", "bool", True)],
    shape=_linear_shape,
    module="nn.Linear", positional=2, starts_line=True, torch_defaults={"bias": True}, last_axis=True,
    kwargs=lambda x, a: {"in_features": x.dims[-1], "out_features": a["features"], "bias": a["bias"]},
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


def _conv_kwargs(x: TensorShape, a: dict) -> dict:
    return {"in_channels": x.dims[0], "out_channels": a["channels"], "kernel_size": a["kernel"], "stride": a["stride"],
            "padding": a["padding"], "dilation": a["dilation"], "groups": a["groups"], "bias": a["bias"]}


_CONV_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True}


def _conv_params(n):
    def count(x: TensorShape, a: dict) -> int:
        kernel = 1
        for k in _per_axis(a["kernel"], n):
            kernel *= k
        return a["channels"] * (x.dims[0] // a["groups"] * kernel + a["bias"])
    return count


register(Layer("conv1d", "1-D convolution: [C, L] -> [channels, L'].", _conv_shape(1), "nn.Conv1d", _conv_kwargs,
               _CONV_ARGS, positional=2, torch_defaults=_CONV_DEFAULTS, params=_conv_params(1), starts_line=True))
register(Layer("conv2d", "2-D convolution: [C, H, W] -> [channels, H', W'].", _conv_shape(2), "nn.Conv2d", _conv_kwargs,
               _CONV_ARGS, positional=2, torch_defaults=_CONV_DEFAULTS, params=_conv_params(2), starts_line=True))

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

    register(Layer(name, f"{kind.capitalize()} pooling over {n} spatial {'axis' if n == 1 else 'axes'}.", rule,
                   f"nn.{kind.capitalize()}Pool{n}d",
                   lambda x, a: {"kernel_size": a["kernel"], "stride": a["stride"], "padding": a["padding"]},
                   _POOL_ARGS, positional=1, torch_defaults={"stride": None, "padding": 0}))


for _kind in ("max", "avg"):
    for _n in (1, 2):
        _pool(_kind, _n)


def _adaptive(n: int, kind: str = "avg"):
    name = f"adaptive_{kind}pool{n}d"
    cls = f"Adaptive{kind.capitalize()}Pool{n}d"

    def rule(x, a):
        need_rank(x, name, n + 1, "[channels, length]" if n == 1 else "[channels, height, width]")
        _check_axes(a["size"], n, name, "size")
        return x.with_dims((x.dims[0],) + _per_axis(a["size"], n))

    what = "Average" if kind == "avg" else "Max"
    register(Layer(name, f"{what} pooling to a fixed output size over {n} spatial {'axis' if n == 1 else 'axes'}.",
                   rule, f"nn.{cls}", lambda x, a: {"output_size": a["size"]},
                   [Arg("size", "size", check=positive)], positional=1))


_adaptive(1)
_adaptive(2)
_adaptive(1, "max")
_adaptive(2, "max")


# ---------------------------------------------------------------- normalisation and regularisation


def _batchnorm_shape(x, a):
    need_float(x, "batchnorm")
    if x.rank not in (1, 2, 3):
        raise ShapeError(f"batchnorm works on [F], [C, L] or [C, H, W], not {x.dims_text}")
    if isinstance(x.dims[0], str):
        raise ShapeError(f"batchnorm needs a fixed number of features, not {x.dims[0]}")
    return x


register(Layer("batchnorm", "Batch normalisation over the channel (or feature) axis; 1-D or 2-D from the shape.",
               _batchnorm_shape, lambda x, a: "nn.BatchNorm2d" if x.rank == 3 else "nn.BatchNorm1d",
               lambda x, a: {"num_features": x.dims[0], "eps": a["eps"], "momentum": a["momentum"]},
               [Arg("momentum", "float", 0.1, check=probability), Arg("eps", "float", 1e-5, check=positive)],
               positional=1, torch_defaults={"eps": 1e-5, "momentum": 0.1}, params=lambda x, a: 2 * x.dims[0]))


def _layernorm_shape(x, a):
    need_float(x, "layernorm")
    if x.rank < 1 or isinstance(x.dims[-1], str):
        raise ShapeError(f"layernorm normalises the last axis, which must have a fixed size; got {x.dims_text}")
    return x


register(Layer("layernorm", "Layer normalisation over the last axis.", _layernorm_shape, "nn.LayerNorm",
               lambda x, a: {"normalized_shape": x.dims[-1], "eps": a["eps"]}, [Arg("eps", "float", 1e-5, check=positive)],
               positional=1, torch_defaults={"eps": 1e-5}, last_axis=True, params=lambda x, a: 2 * x.dims[-1]))


def _any_float(name):
    def rule(x, a):
        need_float(x, name)
        return x
    return rule


register(Layer("dropout", "Zeroes each value with probability p while training.", _any_float("dropout"),
               "nn.Dropout", lambda x, a: {"p": a["p"]}, [Arg("p", "float", 0.5, check=probability)], positional=1,
               last_axis=True))
register(Layer("identity", "Passes its input through.", lambda x, a: x, "nn.Identity", last_axis=True))


# ---------------------------------------------------------------- activations

def _activation(name: str, doc: str, module: str, kwargs=lambda x, a: {}, args=(), defaults=None):
    register(Layer(name, doc, _any_float(name), module, kwargs, list(args), torch_defaults=defaults or {},
                   last_axis=True))


_activation("relu", "max(0, x).", "nn.ReLU")
_activation("leaky_relu", "x if x > 0 else slope * x.", "nn.LeakyReLU", lambda x, a: {"negative_slope": a["slope"]},
            [Arg("slope", "float", 0.01)], {"negative_slope": 0.01})
_activation("elu", "Exponential linear unit.", "nn.ELU", lambda x, a: {"alpha": a["alpha"]}, [Arg("alpha", "float", 1.0)],
            {"alpha": 1.0})
_activation("gelu", "Gaussian error linear unit.", "nn.GELU")
_activation("tanh", "Hyperbolic tangent.", "nn.Tanh")
_activation("sigmoid", "Logistic sigmoid.", "nn.Sigmoid")


def _softmax(name, cls):
    def rule(x, a):
        need_float(x, name)
        if not -x.rank <= a["dim"] < max(x.rank, 1):
            raise ShapeError(f"{name}: dim {a['dim']} does not exist in {x.dims_text}")
        return x

    register(Layer(name, f"{cls} over one per-sample axis (default: the last).", rule, f"nn.{cls}",
                   lambda x, a: {"dim": a["dim"] if a["dim"] < 0 else a["dim"] + 1}, [Arg("dim", "int", -1)]))


_softmax("softmax", "Softmax")
_softmax("log_softmax", "LogSoftmax")


# ---------------------------------------------------------------- shape changes


def _flatten_shape(x, a):
    return x.with_dims([_flat_size(x, "flatten")])


register(Layer("flatten", "All per-sample axes into one: [C, H, W] -> [C*H*W].", _flatten_shape, "nn.Flatten",
               starts_line=True))


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
               "Reshape", lambda x, a: {"dims": a["dims"]}, [Arg("dims", "int", variadic=True)],
               inline="{x}.reshape({x}.shape[0], {out})", starts_line=True))


# ---------------------------------------------------------------- embeddings and recurrent layers


def _embedding_shape(x, a):
    if not x.is_int:
        raise ShapeError(f"embedding takes integer token ids but gets {x}", "declare the input as i64[T]")
    if a["padding"] is not None and not 0 <= a["padding"] < a["vocab"]:
        raise ShapeError(f"embedding: padding index {a['padding']} is outside the vocabulary of {a['vocab']}")
    return TensorShape("f32", x.dims + (a["dim"],))


register(Layer("embedding", "Token ids -> vectors: i64[T] -> [T, dim].", _embedding_shape, "nn.Embedding",
               lambda x, a: {"num_embeddings": a["vocab"], "embedding_dim": a["dim"], "padding_idx": a["padding"]},
               [Arg("vocab", "int", check=positive), Arg("dim", "int", check=positive),
                Arg("padding", "int", None)], positional=2, torch_defaults={"padding_idx": None}, starts_line=True,
               params=lambda x, a: a["vocab"] * a["dim"]))

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

    def kwargs(x, a):
        kw = {"input_size": x.dims[1], "hidden_size": a["hidden"], "num_layers": a["layers"]}
        if "nonlinearity" in a:
            kw["nonlinearity"] = a["nonlinearity"]
        return {**kw, "batch_first": True, "bidirectional": a["bidirectional"], "dropout": a["dropout"],
                "carry_state": a["carry_state"]}

    def count(x, a):
        gates, hidden, directions = _GATES[cls], a["hidden"], 2 if a["bidirectional"] else 1
        total = 0
        for layer in range(a["layers"]):
            features = x.dims[1] if layer == 0 else hidden * directions
            total += directions * gates * hidden * (features + hidden + 2)
        return total

    register(Layer(name, f"{cls} over a sequence: [T, F] -> [T, hidden] (x2 if bidirectional).", rule, cls, kwargs,
                   _RNN_ARGS + list(extra), positional=2, recurrent=True, sequence_input=True, params=count, starts_line=True,
                   torch_defaults={"num_layers": 1, "nonlinearity": "tanh", "bidirectional": False, "dropout": 0.0}))


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


def _masked_inline(plain: str, masked: str):
    """The inline form of a time reduction, with and without a padding mask (`{m}`: the mask's name)."""
    def write(x: str, layer, mask: str | None) -> str:
        return masked.format(x=x, m=mask) if mask else plain.format(x=x)
    return write


register(Layer("last", "The last time step (the last real one under a padding mask): [T, F] -> [F].",
               _over_time("last"), "Last", sequence_input=True, mask_aware=True, starts_line=True,
               inline=_masked_inline("{x}[:, -1]", "{x}[torch.arange({x}.shape[0], device={x}.device), "
                                     "(torch.arange({x}.shape[1], device={x}.device) * real_steps({m})).argmax(dim=1)]")))
register(Layer("mean_over_time", "The mean over time steps (over the real ones under a padding mask): [T, F] -> [F].",
               _over_time("mean_over_time"), "MeanOverTime", sequence_input=True, mask_aware=True, starts_line=True,
               inline=_masked_inline("{x}.mean(dim=1)", "({x} * real_steps({m}).unsqueeze(-1)).sum(dim=1) / "
                                     "real_steps({m}).sum(dim=1, keepdim=True)")))
register(Layer("sum_over_time", "The sum over time steps (over the real ones under a padding mask): [T, F] -> [F].",
               _over_time("sum_over_time"), "SumOverTime", sequence_input=True, mask_aware=True, starts_line=True,
               inline=_masked_inline("{x}.sum(dim=1)", "({x} * {m}.unsqueeze(-1)).sum(dim=1)")))


# ---------------------------------------------------------------- reordering axes


def _permutation(name: str, order_of):
    def rule(x, a):
        order = order_of(x, a)
        return x.with_dims([x.dims[i] for i in order])
    return rule


def _axes(x: TensorShape, values, layer: str) -> list[int]:
    out = []
    for v in values:
        if x.rank == 0 or not -x.rank <= v < x.rank:
            raise ShapeError(f"{layer}: axis {v} does not exist in {x.dims_text}",
                             "per-sample axes are counted from 0 (the batch axis is not counted)")
        out.append(v % x.rank)
    return out


def _swap(x, a):
    first, second = _axes(x, [a["first"], a["second"]], "transpose")
    order = list(range(x.rank))
    order[first], order[second] = order[second], order[first]
    return order


def _reorder(x, a):
    order = _axes(x, a["dims"], "permute")
    if sorted(order) != list(range(x.rank)):
        raise ShapeError(f"permute needs each of the {x.rank} per-sample axes of {x.dims_text} once, in the new order",
                         f"e.g. permute({', '.join(str(i) for i in reversed(range(x.rank)))})")
    return order


register(Layer("transpose", "Swaps two per-sample axes: transpose(0, 1) on [C, T] gives [T, C].",
               _permutation("transpose", _swap), "Permute", lambda x, a: {"order": _swap(x, a)},
               [Arg("first", "int"), Arg("second", "int")],
               inline=lambda x, l, mask: f"{x}.transpose({l.args['first'] % l.input.rank + 1}, "
                                         f"{l.args['second'] % l.input.rank + 1})"))
register(Layer("permute", "Reorders the per-sample axes: permute(2, 0, 1) on [H, W, C] gives [C, H, W].",
               _permutation("permute", _reorder), "Permute", lambda x, a: {"order": _reorder(x, a)},
               [Arg("dims", "int", variadic=True)],
               inline=lambda x, l, mask: f"{x}.permute(0, {', '.join(str(i + 1) for i in _reorder(l.input, l.args))})"))


# ---------------------------------------------------------------- positions and attention


def _sequence_of_vectors(x: TensorShape, layer: str) -> None:
    need_rank(x, layer, 2, "a sequence of vectors [T, D]",
              "embed token ids first (embedding(...)), or reshape patches into [T, D]")
    if isinstance(x.dims[1], str):
        raise ShapeError(f"{layer} needs a fixed width D, not {x.dims[1]}")


def _positions_shape(x, a):
    _sequence_of_vectors(x, "position_embedding")
    if isinstance(x.dims[0], int) and x.dims[0] > a["max_len"]:
        raise ShapeError(f"position_embedding has {a['max_len']} positions but the sequence has {x.dims[0]} steps",
                         f"use position_embedding({x.dims[0]}) or more")
    return x


register(Layer("position_embedding", "A learned vector per position added to a sequence: [T, D] -> [T, D], "
               "T up to max_len.", _positions_shape, "PositionEmbedding",
               lambda x, a: {"max_len": a["max_len"], "dim": x.dims[1]}, [Arg("max_len", "int", check=positive)],
               emit_module="nn.Embedding", positional=2, params=lambda x, a: a["max_len"] * x.dims[1],
               sequence_input=True,
               inline=lambda x, l, mask, module=None: f"{x} + {module}.weight[:{x}.shape[1]]"))


def _sinusoidal_shape(x, a):
    _sequence_of_vectors(x, "sinusoidal_position")
    if x.dims[1] % 2:
        raise ShapeError(f"sinusoidal_position needs an even width, not {x.dims[1]}")
    return x


register(Layer("sinusoidal_position", "The fixed sine/cosine position code added to a sequence: [T, D] -> [T, D].",
               _sinusoidal_shape, "SinusoidalPosition", lambda x, a: {"dim": x.dims[1]}, sequence_input=True,
               inline=lambda x, l, mask: f"{x} + sinusoidal_code({x}.shape[1], {l.input.dims[1]}).to({x}.dtype)"))


def _heads(x: TensorShape, a: dict, layer: str) -> None:
    _sequence_of_vectors(x, layer)
    if x.dims[1] % a["heads"]:
        divisors = [h for h in range(1, x.dims[1] + 1) if x.dims[1] % h == 0]
        raise ShapeError(f"{layer}: {a['heads']} heads do not divide the width {x.dims[1]}",
                         f"use a number of heads that divides {x.dims[1]}: {', '.join(map(str, divisors[-6:]))}")


def _attention_shape(x, a):
    _heads(x, a, "multihead_attention")
    memory = a.get("memory")
    if memory is not None:
        if memory.rank != 2 or memory.dims[1] != x.dims[1]:
            raise ShapeError(f"multihead_attention: the memory {memory.dims_text} must be a sequence [S, {x.dims[1]}] "
                             f"of the query's width", "bring the memory to the same width, e.g. with each linear(...)")
        if a["causal"]:
            raise ShapeError("multihead_attention: causal applies to self-attention, not to a memory")
    return x


def _attention_call(x: str, l, mask: str | None, module: str | None = None, memory: str | None = None,
                    memory_mask: str | None = None) -> str:
    """How ejected code calls torch's attention: self-attention (x, x, x) or cross-attention (x, memory, memory)."""
    source, padding = (memory, memory_mask) if memory is not None else (x, mask)
    return (f"{module}({x}, {source}, {source}, need_weights=False"
            + (f", attn_mask=causal_mask({x}.shape[1], {x}.device)" if l.args["causal"] else "")
            + (f", key_padding_mask=~real_steps({padding})" if padding else "") + ")[0]")


def _attention_params(x, a):
    d = x.dims[1]
    return 4 * d * d + (4 * d if a["bias"] else 0)


register(Layer("multihead_attention", "Multi-head self-attention over a sequence: [T, D] -> [T, D]; causal: each "
               "step sees only earlier ones; padded steps are not attended to.", _attention_shape,
               "MultiheadAttention",
               lambda x, a: {"embed_dim": x.dims[1], "num_heads": a["heads"], "dropout": a["dropout"],
                             "bias": a["bias"], "batch_first": True, "causal": a["causal"]},
               [Arg("heads", "int", check=positive), Arg("dropout", "float", 0.0, check=probability),
                Arg("bias", "bool", True), Arg("causal", "bool", False), Arg("memory", "value", None)],
               emit_module="nn.MultiheadAttention", positional=2, dslc_kwargs=("causal",), traced_shapes_freeze=True,
               torch_defaults={"dropout": 0.0, "bias": True}, sequence_input=True, mask_aware=True,
               starts_line=True, params=_attention_params,
               inline=_attention_call))


def _encoder_shape(x, a):
    _heads(x, a, "transformer_encoder")
    return x


def _encoder_params(x, a):
    d, ff = x.dims[1], a["ff"]
    return a["layers"] * (4 * d * d + 2 * d * ff + ff + 9 * d)


def _encoder_constructor(x, a) -> str:
    keywords = [f"dim_feedforward={a['ff']}", f"dropout={a['dropout']!r}"]
    if a["activation"] != "relu":
        keywords.append(f'activation="{a["activation"]}"')
    keywords.append("batch_first=True")
    if a["norm_first"]:
        keywords.append("norm_first=True")
    layer = f"nn.TransformerEncoderLayer({x.dims[1]}, {a['heads']}, {', '.join(keywords)})"
    return f"nn.TransformerEncoder({layer}, {a['layers']}, enable_nested_tensor=False)"


register(Layer("transformer_encoder", "Transformer encoder layers (torch's, batch first): [T, D] -> [T, D]; "
               "causal=true for a decoder-only (GPT-style) model; padded steps are not attended to.",
               _encoder_shape, "TransformerEncoder",
               lambda x, a: {"dim": x.dims[1], "layers": a["layers"], "heads": a["heads"], "ff": a["ff"],
                             "dropout": a["dropout"], "activation": a["activation"], "norm_first": a["norm_first"],
                             "causal": a["causal"]},
               [Arg("layers", "int", check=positive), Arg("heads", "int", check=positive),
                Arg("ff", "int", check=positive), Arg("dropout", "float", 0.1, check=probability),
                Arg("activation", "str", "relu", choices=("relu", "gelu")), Arg("norm_first", "bool", False),
                Arg("causal", "bool", False)],
               emit_module="nn.TransformerEncoder", emit_constructor=_encoder_constructor, sequence_input=True,
               traced_shapes_freeze=True,
               mask_aware=True, starts_line=True,
               params=_encoder_params,
               inline=lambda x, l, mask, module=None: (
                   f"{module}({x}"
                   + (f", mask=causal_mask({x}.shape[1], {x}.device)" if l.args["causal"] else "")
                   + (f", src_key_padding_mask=~real_steps({mask})" if mask else "") + ")")))


LINE_STARTERS = frozenset(name for name, layer in LAYERS.items() if layer.starts_line)
