"""The checked form of a spec: one typed expression IR for everything a spec computes, and the settings.

Every expression a spec writes — a model's bindings and outputs, the loss, the
metrics, the data block's inputs and targets, the columns of `generate` and
`sequence` sources — is checked into the same nodes (`Ref`, `Const`, `Op`,
`Reduce`, `Chain`, `BlockCall`, `LossCall`, `MetricCall`, `Generate`, `Fitted`). Each
node carries its **per-sample** type (`shape`: element type and dims of one
sample) and whether it has a batch axis (`batched`: it depends on the samples).
The semantics are per sample: `[1] - []` is `[1]` for every sample, whatever
the batch size. The batch axis is added by the backends, which line up the
per-sample axes of batched operands from the right (an operand with fewer
per-sample axes gets size-1 axes after its batch axis), never by guessing with
broadcasting. The backends are compiler/ir_compile.py with the torch
primitives (compiler/torch_backend.py: model forward, loss, metrics) and the
numpy primitives (compiler/numpy_backend.py: data columns, prediction-time
preprocessing), and the Python source writer of `dslc emit`.

`check` produces a `CheckedSpec`; nothing here imports torch or numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dslc.dsl import ast
from dslc.dsl.diagnostics import Diagnostic, Source

from .layers import LAYERS
from .shapes import TensorShape

SCALAR = TensorShape("f32", ())


# ---------------------------------------------------------------- expression nodes


@dataclass(frozen=True, kw_only=True)
class Node:
    shape: TensorShape = SCALAR    # per-sample element type and dims
    batched: bool = False           # has a batch axis (depends on the samples)
    mask: tuple | None = None       # (model input, padding id) whose padding marks this value's padded steps
                                    # (padding id None: token ids not yet embedded)

    def children(self) -> tuple["Node", ...]:
        return ()


@dataclass(frozen=True, kw_only=True)
class Ref(Node):
    """A named value. `role` says what it names:

    input (a model input), param (a model param), binding (a model binding), output (the model's output;
    `index` picks one of several), target (a data target), column (a data source's column), row_index
    (`t` of a sequence source).
    """

    name: str
    role: str
    index: int | None = None


@dataclass(frozen=True, kw_only=True)
class Const(Node):
    """A number, or (fitted statistics, compiler/fitting.py) a tuple of numbers: one per element of `shape`."""

    value: float | int | tuple


@dataclass(frozen=True, kw_only=True)
class Op(Node):
    """An operation on per-sample values. Elementwise: add sub mul div pow neg and the function catalog (exp,
    tanh, ...). Along a per-sample `axis` (counted without the batch axis): concat, stack, softmax,
    log_softmax, and the reductions mean, sum, max, min. Also matmul, transpose and permute (`params`: the
    axes), and index (`params`: one item per leading axis, an int or a (start, stop, step) slice)."""

    name: str
    args: tuple[Node, ...]
    axis: int | None = None
    params: tuple = ()

    def children(self):
        return self.args


@dataclass(frozen=True, kw_only=True)
class Reduce(Node):
    """mean or sum over the batch and every per-sample axis: one number (losses only)."""

    name: str
    arg: Node

    def children(self):
        return (self.arg,)


@dataclass(frozen=True, kw_only=True)
class Chain(Node):
    """Top-level model layers (by module name) applied in order to `input`."""

    layers: tuple[str, ...]
    input: Node

    def children(self):
        return (self.input,)


@dataclass(frozen=True, kw_only=True)
class LayerCall(Node):
    """A top-level layer applied to `input` with other model values as arguments (`memory=` of cross-attention)."""

    layer: str
    input: Node
    values: tuple[tuple[str, Node], ...]

    def children(self):
        return (self.input,) + tuple(v for _, v in self.values)


@dataclass(frozen=True, kw_only=True)
class BlockCall(Node):
    block: str
    input: Node

    def children(self):
        return (self.input,)


@dataclass(frozen=True, kw_only=True)
class LossCall(Node):
    """A loss of the loss catalog comparing `output` with `target`, reduced to one number (mean over the batch)."""

    name: str
    args: tuple[tuple[str, Any], ...]
    output: Node
    target: Node

    def children(self):
        return (self.output, self.target)

    @property
    def kwargs(self) -> dict:
        return dict(self.args)


@dataclass(frozen=True, kw_only=True)
class MetricCall(Node):
    """A metric of the metric catalog comparing `output` with `target` (computed as a sum and a count)."""

    name: str
    args: tuple[tuple[str, Any], ...]
    output: Node
    target: Node

    def children(self):
        return (self.output, self.target)

    @property
    def kwargs(self) -> dict:
        return dict(self.args)

    @property
    def key(self) -> str:
        """The metric's name in records: accuracy, top5, mse, mae."""
        return f"top{self.kwargs['k']}" if self.name == "top_k" else self.name


@dataclass(frozen=True, kw_only=True)
class Generate(Node):
    """One value per row of a `generate`/`sequence` source: linspace, normal, uniform or arange."""

    name: str
    args: tuple[tuple[str, Node], ...]

    def children(self):
        return tuple(v for _, v in self.args)


@dataclass(frozen=True, kw_only=True)
class Fitted(Node):
    """A transform whose statistics are fitted on the training split when the data is loaded: standardize
    ((x - mean) / std) or min_max ((x - min) / (max - min)), per element of a number or a vector per sample.

    `of` is None for the transform itself; an inverse (the model's output back in the units of a scaled
    target) names the transform it undoes, whose statistics it uses. Fitting (compiler/fitting.py) replaces
    each Fitted node by plain arithmetic with the statistics as constants, so the backends never see one.
    """

    name: str
    arg: Node
    of: Node | None = None

    def children(self):
        return (self.arg,)


def walk(node: Node):
    """Every node of an expression, parents before children."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children()))


def refs(node: Node, role: str | None = None) -> list[str]:
    """The names an expression reads (of one role, or every role), once each, in order of appearance."""
    out: list[str] = []
    for n in walk(node):
        if isinstance(n, Ref) and (role is None or n.role == role) and n.name not in out:
            out.append(n.name)
    return out


# ---------------------------------------------------------------- serialising (for run directories and ONNX metadata)


def to_json(node: Node) -> dict:
    """A JSON-able dict that `from_json` turns back into the same node."""
    out: dict[str, Any] = {"node": type(node).__name__, "dtype": node.shape.dtype, "dims": list(node.shape.dims),
                           "batched": node.batched}
    for name in node.__dataclass_fields__:
        if name in ("shape", "batched", "mask"):
            continue
        value = getattr(node, name)
        if isinstance(value, Node):
            value = to_json(value)
        elif isinstance(value, tuple) and value and all(isinstance(v, Node) for v in value):
            value = [to_json(v) for v in value]
        elif name == "args" and isinstance(node, Generate):
            value = [[k, to_json(v)] for k, v in value]
        elif isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        out[name] = value
    return out


_NODES = {cls.__name__: cls for cls in (Ref, Const, Op, Reduce, Chain, LayerCall, BlockCall, LossCall, MetricCall,
                                        Generate, Fitted)}


def from_json(data: dict) -> Node:
    cls = _NODES.get(data.get("node"))
    if cls is None:
        raise ValueError(f"not an expression node: {data.get('node')!r}")
    kwargs: dict[str, Any] = {"shape": TensorShape(data["dtype"], tuple(data["dims"])), "batched": bool(data["batched"])}
    for name in cls.__dataclass_fields__:
        if name in ("shape", "batched") or name not in data:
            continue
        value = data[name]
        if isinstance(value, dict) and "node" in value:
            value = from_json(value)
        elif cls is Generate and name == "args":
            value = tuple((k, from_json(v)) for k, v in value)
        elif isinstance(value, list) and value and all(isinstance(v, dict) and "node" in v for v in value):
            value = tuple(from_json(v) for v in value)
        elif isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[name] = value
    return cls(**kwargs)


# ---------------------------------------------------------------- printing (`dslc show --ir`)


_INFIX = {"add": ("+", 1), "sub": ("-", 1), "mul": ("*", 2), "div": ("/", 2), "pow": ("**", 4)}


def type_text(node: Node) -> str:
    """`f32[B, 10]`: the node's type with its batch axis (B) when it has one."""
    dims = (["B"] if node.batched else []) + [str(d) for d in node.shape.dims]
    return f"{node.shape.dtype}[{', '.join(dims)}]"


def expr_text(node: Node, names: dict[Node, str] | None = None) -> str:
    """The expression as one line, nodes already named (bindings, SSA values) by their names."""
    names = names or {}

    def text(n: Node, outer: int = 0) -> str:
        if n in names:
            return names[n]
        if isinstance(n, Ref):
            return f"{n.name}[{n.index}]" if n.index is not None else n.name
        if isinstance(n, Const):
            if isinstance(n.value, tuple):
                return repr(_as_list(n.value))
            return f"({n.value!r})" if n.value < 0 and outer >= 3 else repr(n.value)
        if isinstance(n, Op):
            if n.name in _INFIX:
                symbol, p = _INFIX[n.name]
                left, right = (p + 1, p) if n.name == "pow" else (p, p + 1)
                s = f"{text(n.args[0], left)} {symbol} {text(n.args[1], right)}"
                return f"({s})" if p < outer else s
            if n.name == "neg":
                return f"-{text(n.args[0], 3)}"
            if n.name == "matmul":
                s = f"{text(n.args[0], 2)} @ {text(n.args[1], 3)}"
                return f"({s})" if outer > 2 else s
            if n.name == "index":
                return f"{text(n.args[0], 9)}[{', '.join(_item_text(i) for i in n.params)}]"
            extra = [str(p) for p in n.params] + ([f"axis={n.axis}"] if n.axis is not None else [])
            return f"{n.name}({', '.join([text(a) for a in n.args] + extra)})"
        if isinstance(n, Reduce):
            return f"{n.name}({text(n.arg)})"
        if isinstance(n, Chain):
            s = " -> ".join([text(n.input, 9)] + list(n.layers))
            return f"({s})" if outer else s
        if isinstance(n, BlockCall):
            return f"{n.block}({text(n.input)})"
        if isinstance(n, LayerCall):
            return f"{n.layer}({', '.join([text(n.input)] + [f'{k}={text(v)}' for k, v in n.values])})"
        if isinstance(n, (LossCall, MetricCall)):
            kw = "".join(f", {k}={v}" for k, v in n.args)
            return f"{n.name}({text(n.output)}, {text(n.target)}{kw})"
        if isinstance(n, Generate):
            return f"{n.name}({', '.join(f'{k}={text(v)}' for k, v in n.args)})"
        if isinstance(n, Fitted):
            return f"{n.name}({text(n.arg)})" if n.of is None else f"undo_{n.name}({text(n.arg)})"
        raise TypeError(f"unknown node {n!r}")

    return text(node)


def _item_text(item) -> str:
    if isinstance(item, int):
        return str(item)
    start, stop, step = item
    text = f"{'' if start is None else start}:{'' if stop is None else stop}"
    return text + (f":{step}" if step is not None else "")


def _as_list(value):
    return [_as_list(v) for v in value] if isinstance(value, tuple) else value


def program_text(lines: list[tuple[str, Node]]) -> list[str]:
    """`name = expression  : type` lines, each non-trivial shared sub-expression named once (%1, %2, ...)."""
    counts: dict[Node, int] = {}
    for _, node in lines:
        for n in walk(node):
            counts[n] = counts.get(n, 0) + 1
    names: dict[Node, str] = {}
    out: list[str] = []

    def name_shared(node: Node) -> None:
        for child in node.children():
            name_shared(child)
        if counts.get(node, 0) > 1 and not isinstance(node, (Ref, Const, Generate)) and node not in names:
            names[node] = f"%{len(names) + 1}"
            out.append(f"{names[node]} = {expr_text(node, {k: v for k, v in names.items() if k != node})}  : {type_text(node)}")

    for label, node in lines:
        name_shared(node)
        out.append(f"{label} = {expr_text(node, names)}  : {type_text(node)}")
    return out


# ---------------------------------------------------------------- model program


@dataclass(frozen=True)
class LayerIR:
    name: str                 # module name inside its scope: conv2d_1, linear_2
    layer: str                # catalog name: conv2d
    args: dict                # bound arguments (catalog defaults filled)
    input: TensorShape
    output: TensorShape
    each: bool = False        # applied at every time step
    span: ast.Span = ast.NO_SPAN
    mask: tuple | None = None  # (model input, padding id): the padding mask a mask-aware layer reads
    value_masks: tuple = ()    # (argument, mask) of value arguments whose padding it reads (memory=)

    def __str__(self) -> str:
        """The layer as a spec would write it: required arguments first, then what differs from defaults."""
        parts = []
        for a in LAYERS[self.layer].args:
            v = self.args.get(a.name)
            if a.variadic:
                parts += [str(x) for x in v]
            elif a.required:   # the first one positional, as specs write conv2d(16, kernel=5)
                parts.append(str(v) if not parts else f"{a.name}={v}")
            elif v != a.default:
                parts.append(f"{a.name}={str(v).lower() if isinstance(v, bool) else v}")
        text = f"{self.layer}({', '.join(parts)})" if parts else self.layer
        return ("each " if self.each else "") + text

    @property
    def step_input(self) -> TensorShape:
        """What the layer itself sees: one time step for `each`, else the whole input."""
        return TensorShape(self.input.dtype, self.input.dims[1:]) if self.each else self.input


@dataclass(frozen=True)
class BlockIR:
    """One block module: a `block` used in the model (one per use when it has parameters or is repeated),
    or a `residual { }` stage. `name` is its module path (`encoder`, `res_2`, `mix.res_1`, `residual_1`)."""

    name: str
    steps: tuple                  # in order: LayerIR, or the path of a nested block (str)
    input: TensorShape
    output: TensorShape
    residual: bool = False        # its value is its steps' value plus its input
    definition: str = ""          # the `block` it is a use of ("" for a residual stage)
    masks: tuple = (None, None)   # the padding masks of its input and output values

    @property
    def layers(self) -> tuple[LayerIR, ...]:
        return tuple(s for s in self.steps if isinstance(s, LayerIR))

    @property
    def children(self) -> tuple[str, ...]:
        return tuple(s for s in self.steps if isinstance(s, str))


@dataclass(frozen=True)
class ParamIR:
    name: str
    shape: TensorShape
    init: Any                 # a number, nested list, or a CallValue of an init distribution


@dataclass
class ModelIR:
    name: str
    inputs: dict[str, TensorShape]
    params: list[ParamIR] = field(default_factory=list)
    layers: list[LayerIR] = field(default_factory=list)       # top-level layers, in order
    blocks: dict[str, BlockIR] = field(default_factory=dict)
    steps: list[tuple[str, Node]] = field(default_factory=list)  # (binding name, node)
    outputs: list[Node] = field(default_factory=list)
    span: ast.Span = ast.NO_SPAN
    param_count: int = 0        # trainable values, counted by the checker

    @property
    def output_shapes(self) -> list[TensorShape]:
        return [o.shape for o in self.outputs]

    @property
    def sequence_inputs(self) -> dict[str, int]:
        """Inputs with a symbolic (any-length) axis: name -> index of that per-sample axis."""
        return {n: i for n, s in self.inputs.items() for i, d in enumerate(s.dims) if isinstance(d, str)}

    @property
    def all_layers(self) -> list[tuple[str, LayerIR]]:
        """(module path, layer) of every layer: block layers under their block's path, then the top-level ones."""
        return ([(f"{b.name}.{l.name}", l) for b in self.blocks.values() for l in b.layers]
                + [(l.name, l) for l in self.layers])

    @property
    def top_blocks(self) -> list[BlockIR]:
        """The blocks registered on the model itself (nested ones live inside these), in order of first use."""
        return [b for b in self.blocks.values() if "." not in b.name]

    def forward_layers(self) -> list[tuple[str, LayerIR]]:
        """(module path, layer) of every layer in the order the forward program runs them (each once)."""
        out: list[tuple[str, LayerIR]] = []
        seen: set = set()
        top = {l.name: l for l in self.layers}

        def block(path: str) -> None:
            if path in seen:
                return
            seen.add(path)
            for step in self.blocks[path].steps:
                if isinstance(step, str):
                    block(step)
                else:
                    out.append((f"{path}.{step.name}", step))

        def visit(node: Node) -> None:
            for child in node.children():
                visit(child)
            if isinstance(node, Chain):
                for name in node.layers:
                    if name not in seen:
                        seen.add(name)
                        out.append((name, top[name]))
            elif isinstance(node, BlockCall):
                block(node.block)
            elif isinstance(node, LayerCall) and node.layer not in seen:
                seen.add(node.layer)
                out.append((node.layer, top[node.layer]))

        for _, node in self.steps:
            visit(node)
        for node in self.outputs:
            visit(node)
        return out

    def has_layer(self, *names: str) -> bool:
        return any(l.layer in names for _, l in self.all_layers)

    def program_lines(self) -> list[str]:
        """The forward program, one typed line per binding and output (`dslc show --ir`)."""
        ins = ", ".join(f"{n}: {s}" for n, s in self.inputs.items())
        head = [f"model {self.name}({ins})"]
        head += [f"  param {p.name}: {p.shape}" for p in self.params]
        outs = [(f"output[{i}]" if len(self.outputs) > 1 else "output", o) for i, o in enumerate(self.outputs)]
        return head + ["  " + line for line in program_text(list(self.steps) + outs)]


# ---------------------------------------------------------------- data, training, export


@dataclass
class SourceIR:
    name: str                 # catalog name: mnist, table, text_csv, ...
    args: dict                # bound arguments; `columns` holds table values or column expressions (Nodes)
    facts: dict               # classes, vocab, columns (name -> TensorShape) known at check time
    span: ast.Span = ast.NO_SPAN

    @property
    def columns(self) -> dict[str, TensorShape] | None:
        """The per-sample type of each column, when known before loading."""
        return self.facts.get("columns")


@dataclass
class DataIR:
    source: SourceIR
    inputs: list[Node]                  # one expression over the source's columns per model input
    targets: list[Node]                 # one per target
    input_names: list[str]              # how each is called in messages and losses
    target_names: list[str]
    batch: int | None                   # None: the whole set in one batch
    shuffle: bool
    validation: float | SourceIR | None
    test: float | SourceIR | None
    split_seed: int
    root_override: str | None = None
    inputs_span: ast.Span = ast.NO_SPAN     # where the spec sets `inputs` (the model's span when it does not)

    @property
    def columns_read(self) -> list[str]:
        """The source columns the inputs and targets read, in order."""
        out: list[str] = []
        for node in self.inputs + self.targets:
            out += [n for n in refs(node, "column") if n not in out]
        return out


@dataclass
class CallIR:
    """A catalog entry chosen in a setting, with its bound arguments."""
    name: str
    args: dict
    span: ast.Span = ast.NO_SPAN


@dataclass
class LossIR:
    node: Node | None = None            # one number per batch (unbatched, rank 0)
    text: str = ""                      # as the spec writes it

    def calls(self) -> list[LossCall]:
        return [n for n in walk(self.node) if isinstance(n, LossCall)] if self.node is not None else []


@dataclass
class TrainIR:
    model: str
    loss: LossIR
    optimizer: CallIR
    schedule: CallIR | None
    warmup_steps: int
    epochs: int | None
    steps: int | None
    metrics: list[MetricCall]
    evaluate: tuple[str, int]           # ("epochs" | "steps", every)
    log: tuple[str, int]
    early_stopping: dict | None
    clip_grad_norm: float | None
    seed: int
    device: str
    precision: str
    deterministic: bool
    checkpoint_every: tuple[str, int]


@dataclass
class ExportIR:
    format: str
    opset: int
    file: str | None
    auto: bool


@dataclass
class InitIR:
    target: str               # a layer type (linear) or module path (linear_2, encoder.linear_1)
    param: str                # weight, bias
    dist: CallIR


@dataclass
class CheckedSpec:
    spec: ast.Spec
    source: Source
    lets: dict[str, Any]
    models: dict[str, ModelIR]
    data: DataIR | None
    train: TrainIR | None
    export: ExportIR | None
    init: list[InitIR]
    variant: str | None
    warnings: list[Diagnostic]

    @property
    def model(self) -> ModelIR:
        """The model that `train` trains (the only or first one when there is no train block)."""
        if self.train:
            return self.models[self.train.model]
        return next(iter(self.models.values()))

    def ir_lines(self) -> list[str]:
        """Every expression of this configuration as typed IR (`dslc show --ir`)."""
        out = []
        for m in self.models.values():
            out += m.program_lines()
        if self.data is not None:
            d = self.data
            out.append(f"data {d.source.name}")
            cols = d.source.args.get("columns") if isinstance(d.source.args.get("columns"), dict) else {}
            expr_cols = [(f"column {k}", v) for k, v in cols.items() if isinstance(v, Node)]
            out += ["  " + line for line in program_text(
                expr_cols + [(f"input {n}", e) for n, e in zip(self.model.inputs, d.inputs)]
                + [(f"target {n}", e) for n, e in zip(d.target_names, d.targets)])]
        if self.train is not None and self.train.loss.node is not None:
            out.append("train")
            out += ["  " + line for line in program_text(
                [("loss", self.train.loss.node)] + [(f"metric {m.key}", m) for m in self.train.metrics])]
        return out
