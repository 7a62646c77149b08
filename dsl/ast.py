"""The typed syntax tree of a spec: pydantic models, each node carrying its source span.

Both faces of the language (the .dlspec text and its YAML form) produce these
nodes. Spans are left out of equality and of dumps, so two specs that say the
same thing compare equal wherever they were written.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class Span(BaseModel):
    """1-based line and column of a node's first character, and of its end (exclusive).

    `origin` is the Source (dsl.diagnostics) of text other than the spec file itself,
    such as a `--set` override; diagnostics at such a span point into that text.
    """

    model_config = ConfigDict(frozen=True)
    line: int = 0
    column: int = 0
    end_line: int = 0
    end_column: int = 0
    origin: Any = Field(default=None, exclude=True, repr=False)

    @property
    def known(self) -> bool:
        return self.line > 0


NO_SPAN = Span()


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    span: Span = Field(default=NO_SPAN, exclude=True, repr=False)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(repr(self.model_dump()))


# ---------------------------------------------------------------- expressions


class Number(Node):
    kind: Literal["number"] = "number"
    value: Union[int, float]


class String(Node):
    kind: Literal["string"] = "string"
    value: str


class Bool(Node):
    kind: Literal["bool"] = "bool"
    value: bool


class Var(Node):
    kind: Literal["var"] = "var"
    name: str


class Attr(Node):
    """`value.name`, e.g. `data.classes`."""

    kind: Literal["attr"] = "attr"
    value: "Expr"
    name: str


class Argument(Node):
    """A positional (name is None) or keyword argument of a call or a layer."""

    kind: Literal["argument"] = "argument"
    name: str | None = None
    value: "Expr"


class Call(Node):
    kind: Literal["call"] = "call"
    func: "Expr"
    args: list[Argument] = []


class Index(Node):
    kind: Literal["index"] = "index"
    value: "Expr"
    index: "Expr"


class BinOp(Node):
    kind: Literal["binop"] = "binop"
    op: Literal["+", "-", "*", "/", "**"]
    left: "Expr"
    right: "Expr"


class Neg(Node):
    kind: Literal["neg"] = "neg"
    operand: "Expr"


class ListExpr(Node):
    kind: Literal["list"] = "list"
    items: list["Expr"] = []


Expr = Annotated[
    Union[Number, String, Bool, Var, Attr, Call, Index, BinOp, Neg, ListExpr],
    Field(discriminator="kind"),
]


# ---------------------------------------------------------------- models


class TensorType(Node):
    """`f32[1, 28, 28]`, `i64[T]`, `f32[]`: element type and per-sample dims (no batch)."""

    kind: Literal["tensor_type"] = "tensor_type"
    dtype: str
    dims: list[Union[int, str]] = []


class Input(Node):
    kind: Literal["input"] = "input"
    name: str
    type: TensorType


class LayerStage(Node):
    """A layer or a block applied to the running value: `conv2d(16, kernel=5)`, `relu`."""

    kind: Literal["layer"] = "layer"
    name: str
    args: list[Argument] = []
    name_span: Span = Field(default=NO_SPAN, exclude=True, repr=False)


class EachStage(Node):
    """`each STAGE`: the stage applied at every time step of a sequence."""

    kind: Literal["each"] = "each"
    stage: "Stage"


Stage = Annotated[Union[LayerStage, EachStage], Field(discriminator="kind")]


class Param(Node):
    """`param w = 1.0`: a trainable tensor, initialised from an expression."""

    kind: Literal["param"] = "param"
    name: str
    type: TensorType | None = None
    value: Expr


class BlockDef(Node):
    """`block encoder { ... }`: a named chain of stages, called like a function."""

    kind: Literal["block"] = "block"
    name: str
    stages: list[Stage] = []


class Binding(Node):
    """`code = encoder(x)`: names the value of an expression inside a model."""

    kind: Literal["binding"] = "binding"
    name: str
    value: Expr


class Return(Node):
    kind: Literal["return"] = "return"
    values: list[Expr]


ModelStatement = Annotated[
    Union[Param, BlockDef, Binding, Return, LayerStage, EachStage],
    Field(discriminator="kind"),
]


class Model(Node):
    kind: Literal["model"] = "model"
    name: str
    inputs: list[Input] = []
    body: list[ModelStatement] = []


# ---------------------------------------------------------------- top level


class Let(Node):
    kind: Literal["let"] = "let"
    name: str
    value: Expr


class Setting(Node):
    """`target = value` inside a data/train/export/init block or a variant."""

    kind: Literal["setting"] = "setting"
    target: list[str]
    value: Expr

    @property
    def key(self) -> str:
        return ".".join(self.target)


class Block(Node):
    kind: Literal["block_settings"] = "block_settings"
    block: Literal["data", "train", "export", "init"]
    settings: list[Setting] = []


class Variant(Node):
    kind: Literal["variant"] = "variant"
    name: str
    settings: list[Setting] = []


class Variants(Node):
    kind: Literal["variants"] = "variants"
    variants: list[Variant] = []


Item = Annotated[Union[Let, Block, Model, Variants], Field(discriminator="kind")]


class Spec(Node):
    kind: Literal["spec"] = "spec"
    items: list[Item] = []

    def canonical(self) -> dict:
        """What the spec says, independent of item order and of how blocks were split."""
        blocks: dict[str, list] = {}
        for item in self.items:
            if isinstance(item, Block):
                blocks.setdefault(item.block, []).extend(s.model_dump() for s in item.settings)
        return {"lets": [i.model_dump() for i in self.lets], "blocks": blocks,
                "models": [m.model_dump() for m in self.models],
                "variants": [v.model_dump() for v in self.variants]}

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
    out: list[str] = []

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
        elif isinstance(e, ListExpr):
            for i in e.items:
                walk(i)

    walk(expr)
    return out


for _cls in (Attr, Argument, Call, Index, BinOp, Neg, ListExpr, EachStage, Param, Binding,
             Return, Model, Let, Setting, Block, Variants, Spec, BlockDef):
    _cls.model_rebuild()
