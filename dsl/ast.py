"""The syntax tree of a spec: frozen dataclasses, each node carrying its source span.

Both faces of the language (the .dlspec text and its YAML form) produce these
nodes. Spans are left out of equality and of dumps, so two specs that say the
same thing compare equal wherever they were written. (Plain dataclasses: the
tree is built by our own parser, so it needs no validation, and `dslc check`
starts faster without building validators.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Union

_SKIP = {"exclude": True}          # field metadata: left out of dumps and of equality


def _hidden(default):
    return field(default=default, compare=False, repr=False, metadata=_SKIP)


@dataclass(frozen=True)
class Span:
    """1-based line and column of a node's first character, and of its end (exclusive).

    `origin` is the Source (dsl.diagnostics) of text other than the spec file itself,
    such as a `--set` override; diagnostics at such a span point into that text.
    """

    line: int = 0
    column: int = 0
    end_line: int = 0
    end_column: int = 0
    origin: Any = field(default=None, compare=False, repr=False)

    @property
    def known(self) -> bool:
        return self.line > 0


NO_SPAN = Span()


def dump(value):
    """A node as plain data (its type name and fields, spans left out): what equality compares."""
    if isinstance(value, Node):
        out = {"node": type(value).__name__}
        for f in dataclasses.fields(value):
            if not f.metadata.get("exclude"):
                out[f.name] = dump(getattr(value, f.name))
        return out
    if isinstance(value, (list, tuple)):
        return [dump(v) for v in value]
    return value


def fields_of(node) -> list[str]:
    """The names of a node's fields that hold its content (not its spans)."""
    return [f.name for f in dataclasses.fields(node) if not f.metadata.get("exclude")]


def replace(node, **changes):
    """A copy of a node with some fields replaced."""
    return dataclasses.replace(node, **changes)


@dataclass(frozen=True, kw_only=True, eq=False)
class Node:
    span: Span = _hidden(NO_SPAN)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and dump(self) == dump(other)

    def __hash__(self) -> int:
        return hash(repr(dump(self)))


# ---------------------------------------------------------------- expressions


@dataclass(frozen=True, kw_only=True, eq=False)
class Number(Node):
    value: Union[int, float]


@dataclass(frozen=True, kw_only=True, eq=False)
class String(Node):
    value: str


@dataclass(frozen=True, kw_only=True, eq=False)
class Bool(Node):
    value: bool


@dataclass(frozen=True, kw_only=True, eq=False)
class Var(Node):
    name: str


@dataclass(frozen=True, kw_only=True, eq=False)
class Attr(Node):
    """`value.name`, e.g. `data.classes`."""

    value: "Expr"
    name: str


@dataclass(frozen=True, kw_only=True, eq=False)
class Argument(Node):
    """A positional (name is None) or keyword argument of a call or a layer."""

    name: str | None = None
    value: "Expr"


@dataclass(frozen=True, kw_only=True, eq=False)
class Call(Node):
    func: "Expr"
    args: list[Argument] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True, eq=False)
class Index(Node):
    value: "Expr"
    index: "Expr"


@dataclass(frozen=True, kw_only=True, eq=False)
class BinOp(Node):
    op: Literal["+", "-", "*", "/", "**", "@"]
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True, kw_only=True, eq=False)
class Slice(Node):
    """`start:stop:step` inside brackets; each part may be left out."""

    start: "Expr | None" = None
    stop: "Expr | None" = None
    step: "Expr | None" = None


@dataclass(frozen=True, kw_only=True, eq=False)
class Subscript(Node):
    """`value[i, j:k]`: several subscripts or a slice (a single plain index is an `Index`)."""

    value: "Expr"
    items: list = field(default_factory=list)      # Expr or Slice, one per per-sample axis


@dataclass(frozen=True, kw_only=True, eq=False)
class Neg(Node):
    operand: "Expr"


@dataclass(frozen=True, kw_only=True, eq=False)
class ListExpr(Node):
    items: list["Expr"] = field(default_factory=list)


Expr = Union[Number, String, Bool, Var, Attr, Call, Index, Subscript, BinOp, Neg, ListExpr]


# ---------------------------------------------------------------- models


@dataclass(frozen=True, kw_only=True, eq=False)
class TensorType(Node):
    """`f32[1, 28, 28]`, `i64[T]`, `f32[]`: element type and per-sample dims (no batch)."""

    dtype: str
    dims: list[Union[int, str]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True, eq=False)
class Input(Node):
    name: str
    type: TensorType


@dataclass(frozen=True, kw_only=True, eq=False)
class LayerStage(Node):
    """A layer or a block applied to the running value: `conv2d(16, kernel=5)`, `relu`."""

    name: str
    args: list[Argument] = field(default_factory=list)
    name_span: Span = _hidden(NO_SPAN)


@dataclass(frozen=True, kw_only=True, eq=False)
class EachStage(Node):
    """`each STAGE`: the stage applied at every time step of a sequence."""

    stage: "Stage"


