"""What is where in a spec: hover facts, definitions, the outline and the per-stage shapes.

`index(checked)` walks the syntax tree (dsl.ast, every node carries its span)
next to the facts the checker inferred (editor.spec_facts) and produces plain
positional records the language server serves:

- `Fact`: what hovering a range shows (a layer's input and output types and
  parameter count, a block call's, a `let`'s value in each variant, a
  `data.classes` value and where it comes from, a catalog entry's doc) and,
  for a name, the range of its definition;
- `Symbol`: the document outline (lets, blocks of settings, models with their
  inputs, params, blocks, stages and bindings, variants);
- `ShapeHint`: the type after each stage of a model body, for inlay hints.

Ranges of names inside a statement (`let lr`, `model cnn`, `block encoder`) are
found in the text from the statement's span; the checker records no more.
`carried_over` keeps an index's records on the lines an edit did not touch,
for the time the edited text does not parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from dslc.dsl import ast
from dslc.dsl.format import format_expr

from . import catalogs
from .spec_facts import CheckedFacts, ModelFacts, Where, where

# What each data fact means, for hovers.
DATA_FACT_DOCS = {
    "classes": "The number of classes.",
    "labels": "The class names, in class-index order.",
    "vocab": "The number of token ids: the vocabulary plus 0 (padding) and 1 (out of vocabulary).",
    "max_len": "The length every text is padded or cut to.",
    "rows": "The number of rows of each column.",
    "scale": "The factor that maps raw pixel values to [0, 1].",
    "inputs": "The columns given to the model by default.",
    "targets": "The columns the loss compares with by default.",
    "kind": "What kind of data the source gives.",
}


@dataclass(frozen=True)
class Fact:
    where: Where
    kind: str                      # layer, block, block call, let, param, input, binding, model, data fact,
                                   # column, output, catalog, argument, setting, init target
    name: str
    title: str = ""                # one line: `linear_1` · linear(10)
    input: str | None = None
    output: str | None = None
    params: int | None = None
    value: str | None = None
    origin: str | None = None      # where a value comes from, in words
    doc: str | None = None
    definition: Where | None = None


@dataclass(frozen=True)
class Symbol:
    name: str
    kind: str                      # let, block settings, setting, model, input, param, block, layer, binding,
                                   # return, variants, variant
    where: Where
    name_where: Where
    detail: str = ""
    children: tuple[Symbol, ...] = ()


@dataclass(frozen=True)
class ShapeHint:
    line: int                      # where the hint goes: right after the stage
    column: int
    label: str                     # [16, 28, 28]
    tooltip: str                   # conv2d_1 → f32[16, 28, 28]


@dataclass
class SpecIndex:
    facts: list[Fact] = field(default_factory=list)
    symbols: list[Symbol] = field(default_factory=list)
    shape_hints: list[ShapeHint] = field(default_factory=list)
    # Names for completion: lets, models, blocks per model, data facts with values, columns, layer names.
    lets: dict[str, str] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    blocks: dict[str, list[str]] = field(default_factory=dict)
    data_facts: dict[str, str] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    layer_names: list[str] = field(default_factory=list)

    def fact_at(self, line: int, column: int) -> Fact | None:
        """The innermost fact whose range holds the position (1-based)."""
        best = None
        for f in self.facts:
            if f.where.contains(line, column) and (best is None or best.where.encloses(f.where)):
                best = f
        return best

    def definition_at(self, line: int, column: int) -> Where | None:
        best = None
        for f in self.facts:
            if f.definition is not None and f.where.contains(line, column) and (best is None or best.where.encloses(f.where)):
                best = f
        return best.definition if best else None


def carried_over(old: SpecIndex, old_text: str, new_text: str) -> SpecIndex:
    """The facts of `old` (indexed from `old_text`) that still stand where they were in `new_text`: those on
    the lines before the first changed line, and, moved by the change in line count, those after the last.
    While an edit leaves the spec unparsable, hover and shape hints stay on the lines it did not touch."""
    a, b = old_text.split("\n"), new_text.split("\n")
    prefix = 0
    while prefix < min(len(a), len(b)) and a[prefix] == b[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(a), len(b)) - prefix and a[-1 - suffix] == b[-1 - suffix]:
        suffix += 1
    shift = len(b) - len(a)

    def line(n: int) -> int | None:
        return n if n <= prefix else n + shift if n > len(a) - suffix else None

    def moved(w: Where | None) -> Where | None:
        if w is None:
            return None
        start, end = line(w.line), line(w.end_line)
        return None if start is None or end is None else Where(start, w.column, end, w.end_column)

    out = SpecIndex(lets=old.lets, models=old.models, blocks=old.blocks, data_facts=old.data_facts,
                    columns=old.columns, layer_names=old.layer_names)
    for f in old.facts:
        at = moved(f.where)
        if at is not None:
            out.facts.append(replace(f, where=at, definition=moved(f.definition)))
    for h in old.shape_hints:
        n = line(h.line)
        if n is not None:
            out.shape_hints.append(replace(h, line=n))

    def symbol(sym: Symbol) -> Symbol | None:
        at, name_at = moved(sym.where), moved(sym.name_where)
        if at is None or name_at is None:
            return None
        return replace(sym, where=at, name_where=name_at,
                       children=tuple(c for c in map(symbol, sym.children) if c is not None))

    out.symbols = [m for m in map(symbol, old.symbols) if m is not None]
    return out


def dims(type_text: str | None) -> str:
    """`f32[16, 28, 28]` -> `[16, 28, 28]`."""
    if not type_text or "[" not in type_text:
        return type_text or ""
    return type_text[type_text.index("["):]


class _Text:
    """Finds names inside statements, whose own ranges the syntax tree does not keep."""

    def __init__(self, text: str):
        self.lines = text.split("\n")

    def find(self, within: Where | None, name: str, skip_first_word: bool = False) -> Where | None:
        if within is None:
            return None
        pattern = re.compile(r"(?<![A-Za-z0-9_])" + re.escape(name) + r"(?![A-Za-z0-9_])")
        skipped = not skip_first_word
        for n in range(within.line, min(within.end_line, len(self.lines)) + 1):
            text = self.lines[n - 1]
            start = within.column - 1 if n == within.line else 0
            stop = within.end_column - 1 if n == within.end_line else len(text)
            segment = text[:stop]
            if not skipped:
                m = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*").match(segment, start)
                if not m:
                    return None
                start, skipped = m.end(), True
            comment = segment.find("#", start)
            m = pattern.search(segment if comment < 0 else segment[:comment], start)
            if m:
                return Where(n, m.start() + 1, n, m.end() + 1)
        return None

    def dotted(self, at: Where | None, names: list[str]) -> Where | None:
        """The range of `a.b.c` starting at `at` (a setting's target)."""
        if at is None or not 0 < at.line <= len(self.lines):
            return None
        pattern = r"\s*".join(re.escape(n) for n in _interleave(names, "."))
        m = re.compile(pattern).match(self.lines[at.line - 1], at.column - 1)
        return Where(at.line, m.start() + 1, at.line, m.end() + 1) if m else None


def _interleave(names: list[str], sep: str) -> list[str]:
    out: list[str] = []
    for n in names:
        out += [sep, n] if out else [n]
    return out


def _count(n: int) -> str:
    return f"{n:,} parameter{'s' if n != 1 else ''}"


class _Indexer:
    def __init__(self, checked: CheckedFacts):
        self.c = checked
        self.spec = checked.spec
        self.text = _Text(checked.text)
        self.out = SpecIndex()
        self.globals: dict[str, Fact] = {}          # let name -> its definition fact
        self.columns: dict[str, Fact] = {}          # data column name -> definition fact (when written in the spec)
        self.settings: dict[str, Fact] = {}         # block.key -> the setting's fact
        self.models: dict[str, Fact] = {}

    # ------------------------------------------------------------ entry

    def run(self) -> SpecIndex:
        out = self.out
        out.lets = dict(self.c.lets)
        out.models = [m.name for m in self.spec.models]
        if self.c.data:
            out.data_facts = dict(self.c.data.facts)
            out.columns = dict(self.c.data.columns)
        for mf in self.c.models.values():
            out.layer_names += [s.name for s in mf.stages]
        self.declare_globals()
        for item in self.spec.items:
            if isinstance(item, ast.Let):
                self.let(item)
            elif isinstance(item, ast.Block):
                self.block(item)
            elif isinstance(item, ast.Model):
                self.model(item)
            elif isinstance(item, ast.Variants):
                self.variants(item)
        return out

    def add(self, fact: Fact | None) -> Fact | None:
        if fact is not None and fact.where is not None:
            self.out.facts.append(fact)
        return fact

    def reference(self, definition: Fact, at: Where | None) -> None:
        if at is not None:
            self.add(replace(definition, where=at))

    # ------------------------------------------------------------ definitions first: lets, models, columns, settings

    def declare_globals(self) -> None:
        variants = {}
        for v in self.spec.variants:
            for s in v.settings:
                variants.setdefault(s.key, []).append(f"{v.name}: {format_expr(s.value)}")
        for let in self.spec.lets:
            if let.name in self.globals:
                continue
            at = self.text.find(where(let.span), let.name, skip_first_word=True)
            if at is None:
                continue
            value = self.c.lets.get(let.name)
            written = format_expr(let.value)
            shown = value if value is not None else written
            origin = f"Set by `let` at line {let.span.line}" + (
                f" as `{written}`" if value is not None and written != value else "")
            if let.name in variants:
                origin += "; in the variants: " + ", ".join(f"`{v}`" for v in variants[let.name])
            origin += "."
            self.globals[let.name] = Fact(at, "let", let.name, f"let {let.name}", value=shown, origin=origin,
                                          definition=at)
        for m in self.spec.models:
            at = self.text.find(where(m.span), m.name, skip_first_word=True)
            if at is None or m.name in self.models:
                continue
            mf = self.c.models.get(m.name)
            self.models[m.name] = Fact(at, "model", m.name, f"model {m.name}",
                                       input=", ".join(f"{n}: {t}" for n, t in mf.inputs.items()) if mf else None,
                                       output=", ".join(mf.outputs) if mf and mf.outputs else None,
                                       params=mf.params if mf else None,
                                       doc="Trained by the `train` block." if m.name == self.c.trained_model else None,
                                       definition=at)
        for item in self.spec.items:
            if isinstance(item, ast.Block):
                for s in item.settings:
                    at = self.text.dotted(where(s.span), s.target)
                    if at is not None:
                        self.settings.setdefault(f"{item.block}.{s.key}", Fact(
                            at, "setting", f"{item.block}.{s.key}", f"{item.block}.{s.key}",
                            value=format_expr(s.value), definition=at))
        data = self.spec.block("data")
        source = next((s for s in data.settings if s.key == "source"), None) if data else None
        if source is not None and isinstance(source.value, ast.Call) and isinstance(source.value.func, ast.Var):
            entry = catalogs.lookup(source.value.func.name, ("data source",))
            if entry is not None and entry.columns:
                for a in source.value.args:
                    if a.name and entry.arg(a.name) is None:
                        at = self.text.find(where(a.span), a.name)
                        if at is not None:
                            self.columns.setdefault(a.name, Fact(
                                at, "column", a.name, f"column {a.name}",
                                output=self.c.data.columns.get(a.name) if self.c.data else None,
                                value=format_expr(a.value), origin=f"A column of `{entry.name}(...)` in the data block.",
                                definition=at))

    # ------------------------------------------------------------ top-level items

    def let(self, let: ast.Let) -> None:
        fact = self.globals.get(let.name)
        if fact is not None and fact.where.line >= let.span.line and let.span.end_line >= fact.where.line:
            self.add(fact)
            self.out.symbols.append(Symbol(let.name, "let", where(let.span), fact.where, fact.value or ""))
        self.expr(let.value, self.globals, None)

    def block(self, item: ast.Block) -> None:
        children = []
        for s in item.settings:
            key = f"{item.block}.{s.key}"
            fact = self.settings.get(key)
            at = self.text.dotted(where(s.span), s.target)
            if fact is not None and at is not None:
                self.add(replace(fact, where=at))
                children.append(Symbol(s.key, "setting", where(s.span), at, format_expr(s.value)))
            if item.block == "init":
                self.init_target(s, at)
            catalog = "initialiser" if item.block == "init" else catalogs.SETTING_CATALOGS.get((item.block, s.key))
            scope = self.loss_scope() if (item.block, s.key) == ("train", "loss") else \
                {**self.globals, **self.columns} if item.block == "data" else self.globals
            if (item.block, s.key) == ("train", "model") and isinstance(s.value, ast.Var) and s.value.name in self.models:
                self.reference(self.models[s.value.name], where(s.value.span))
                continue
            self.expr(s.value, scope, catalog)
        at = where(item.span)
        if at is not None:
            name_at = Where(at.line, at.column, at.line, at.column + len(item.block))
            self.out.symbols.append(Symbol(item.block, "block settings", at, name_at, "", tuple(children)))

    def init_target(self, s: ast.Setting, at: Where | None) -> None:
        if at is None or len(s.target) < 2:
            return
        layer = ".".join(s.target[:-1])
        model = self.c.models.get(self.c.trained_model or "")
        if model is None:
            return
        exact = [st for st in model.stages if st.name == layer]
        kind = [st for st in model.stages if st.layer == layer]
        matched = exact or kind
        if not matched:
            return
        names = ", ".join(st.name for st in matched)
        self.add(Fact(at, "init target", s.key, f"{s.key}",
                      value=f"{s.target[-1]} of {names}",
                      origin=f"In model `{model.name}`.", definition=matched[0].where if exact else None))

    def variants(self, item: ast.Variants) -> None:
        children = []
        for v in item.variants:
            at = self.text.find(where(v.span), v.name)
            for s in v.settings:
                target = self.text.dotted(where(s.span), s.target)
                definition = self.globals.get(s.key) if len(s.target) == 1 else self.settings.get(s.key)
                if definition is not None and target is not None:
                    self.reference(replace(definition, title=f"{definition.title} (variant {v.name}: "
                                                              f"{format_expr(s.value)})"), target)
                self.expr(s.value, self.globals, None)
            if at is not None:
                detail = ", ".join(f"{s.key} = {format_expr(s.value)}" for s in v.settings)
                children.append(Symbol(v.name, "variant", where(v.span), at, detail))
                self.add(Fact(at, "variant", v.name, f"variant {v.name}", value=detail,
                              doc=f"`dslc train --variant {v.name}` trains it; `dslc check` checks every variant.",
                              definition=at))
        at = where(item.span)
        if at is not None:
            self.out.symbols.append(Symbol("variants", "variants", at,
                                           Where(at.line, at.column, at.line, at.column + 8), "", tuple(children)))

    def loss_scope(self) -> dict[str, Fact]:
        """Names a loss reads: output, the targets, the trained model's inputs and params, lets."""
        scope = dict(self.globals)
        model = next((m for m in self.spec.models if m.name == self.c.trained_model), None)
        mf = self.c.models.get(self.c.trained_model or "")
        if model is None:
            return scope
        scope.update(self.columns)
        inner = self.model_scope(model, mf)
        scope.update({n: f for n, f in inner.items() if f.kind in ("input", "param")})
        defined = self.models.get(model.name)
        if defined is not None:
            outputs = ", ".join(mf.outputs) if mf else None
            scope["output"] = replace(defined, kind="output", name="output", title=f"output of model {model.name}",
                                      output=outputs, input=None, params=None, doc="`output[i]` is output i of a model with several.")
        if self.c.data:      # targets the source names itself (mnist's `label`): defined by the source call
            for n, t in self.c.data.targets:
                if n not in scope:
                    scope[n] = Fact(defined.where if defined else Where(1, 1, 1, 1), "column", n, f"target {n}",
                                    output=t, origin=f"Given by the data source `{self.c.data.source}`.",
                                    definition=self.c.data.where)
            if len(self.c.data.targets) == 1 and "target" not in scope:
                n, t = self.c.data.targets[0]
                scope["target"] = Fact(Where(1, 1, 1, 1), "column", "target", "target", output=t,
                                       origin=f"The data's only target, `{n}`.",
                                       definition=scope[n].definition if n in scope else self.c.data.where)
        return scope

    # ------------------------------------------------------------ models

    def model_scope(self, m: ast.Model, mf: ModelFacts | None) -> dict[str, Fact]:
        scope: dict[str, Fact] = {}
        for inp in m.inputs:
            at = self.text.find(where(inp.span), inp.name)
            if at is None or inp.name in scope:
                continue
            declared = mf.inputs.get(inp.name) if mf else None
            given = mf.data_inputs.get(inp.name) if mf else None
            scope[inp.name] = Fact(at, "input", inp.name, f"input {inp.name} of model {m.name}", output=declared,
                                   origin=f"The data gives `{given[0]}`: `{given[1]}`." if given else None, definition=at)
        for st in m.body:
            if isinstance(st, ast.Param):
                at = self.text.find(where(st.span), st.name, skip_first_word=True)
                if at is None or st.name in scope:
                    continue
                typ, n = mf.param_types.get(st.name, (None, None)) if mf else (None, None)
                scope[st.name] = Fact(at, "param", st.name, f"param {st.name}", output=typ, params=n,
                                      value=format_expr(st.value), doc="Trained; starts at this value.", definition=at)
            elif isinstance(st, ast.BlockDef):
                at = self.text.find(where(st.span), st.name, skip_first_word=True)
                if at is None or st.name in scope:
                    continue
                bf = mf.blocks.get(st.name) if mf else None
                scope[st.name] = Fact(at, "block", st.name, f"block {st.name}",
                                      input=bf.input if bf else None, output=bf.output if bf else None,
                                      params=bf.params if bf else None,
                                      doc=f"{len(st.stages)} stage{'s' if len(st.stages) != 1 else ''}; one set of "
                                          "weights, however often it is called.", definition=at)
            elif isinstance(st, ast.Binding):
                at = self.text.find(where(st.span), st.name)
                if at is None or st.name in scope:
                    continue
                shape = self.call_output(st.value, mf)
                scope[st.name] = Fact(at, "binding", st.name, f"{st.name} = {format_expr(st.value)}", output=shape,
                                      definition=at)
        return scope

    def call_output(self, e, mf: ModelFacts | None) -> str | None:
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Var) and mf and e.func.name in mf.blocks:
            return mf.blocks[e.func.name].output
        return None

    def model(self, m: ast.Model) -> None:
        mf = self.c.models.get(m.name)
        scope = {**self.globals, **self.model_scope(m, mf)}
        self.out.blocks[m.name] = [st.name for st in m.body if isinstance(st, ast.BlockDef)]
        fact = self.models.get(m.name)
        if fact is not None and where(m.span) and where(m.span).encloses(fact.where):
            self.add(fact)
        children: list[Symbol] = []
        for inp in m.inputs:
            f = scope.get(inp.name)
            if f is not None and f.kind == "input" and where(inp.span):
                self.add(f)
                children.append(Symbol(inp.name, "input", where(inp.span), f.where, f.output or ""))
        for st in m.body:
            children += self.statement(st, scope, mf)
        at = where(m.span)
        if fact is not None and at is not None:
            detail = f"{fact.input or ''} -> {fact.output or '?'}"
            self.out.symbols.append(Symbol(m.name, "model", at, fact.where, detail, tuple(children)))

    def statement(self, st, scope: dict[str, Fact], mf: ModelFacts | None) -> list[Symbol]:
        at = where(st.span)
        if isinstance(st, (ast.LayerStage, ast.EachStage, ast.RepeatStage, ast.ResidualStage)):
            return self.stage(st, scope, mf, in_block=None)
        if isinstance(st, ast.Unpack):
            self.expr(st.value, scope, None, mf)
            return []
        if isinstance(st, (ast.Param, ast.BlockDef, ast.Binding)):
            fact = scope.get(st.name)
            own = fact is not None and at is not None and at.encloses(fact.where)
            if own:
                self.add(fact)
            children: list[Symbol] = []
            if isinstance(st, ast.Param):
                self.expr(st.value, self.globals, "initialiser")
            elif isinstance(st, ast.BlockDef):
                for inner in st.stages:
                    children += self.stage(inner, scope, mf, in_block=st.name)
            else:
                self.expr(st.value, scope, None, mf)
                out = self.call_output(st.value, mf)
                if out and at:
                    self.hint(at, out, f"{st.name}: {out}")
            if not own:
                return []
            kind = {ast.Param: "param", ast.BlockDef: "block", ast.Binding: "binding"}[type(st)]
            detail = (f"{dims(fact.input)} -> {dims(fact.output)}" if kind == "block" and fact.input
                      else fact.output or fact.value or "")
            return [Symbol(st.name, kind, at, fact.where, detail, tuple(children))]
        if isinstance(st, ast.Return):
            for v in st.values:
                self.expr(v, scope, None, mf)
            if at is None:
                return []
            outs = ", ".join(mf.outputs) if mf and mf.outputs else ""
            return [Symbol("return", "return", at, Where(at.line, at.column, at.line, at.column + 6), outs)]
        return []

    def stage(self, st, scope: dict[str, Fact], mf: ModelFacts | None, in_block: str | None) -> list[Symbol]:
        at = where(st.span)
        if at is None:
            return []
        if isinstance(st, ast.ResidualStage):
            return [sym for inner in st.stages for sym in self.stage(inner, scope, mf, in_block)]
        if isinstance(st, ast.RepeatStage):
            self.expr(st.count, self.globals, None)
            return self.stage(st.stage, scope, mf, in_block)
        inner = st.stage if isinstance(st, ast.EachStage) else st
        while isinstance(inner, ast.EachStage):
            inner = inner.stage
        facts = mf.stage_at(at) if mf else None
        block = scope.get(inner.name) if in_block is None and not isinstance(st, ast.EachStage) else None
        name_at = where(inner.name_span) or at
        if block is not None and block.kind == "block":
            bf = mf.blocks.get(inner.name) if mf else None
            self.add(replace(block, kind="block call", where=at, title=f"block {inner.name} used as a stage"))
            self.reference(replace(block, title=f"block {inner.name}"), name_at)
            if bf:
                self.hint(at, bf.output, f"{inner.name}: {bf.output}")
            return [Symbol(inner.name, "block call", at, name_at, dims(bf.output) if bf else "")]
        entry = catalogs.lookup(inner.name, ("layer",))
        doc = entry.doc if entry is not None and entry.catalog == "layer" else None
        if facts is not None:
            self.add(Fact(at, "layer", facts.name, f"{facts.name} · {facts.text}", input=facts.input,
                          output=facts.output, params=facts.params, doc=doc,
                          definition=None))
            self.hint(at, facts.output, f"{facts.name} → {facts.output}")
        elif entry is not None and entry.catalog == "layer":
            self.add(Fact(name_at, "catalog", entry.name, entry.signature, doc=entry.doc))
        self.arguments(inner.args, entry if entry is not None and entry.catalog == "layer" else None, self.globals)
        if facts is None:
            return []
        return [Symbol(facts.name, "layer", at, name_at, dims(facts.output))]

    def hint(self, at: Where, type_text: str, tooltip: str) -> None:
        self.out.shape_hints.append(ShapeHint(at.end_line, at.end_column, dims(type_text), tooltip))

    # ------------------------------------------------------------ expressions

    def arguments(self, args: list[ast.Argument], entry, scope: dict[str, Fact]) -> None:
        for a in args:
            if a.name and entry is not None:
                info = entry.arg(a.name)
                at = self.text.find(where(a.span), a.name)
                if info is not None and at is not None:
                    default = "required" if info.required else f"default {info.default}"
                    choices = f"; one of {', '.join(info.choices)}" if info.choices else ""
                    self.add(Fact(at, "argument", a.name, f"argument {a.name} of {entry.name}",
                                  doc=f"Takes {info.kind}; {default}{choices}."))
            self.expr(a.value, scope, None)

    def expr(self, e, scope: dict[str, Fact], catalog: str | None, mf: ModelFacts | None = None) -> None:
        if isinstance(e, ast.Var):
            if e.name in scope:
                self.reference(scope[e.name], where(e.span))
            elif catalog is not None:
                entry = catalogs.lookup(e.name, (catalog,))
                if entry is not None and entry.catalog in (catalog, "function"):
                    self.add(Fact(where(e.span), "catalog", entry.name, entry.signature, doc=f"*{entry.catalog}* — {entry.doc}"))
        elif isinstance(e, ast.Attr):
            if isinstance(e.value, ast.Var) and e.value.name == "data":
                self.data_fact(e)
            else:
                self.expr(e.value, scope, None, mf)
        elif isinstance(e, ast.Call):
            entry = None
            if isinstance(e.func, ast.Var):
                name = e.func.name
                if name in scope and scope[name].kind == "block":
                    block = scope[name]
                    out = self.call_output(e, mf)
                    self.add(replace(block, kind="block call", where=where(e.span), title=f"{name}(...)",
                                     output=out or block.output))
                    self.reference(block, where(e.func.span))
                else:
                    entry = catalogs.lookup(name, (catalog,) if catalog else ())   # the setting's catalog first
                    if entry is not None:
                        self.add(Fact(where(e.func.span), "catalog", entry.name, entry.signature,
                                      doc=f"*{entry.catalog}* — {entry.doc}"))
            else:
                self.expr(e.func, scope, None, mf)
            self.arguments(e.args, entry, scope)
        elif isinstance(e, ast.BinOp):
            self.expr(e.left, scope, catalog, mf)
            self.expr(e.right, scope, catalog, mf)
        elif isinstance(e, ast.Neg):
            self.expr(e.operand, scope, catalog, mf)
        elif isinstance(e, ast.Index):
            self.expr(e.value, scope, catalog, mf)
            self.expr(e.index, scope, None, mf)
        elif isinstance(e, ast.ListExpr):
            for i in e.items:
                self.expr(i, scope, catalog, mf)

    def data_fact(self, e: ast.Attr) -> None:
        at = where(e.span)
        if at is None:
            return
        data = self.c.data
        source = self.settings.get("data.source")
        value = data.facts.get(e.name) if data else None
        if data is None:
            origin = "No `data` block gives it." if self.spec.block("data") is None else "The `data` block has errors."
        elif value is None:
            origin = f"`{data.source}` gives no fact '{e.name}'" + (
                f"; it gives {', '.join(sorted(data.facts))}." if data.facts else ".")
        else:
            origin = f"From `source = {source.value}`" if source else f"From the data source `{data.source}`"
            origin += f" at line {data.where.line}." if data.where else "."
        self.add(Fact(at, "data fact", f"data.{e.name}", f"data.{e.name}", value=value, origin=origin,
                      doc=DATA_FACT_DOCS.get(e.name), definition=data.where if data else None))


def index(checked: CheckedFacts) -> SpecIndex:
    """Everything an editor asks about a checked spec, by position. Empty when the spec does not parse."""
    if checked.spec is None:
        return SpecIndex()
    return _Indexer(checked).run()
