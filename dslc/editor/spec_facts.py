"""The one adapter between the checker and the editor: spec text in, plain facts out.

`analyse(text, path)` parses and checks a spec as `dslc check` does (every
variant; same diagnostics, ranges, messages and hints) and, for the base
configuration, turns what the checker inferred into plain data: each stage's
input and output type and parameter count keyed by its source range, each
block's, param's and input's types, the `let` values and the `data.*` facts.
It works on a spec with errors too: what could be checked is there.

This is the only editor module that knows the checker's internals (SpecChecker's
steps, ModelIR, LayerIR, BlockIR, ParamIR, SourceIR, Facts, the setting keys
and early_stopping's arguments): when the IR
changes, this module changes and the language server does not. Nothing here
imports torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from dslc.dsl import ast
from dslc.dsl.diagnostics import Source
from dslc.errors import SpecError

log = logging.getLogger(__name__)


@dataclass(frozen=True, order=True)
class Where:
    """A range of the spec text: 1-based lines and columns (characters), the end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    def contains(self, line: int, column: int) -> bool:
        return (self.line, self.column) <= (line, column) < (self.end_line, self.end_column)

    def encloses(self, other: Where) -> bool:
        return (self.line, self.column) <= (other.line, other.column) and \
            (other.end_line, other.end_column) <= (self.end_line, self.end_column)

    @property
    def size(self) -> tuple[int, int]:
        return (self.end_line - self.line, self.end_column - self.column)


def where(span: ast.Span | None) -> Where | None:
    if span is None or not span.known:
        return None
    return Where(span.line, span.column, span.end_line, span.end_column)


@dataclass(frozen=True)
class Problem:
    """A diagnostic as `dslc check` reports it."""

    where: Where | None
    severity: str              # "error" | "warning"
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class StageFacts:
    """A checked layer: `name` as `dslc show` prints it (conv2d_1, encoder.linear_2)."""

    where: Where               # the whole stage (for `each`, from `each` on)
    name: str
    layer: str                 # catalog name
    text: str                  # the layer as bound: linear(10)
    input: str                 # f32[1568]
    output: str
    params: int


@dataclass(frozen=True)
class BlockFacts:
    name: str
    input: str
    output: str
    params: int
    layers: tuple[str, ...]


@dataclass(frozen=True)
class ModelFacts:
    name: str
    inputs: dict[str, str]                       # input name -> type
    outputs: tuple[str, ...]
    params: int                                  # total trainable values
    stages: tuple[StageFacts, ...]               # top-level and block layers, in source order
    blocks: dict[str, BlockFacts]
    param_types: dict[str, tuple[str, int]]      # param name -> (type, values)
    data_inputs: dict[str, tuple[str, str]] = field(default_factory=dict)   # input -> (type, column) the data gives

    def stage_at(self, w: Where) -> StageFacts | None:
        return next((s for s in self.stages if s.where == w), None)


@dataclass(frozen=True)
class DataFacts:
    source: str                                  # catalog name: mnist, table, ...
    where: Where | None                          # the source call
    facts: dict[str, str]                        # data.NAME -> value as a spec writes it
    columns: dict[str, str]                      # column name -> type
    inputs: tuple[tuple[str, str], ...]          # (name, type) given to the model
    targets: tuple[tuple[str, str], ...]


@dataclass
class CheckedFacts:
    text: str
    problems: list[Problem]
    spec: ast.Spec | None = None                 # the syntax tree (None when the text does not parse)
    lets: dict[str, str] = field(default_factory=dict)           # name -> value as a spec writes it
    data: DataFacts | None = None
    models: dict[str, ModelFacts] = field(default_factory=dict)
    trained_model: str | None = None


# ---------------------------------------------------------------- what the checker accepts, for completion


def setting_keys() -> dict[str, tuple[str, ...]]:
    """The settings each block accepts (`init` takes LAYER.weight / LAYER.bias instead)."""
    from dslc.compiler.check import DATA_KEYS, EXPORT_KEYS, TRAIN_KEYS
    return {"data": tuple(DATA_KEYS), "train": tuple(TRAIN_KEYS), "export": tuple(EXPORT_KEYS)}


def early_stopping_args() -> list:
    """The arguments of `early_stopping(...)` (values.Arg), which the checker binds like a catalog entry's."""
    from dslc.compiler.check import _EARLY
    return list(_EARLY.args)


# ---------------------------------------------------------------- diagnostics


def _problem(d, path: str) -> Problem:
    origin = d.span.origin
    located = d.span.known and (origin is None or origin.path == path)
    return Problem(where(d.span) if located else None, d.severity, d.message, d.hint)


def _parse(text: str, path: str) -> ast.Spec:
    if PurePath(path).suffix in (".yaml", ".yml"):
        from dslc.dsl.yaml_face import from_yaml
        return from_yaml(text, path)
    from dslc.dsl.parse import parse
    return parse(text, path)