@dataclass(frozen=True, kw_only=True, eq=False)
class RepeatStage(Node):
    """`repeat(N) STAGE`: N copies of the stage one after the other, each with its own weights."""

    count: "Expr"
    stage: "Stage"


@dataclass(frozen=True, kw_only=True, eq=False)
class ResidualStage(Node):
    """`residual { STAGES }`: the stages applied to the running value, plus that value."""

    stages: list["Stage"] = field(default_factory=list)


Stage = Union[LayerStage, EachStage, RepeatStage, ResidualStage]


@dataclass(frozen=True, kw_only=True, eq=False)
class Param(Node):
    """`param w = 1.0`: a trainable tensor, initialised from an expression."""

    name: str
    type: TensorType | None = None
    value: Expr


@dataclass(frozen=True, kw_only=True, eq=False)
class BlockDef(Node):
    """`block encoder { ... }`: a named chain of stages, called like a function; `block res(c) { ... }` takes
    numbers that its stages use (each use is a copy with its own weights)."""

    name: str
    params: list[str] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True, eq=False)
class Binding(Node):
    """`code = encoder(x)`: names the value of an expression inside a model."""

    name: str
    value: Expr


@dataclass(frozen=True, kw_only=True, eq=False)
class Unpack(Node):
    """`a, b = split(h, 2)`: names each part of a value that has several."""

    names: list[str] = field(default_factory=list)
    value: "Expr"


@dataclass(frozen=True, kw_only=True, eq=False)
class Return(Node):
    values: list[Expr]


ModelStatement = Union[Param, BlockDef, Binding, Unpack, Return, LayerStage, EachStage, RepeatStage, ResidualStage]


@dataclass(frozen=True, kw_only=True, eq=False)
class Model(Node):
    name: str
    inputs: list[Input] = field(default_factory=list)
    body: list[ModelStatement] = field(default_factory=list)


# ---------------------------------------------------------------- top level


@dataclass(frozen=True, kw_only=True, eq=False)
class Let(Node):
    name: str
    value: Expr


@dataclass(frozen=True, kw_only=True, eq=False)
class Setting(Node):
    """`target = value` inside a data/train/export/init block or a variant."""

    target: list[str]
    value: Expr

    @property
    def key(self) -> str:
        return ".".join(self.target)


@dataclass(frozen=True, kw_only=True, eq=False)
class Block(Node):
    block: Literal["data", "train", "export", "init"]
    settings: list[Setting] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True, eq=False)
class Variant(Node):
    name: str
    settings: list[Setting] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True, eq=False)
class Variants(Node):
    variants: list[Variant] = field(default_factory=list)


Item = Union[Let, Block, Model, Variants]


@dataclass(frozen=True, kw_only=True, eq=False)
class Spec(Node):
    items: list[Item] = field(default_factory=list)

    def canonical(self) -> dict:
        """What the spec says, independent of item order and of how blocks were split."""
        blocks: dict[str, list] = {}
        for item in self.items:
            if isinstance(item, Block):
                blocks.setdefault(item.block, []).extend(dump(s) for s in item.settings)
        return {"lets": [dump(i) for i in self.lets], "blocks": blocks,
                "models": [dump(m) for m in self.models],
                "variants": [dump(v) for v in self.variants]}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Spec) and self.canonical() == other.canonical()

    def __hash__(self) -> int:
        return hash(repr(self.canonical()))

    @property
    def lets(self) -> list[Let]:
        return [i for i in self.items if isinstance(i, Let)]

    @property
    def models(self) -> list[Model]:
        return [i for i in self.items if isinstance(i, Model)]

    def block(self, name: str) -> Block | None:
        for item in self.items:
            if isinstance(item, Block) and item.block == name:
                return item
        return None

    @property
    def variants(self) -> list[Variant]:
        return [v for i in self.items if isinstance(i, Variants) for v in i.variants]


def names_in(expr, functions: bool = False) -> list[str]:
    """The variable names an expression reads, once each in order of appearance; with `functions`,
    the names of called functions too."""
    out: list[str] = field(default_factory=list)

    def walk(e) -> None:
        if isinstance(e, Var):
            if e.name not in out:
                out.append(e.name)
        elif isinstance(e, BinOp):
            walk(e.left)
            walk(e.right)
        elif isinstance(e, Neg):
            walk(e.operand)
        elif isinstance(e, Call):
            if functions:
                walk(e.func)
            for a in e.args:
                walk(a.value)
        elif isinstance(e, (Index, Attr)):
            walk(e.value)
            if isinstance(e, Index):
                walk(e.index)
        elif isinstance(e, Subscript):
            walk(e.value)
            for item in e.items:
                for part in ((item.start, item.stop, item.step) if isinstance(item, Slice) else (item,)):
                    if part is not None:
                        walk(part)
        elif isinstance(e, ListExpr):
            for i in e.items:
                walk(i)

    walk(expr)
    return out
