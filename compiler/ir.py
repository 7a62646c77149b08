"""The checked intermediate form of a spec: small, printable, every shape known.

`check` produces a `CheckedSpec`; `build` turns its models into nn.Modules and
the runtime reads its data, train and export settings. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dslc.dsl import ast
from dslc.dsl.diagnostics import Diagnostic, Source

from .shapes import TensorShape


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

    def __str__(self) -> str:
        """The layer as a spec would write it: required arguments first, then what differs from defaults."""
        from .layers import LAYERS
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


@dataclass(frozen=True)
class BlockIR:
    name: str
    layers: tuple[LayerIR, ...]
    input: TensorShape
    output: TensorShape


@dataclass(frozen=True)
class ParamIR:
    name: str
    shape: TensorShape
    init: Any                 # a number, nested list, or a CallValue of an init distribution


# Expression nodes of a model's forward program.

@dataclass(frozen=True)
class Ref:
    name: str                 # an input, a binding or a param


@dataclass(frozen=True)
class Const:
    value: float


@dataclass(frozen=True)
class Chain:
    """Top-level layers (by module name) applied in order to `input`."""
    layers: tuple[str, ...]
    input: Any


@dataclass(frozen=True)
class BlockCall:
    block: str
    input: Any


@dataclass(frozen=True)
class Fn:
    """An elementwise operator or a function from the expression catalog."""
    name: str                 # add, sub, mul, div, pow, neg, exp, mean, ...
    args: tuple


@dataclass
class ModelIR:
    name: str
    inputs: dict[str, TensorShape]
    params: list[ParamIR] = field(default_factory=list)
    layers: list[LayerIR] = field(default_factory=list)       # top-level layers, in order
    blocks: dict[str, BlockIR] = field(default_factory=dict)
    steps: list[tuple[str, Any]] = field(default_factory=list)  # (binding name, node)
    outputs: list[Any] = field(default_factory=list)
    output_shapes: list[TensorShape] = field(default_factory=list)
    span: ast.Span = ast.NO_SPAN

    @property
    def sequence_inputs(self) -> dict[str, int]:
        """Inputs with a symbolic (any-length) axis: name -> index of that per-sample axis."""
        return {n: i for n, s in self.inputs.items() for i, d in enumerate(s.dims) if isinstance(d, str)}

    def has_layer(self, *names: str) -> bool:
        every = list(self.layers) + [l for b in self.blocks.values() for l in b.layers]
        return any(l.layer in names for l in every)

    def rows(self) -> list[tuple[str, str, str]]:
        """(stage, layer, output shape) for `dslc show`, in forward order."""
        out = [(f"input {n}", "", str(s)) for n, s in self.inputs.items()]
        out += [(f"param {p.name}", "", str(p.shape)) for p in self.params]
        for b in self.blocks.values():
            out += [(f"{b.name}.{l.name}", str(l), str(l.output)) for l in b.layers]
        out += [(l.name, str(l), str(l.output)) for l in self.layers]
        return out


# ---------------------------------------------------------------- data, training, export

@dataclass
class SourceIR:
    name: str                 # catalog name: mnist, table, text_csv, ...
    args: dict
    facts: dict               # classes, vocab, input/target shapes known at check time
    span: ast.Span = ast.NO_SPAN


@dataclass
class DataIR:
    source: SourceIR
    inputs: list[ast.Expr] | None       # expressions over columns (None: the source's own)
    targets: list[ast.Expr] | None
    input_names: list[str]
    target_names: list[str]
    batch: int | None                   # None: the whole set in one batch
    shuffle: bool
    validation: float | SourceIR | None
    test: float | SourceIR | None
    split_seed: int
    root_override: str | None = None


@dataclass
class CallIR:
    """A catalog entry chosen in a setting, with its bound arguments."""
    name: str
    args: dict
    span: ast.Span = ast.NO_SPAN


@dataclass
class LossIR:
    builtin: CallIR | None = None       # mse, cross_entropy, ... over (output, target)
    expr: ast.Expr | None = None        # or an expression over output, targets, inputs, params
    text: str = ""


@dataclass
class TrainIR:
    model: str
    loss: LossIR
    optimizer: CallIR
    schedule: CallIR | None
    warmup_steps: int
    epochs: int | None
    steps: int | None
    metrics: list[CallIR]
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