def _diagnose(spec: ast.Spec, source: Source) -> list[Problem]:
    """Every variant's errors, or the warnings, once each: what `dslc check` prints."""
    from dslc.compiler.check import check_all
    try:
        results = check_all(spec, source)
    except SpecError as err:
        return [_problem(d, source.path) for d in err.diagnostics]
    warnings = {w.render(): w for r in results for w in r.warnings}
    return [_problem(d, source.path) for d in warnings.values()]


def _internal(stage: str, err: Exception) -> Problem:
    log.exception("dslc %s failed", stage)
    return Problem(None, "error", f"internal error while {stage}: {type(err).__name__}: {err} "
                                  "(this is a bug in dslc)")


def analyse(text: str, path: str = "<spec>") -> CheckedFacts:
    """Check the spec text (as `dslc check` would) and gather the facts of its base configuration."""
    source = Source(path, text)
    try:
        spec = _parse(text, path)
    except SpecError as err:
        return CheckedFacts(text, [_problem(d, path) for d in err.diagnostics])
    except RecursionError:
        return CheckedFacts(text, [Problem(None, "error", "spec is nested too deeply")])
    except Exception as err:  # a bug in dslc: say so once, never crash the editor's server
        return CheckedFacts(text, [_internal("parsing", err)])
    try:
        problems = _diagnose(spec, source)
    except Exception as err:
        problems = [_internal("checking", err)]
    out = CheckedFacts(text, problems, spec, trained_model=_trained_model(spec))
    try:
        _gather(spec, source, out)
    except Exception:   # facts are a convenience: keep the diagnostics
        log.exception("gathering facts failed")
    return out


def _trained_model(spec: ast.Spec) -> str | None:
    train = spec.block("train")
    for s in train.settings if train else ():
        if s.key == "model" and isinstance(s.value, ast.Var):
            return s.value.name
    return spec.models[0].name if spec.models else None


# ---------------------------------------------------------------- the base configuration's facts


def _gather(spec: ast.Spec, source: Source, out: CheckedFacts) -> None:
    """Run the checker's steps on the base configuration, keeping what each produced even when
    another part has errors (`check` itself raises and keeps nothing)."""
    from dslc.compiler.check import SpecChecker
    checker = SpecChecker(spec, source, None)
    checker.structure()
    checker.check_lets()
    data = checker.check_data()
    models = checker.check_models()
    out.lets = {name: spec_text(v) for name, v in checker.lets.items() if name != "data"}
    out.data = _data_facts(data, checker.lets.get("data"))
    for name, m in models.items():
        out.models[name] = _model_facts(m, data if name == out.trained_model else None)


def spec_text(v: Any) -> str:
    """A checked value written as a spec writes it."""
    from dslc.compiler.values import CallValue, Symbol
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, Symbol):
        return v.name
    if isinstance(v, CallValue):
        args = ", ".join(f"{a.name}={spec_text(a.value)}" if a.name else spec_text(a.value) for a in v.args)
        return f"{v.name}({args})"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(spec_text(x) for x in v) + "]"
    return str(v)


def _data_facts(data, facts) -> DataFacts | None:
    if data is None:
        return None
    src = data.source
    known = facts.facts if facts is not None and hasattr(facts, "facts") else {}
    columns = src.facts.get("columns") or {}
    inputs = [node.shape for node in data.inputs]
    targets = [node.shape for node in data.targets]
    return DataFacts(src.name, where(src.span), {k: spec_text(v) for k, v in known.items()},
                     {k: str(v) for k, v in columns.items()},
                     tuple((n, str(s)) for n, s in zip(data.input_names, inputs)),
                     tuple((n, str(s)) for n, s in zip(data.target_names, targets)))


def _model_facts(m, data) -> ModelFacts:
    from dslc.compiler.layers import layer_params

    def stage(l, scope: str = "") -> StageFacts:
        return StageFacts(where(l.span), f"{scope}.{l.name}" if scope else l.name, l.layer, str(l), str(l.input),
                          str(l.output), layer_params(l))

    stages = [stage(l) for l in m.layers if l.span.known]
    blocks = {}
    for b in m.blocks.values():
        inner = [stage(l, b.name) for l in b.layers if l.span.known]
        stages += inner
        blocks[b.name] = BlockFacts(b.name, str(b.input), str(b.output), sum(s.params for s in inner),
                                    tuple(s.name for s in inner))
    params = {p.name: (str(p.shape), p.shape.numel() or 0) for p in m.params}
    total = sum(s.params for s in stages) + sum(n for _, n in params.values())
    given = {}
    if data is not None:
        shapes = [node.shape for node in data.inputs]
        if len(shapes) == len(m.inputs):
            given = {name: (str(shape), column) for name, shape, column in zip(m.inputs, shapes, data.input_names)}
    stages.sort(key=lambda s: s.where)
    return ModelFacts(m.name, {n: str(s) for n, s in m.inputs.items()}, tuple(str(s) for s in m.output_shapes),
                      total, tuple(stages), blocks, params, given)
