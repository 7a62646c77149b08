"""The YAML face of the language: the same syntax tree, written as YAML.

    let:    {lr: 0.001}
    data:   {source: 'mnist(root="data/mnist")', batch: 50}
    models:
      cnn:
        inputs: {image: 'f32[1, 28, 28]'}
        body:
          - conv2d(16, kernel=5, padding=2)
          - relu
          - {param: w, value: 1.0}
          - {block: encoder, stages: [linear(3), tanh]}
          - {bind: code, value: encoder(x)}
          - {return: [code, decoder(code)]}
    train:  {loss: cross_entropy, optimizer: adam(lr=lr)}
    init:   {linear.weight: 'uniform(-0.1, 0.1)'}
    variants: {overfit: {p: 0.0}, dropout: {p: 0.5}}

YAML numbers, booleans and lists are values; every YAML string is an
expression in the text syntax (so a string value is written with inner
quotes: `root: '"data"'`). Errors point at the YAML file's line and column.
"""

from __future__ import annotations

import yaml

from . import ast
from dslc.errors import SpecError
from .diagnostics import Diagnostic, Source
from .format import format_expr, format_stage, format_type
from .parse import MAX_NESTING, MAX_NUMBER_DIGITS, MAX_SPEC_BYTES, parse

BLOCKS = ("data", "train", "export", "init")
MAX_VALUES = 100_000
_SCALARS = yaml.constructor.SafeConstructor()   # safe_load's scalar rules, without a parser per value
TOP_KEYS = ("let", "models", "variants") + BLOCKS
MAX_YAML_DEPTH = MAX_NESTING + 8     # a spec's own structure (models: net: body: - return: [...]) plus expressions
CORE = "tag:yaml.org,2002:"
# The tags a spec may carry, written or implied: YAML's core schema. Any other (!!python/..., !!binary,
# !!timestamp, !custom) is refused, never constructed.
KNOWN_TAGS = {CORE + t for t in ("str", "int", "float", "bool", "null", "seq", "map")}
KIND_NAMES = {"int": "a whole number", "float": "a number", "bool": "true or false"}


# ---------------------------------------------------------------- writing


def _value(e):
    """An expression as a YAML value: plain numbers, booleans and lists stay YAML."""
    if isinstance(e, ast.Number):
        return e.value
    if isinstance(e, ast.Bool):
        return e.value
    if isinstance(e, ast.ListExpr):
        return [_value(i) for i in e.items]
    if isinstance(e, ast.Neg) and isinstance(e.operand, ast.Number) and e.operand.value > 0:   # -0 stays text
        return -e.operand.value
    return format_expr(e)


def _settings(settings: list[ast.Setting]) -> dict:
    return {s.key: _value(s.value) for s in settings}


def _body_item(st):
    if isinstance(st, (ast.LayerStage, ast.EachStage, ast.RepeatStage, ast.ResidualStage)):
        return format_stage(st)
    if isinstance(st, ast.Param):
        d = {"param": st.name}
        if st.type:
            d["type"] = format_type(st.type)
        d["value"] = _value(st.value)
        return d
    if isinstance(st, ast.BlockDef):
        d = {"block": st.name}
        if st.params:
            d["params"] = list(st.params)
        d["stages"] = [format_stage(s) for s in st.stages]
        return d
    if isinstance(st, ast.Binding):
        return {"bind": st.name, "value": _value(st.value)}
    if isinstance(st, ast.Unpack):
        return {"bind": list(st.names), "value": _value(st.value)}
    if isinstance(st, ast.Return):
        return {"return": [_value(v) for v in st.values]}
    raise TypeError(st)


def to_yaml(spec: ast.Spec) -> str:
    doc: dict = {}
    for item in spec.items:
        if isinstance(item, ast.Let):
            doc.setdefault("let", {})[item.name] = _value(item.value)
        elif isinstance(item, ast.Block):
            doc.setdefault(item.block, {}).update(_settings(item.settings))
        elif isinstance(item, ast.Model):
            doc.setdefault("models", {})[item.name] = {
                "inputs": {i.name: format_type(i.type) for i in item.inputs},
                "body": [_body_item(st) for st in item.body],
            }
        elif isinstance(item, ast.Variants):
            doc.setdefault("variants", {}).update({v.name: _settings(v.settings) for v in item.variants})
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100, allow_unicode=True)


# ---------------------------------------------------------------- reading


class _Reader:
    def __init__(self, text: str, path: str):
        self.source = Source(path, text)
        self.values = 0
        self.parsed: dict[tuple[int, str], object] = {}

    def span(self, node) -> ast.Span:
        s, e = node.start_mark, node.end_mark
        return ast.Span(line=s.line + 1, column=s.column + 1, end_line=e.line + 1, end_column=e.column + 1)

    def fail(self, message: str, node=None, hint: str | None = None):
        span = self.span(node) if node is not None else ast.Span(line=1, column=1, end_line=1, end_column=2)
        raise SpecError([Diagnostic(message, span, hint, source=self.source)])

    def mapping(self, node, what: str) -> list[tuple]:
        """The key/value node pairs of a mapping; a key given twice is an error (YAML would keep only one)."""
        self.known_tag(node)
        if not isinstance(node, yaml.MappingNode):
            if self.empty(node):
                self.fail(f"{what} is empty", node, "write its entries below it, indented, or remove it")
            self.fail(f"{what} must be a mapping", node)
        pairs, first = [], {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                self.fail(f"keys in {what} must be names", k)
            self.known_tag(k)
            if k.value in first:
                self.fail(f"'{k.value}' appears twice in {what}", k,
                          f"the first is at line {first[k.value].start_mark.line + 1}; YAML keeps only one of "
                          f"them, so remove the other")
            first[k.value] = k
            pairs.append((k, v))
        return pairs

    def known_tag(self, node) -> None:
        """Refuse explicit tags outside YAML's core schema (they are never constructed either way)."""
        if node.tag not in KNOWN_TAGS:
            self.fail(f"the YAML tag {node.tag.replace(CORE, '!!')} is not allowed in a spec", node,
                      "remove the tag: a spec's values are numbers, true/false, lists and expression text")

    @staticmethod
    def empty(node) -> bool:
        """A value left out (`key:` with nothing after it, or `~`/null)."""
        return isinstance(node, yaml.ScalarNode) and (node.tag == CORE + "null" or
                                                      (node.style is None and not node.value.strip()))

    def text(self, node, start: str):
        """Parse a YAML string scalar as text syntax, with spans in the YAML file (once per node:
        an alias repeats the same node)."""
        self.known_tag(node)
        if not isinstance(node, yaml.ScalarNode):
            self.fail("expected a single value here", node)
        if self.empty(node) or not node.value.strip():
            self.fail("a value is missing here", node, {"stage": "write a layer such as relu or linear(10)",
                                                       "tensor_type": "write a type such as 'f32[28, 28]'"}.get(start))
        key = (id(node), start)
        if key not in self.parsed:
            self.parsed[key] = self._parse_text(node, start)
        return self.parsed[key]

    def _parse_text(self, node, start: str):
        quote = 1 if node.style in ("'", '"') else 0
        m = node.start_mark
        padded = "\n" * m.line + " " * (m.column + quote) + node.value
        try:
            return parse(padded, self.source.path, start=start)
        except SpecError as err:
            for d in err.diagnostics:
                d.source = self.source
                if not quote and d.message.startswith("unexpected end of file"):   # YAML cut it at a comma
                    d.hint = "inside YAML's {...} or [...] a comma ends the value: quote the whole expression"
            raise SpecError(err.diagnostics) from None

    def expr(self, node, depth: int = 0):
        span = self.span(node)
        self.known_tag(node)
        self.values += 1
        if self.values > MAX_VALUES:        # aliases can repeat a list exponentially ("billion laughs")
            self.fail(f"the YAML spec holds more than {MAX_VALUES:,} values", node, "are aliases (*name) repeating it?")
        if isinstance(node, yaml.SequenceNode):
            if depth >= MAX_NESTING:
                self.fail(f"lists nested more than {MAX_NESTING} deep", node, "does an alias (*name) refer to itself?")
            return ast.ListExpr(items=[self.expr(n, depth + 1) for n in node.value], span=span)
        if isinstance(node, yaml.MappingNode):
            self.fail("expected a value, not a mapping", node, "write calls in text form: adam(lr=0.01)")
        tag = node.tag
        if (tag.endswith(":int") or tag.endswith(":float")) and len(node.value) > MAX_NUMBER_DIGITS:
            self.fail(f"the number {node.value[:20]}... is too large", node, "numbers must be finite")
        if tag.endswith(":int"):
            v = int(self.construct(node, "int"))
            return ast.Neg(operand=ast.Number(value=-v, span=span), span=span) if v < 0 else ast.Number(value=v, span=span)
        if tag.endswith(":float"):
            v = float(self.construct(node, "float"))
            if v != v or v in (float("inf"), float("-inf")):
                self.fail("numbers must be finite", node)
            return ast.Neg(operand=ast.Number(value=-v, span=span), span=span) if v < 0 else ast.Number(value=v, span=span)
        if tag.endswith(":bool"):
            return ast.Bool(value=bool(self.construct(node, "bool")), span=span)
        if tag.endswith(":null"):
            self.fail("a value is missing here", node)
        return self.text(node, "expr")

    def construct(self, node, kind: str):
        """A scalar as YAML's core schema reads it; `!!int abc` and the like are located errors."""
        try:
            return getattr(_SCALARS, f"construct_yaml_{kind}")(node)
        except (ValueError, TypeError, KeyError, IndexError, yaml.YAMLError):
            self.fail(f"'{node.value}' is not {KIND_NAMES[kind]}, as its tag !!{kind} says", node,
                      f"remove the tag, or write {KIND_NAMES[kind]}")

    def name(self, node, what: str) -> str:
        self.known_tag(node)
        if not isinstance(node, yaml.ScalarNode) or not node.value.isidentifier():
            self.fail(f"{what} must be a name", node)
        return node.value

    def settings(self, node, what: str) -> list[ast.Setting]:
        out = []
        for k, v in self.mapping(node, what):
            target = k.value.split(".")
            if not all(t.isidentifier() for t in target):
                self.fail(f"'{k.value}' is not a setting name", k)
            out.append(ast.Setting(target=target, value=self.expr(v), span=self.span(k)))
        return out

    def body_item(self, node):
        if isinstance(node, yaml.ScalarNode):
            return self.text(node, "stage")
        fields = {k.value: (k, v) for k, v in self.mapping(node, "a model statement")}
        span = self.span(node)
        kinds = [k for k in ("param", "block", "bind", "return") if k in fields]
        if len(kinds) != 1:
            self.fail("a model statement is a stage (text) or a mapping with one of param, block, bind, return", node)
        kind = kinds[0]
        allowed = {"param": {"param", "type", "value"}, "block": {"block", "params", "stages"},
                   "bind": {"bind", "value"}, "return": {"return"}}[kind]
        for key, (k, _) in fields.items():
            if key not in allowed:
                self.fail(f"unknown key '{key}' in a {kind} statement", k, "expected: " + ", ".join(sorted(allowed)))
        if kind == "return":
            v = fields["return"][1]
            values = [self.expr(n) for n in v.value] if isinstance(v, yaml.SequenceNode) else [self.expr(v)]
            return ast.Return(values=values, span=span)
        if kind == "block":
            stages = fields.get("stages", (None, None))[1]
            if not isinstance(stages, yaml.SequenceNode):
                self.fail("a block needs `stages:` with a list of stages", node)
            params = fields.get("params", (None, None))[1]
            if params is not None and not isinstance(params, yaml.SequenceNode):
                self.fail("a block's `params:` is a list of names", params)
            return ast.BlockDef(name=self.name(fields["block"][1], "a block's name"),
                                params=[self.name(n, "a block parameter") for n in (params.value if params else [])],
                                stages=[self.text(s, "stage") for s in stages.value], span=span)
        if "value" not in fields:
            self.fail(f"a {kind} statement needs `value:`", node)
        value = self.expr(fields["value"][1])
        if kind == "bind":
            target = fields["bind"][1]
            if isinstance(target, yaml.SequenceNode):
                return ast.Unpack(names=[self.name(n, "a binding's name") for n in target.value], value=value,
                                  span=span)
            return ast.Binding(name=self.name(target, "a binding's name"), value=value, span=span)
        typ = self.text(fields["type"][1], "tensor_type") if "type" in fields else None
        return ast.Param(name=self.name(fields["param"][1], "a param's name"), type=typ, value=value, span=span)

    def model(self, key, node) -> ast.Model:
        fields = {k.value: (k, v) for k, v in self.mapping(node, f"model {key.value}")}
        for name, (k, _) in fields.items():
            if name not in ("inputs", "body"):
                self.fail(f"unknown key '{name}' in a model", k, "a model has `inputs` and `body`")
        inputs = [ast.Input(name=self.name(k, "an input's name"), type=self.text(v, "tensor_type"), span=self.span(k))
                  for k, v in (self.mapping(fields["inputs"][1], "inputs") if "inputs" in fields else [])]
        body_node = fields.get("body", (None, None))[1]
        if not isinstance(body_node, yaml.SequenceNode):
            self.fail(f"model {key.value} needs `body:` with a list of statements", body_node or key,
                      "e.g. body: [flatten, linear(10)]")
        return ast.Model(name=self.name(key, "a model's name"), inputs=inputs,
                         body=[self.body_item(n) for n in body_node.value], span=self.span(key))

    def refuse_alias_bombs(self, root) -> None:
        """Count the values the tree expands to (aliases repeat nodes) before reading any: a "billion laughs"
        is refused at once, at the innermost value that is repeated past the limit."""
        sizes: dict[int, int] = {}

        def size(node) -> int:
            key = id(node)
            if key not in sizes:
                sizes[key] = 0                 # an alias of itself adds nothing here: the nesting limit meets it
                children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else
                            node.value if isinstance(node, yaml.SequenceNode) else [])
                sizes[key] = 1 + sum(size(n) for n in children)
            return sizes[key]

        node = root
        if size(node) <= MAX_VALUES:
            return
        while True:
            children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else
                        node.value if isinstance(node, yaml.SequenceNode) else [])
            bigger = next((n for n in children if sizes.get(id(n), 0) > MAX_VALUES), None)
            if bigger is None:
                break
            node = bigger
        self.fail(f"the YAML spec holds more than {MAX_VALUES:,} values", node, "are aliases (*name) repeating it?")

    def refuse_deep_nesting(self, text: str) -> None:
        """PyYAML composes nodes recursively: measure the nesting on its (flat) event stream first."""
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    span = ast.Span(line=event.start_mark.line + 1, column=event.start_mark.column + 1,
                                    end_line=event.start_mark.line + 1, end_column=event.start_mark.column + 2)
                    raise SpecError([Diagnostic(f"lists or mappings nested more than {MAX_YAML_DEPTH} deep", span,
                                                "simplify the value", source=self.source)])
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1

    def spec(self, text: str) -> ast.Spec:
        try:
            self.refuse_deep_nesting(text)
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            span = (ast.Span(line=mark.line + 1, column=mark.column + 1, end_line=mark.line + 1, end_column=mark.column + 2)
                    if mark else ast.NO_SPAN)
            context, where = getattr(err, "context", None), getattr(err, "context_mark", None)
            hint = (f"{context} at line {where.line + 1}, column {where.column + 1}" if context and where
                    else "check indentation and quoting")
            raise SpecError([Diagnostic(f"invalid YAML: {getattr(err, 'problem', None) or err}", span,
                                        hint, source=self.source)]) from None
        if root is None:
            return ast.Spec(items=[])
        self.refuse_alias_bombs(root)
        items: list = []
        for key, node in self.mapping(root, "a YAML spec"):
            if key.value == "let":
                items += [ast.Let(name=self.name(k, "a variable"), value=self.expr(v), span=self.span(k))
                          for k, v in self.mapping(node, "let")]
            elif key.value in BLOCKS:
                items.append(ast.Block(block=key.value, settings=self.settings(node, f"the {key.value} block"),
                                       span=self.span(key)))
            elif key.value == "models":
                items += [self.model(k, v) for k, v in self.mapping(node, "models")]
            elif key.value == "variants":
                variants = [ast.Variant(name=self.name(k, "a variant's name"),
                                        settings=self.settings(v, f"variant {k.value}"), span=self.span(k))
                            for k, v in self.mapping(node, "variants")]
                items.append(ast.Variants(variants=variants, span=self.span(key)))
            else:
                from .diagnostics import did_you_mean
                self.fail(f"unknown top-level key '{key.value}'", key, did_you_mean(key.value, TOP_KEYS))
        return ast.Spec(items=items)


def from_yaml(text: str, path: str = "<spec.yaml>") -> ast.Spec:
    reader = _Reader(text, path)
    if len(text) > MAX_SPEC_BYTES // 4 and len(text.encode("utf-8", "replace")) > MAX_SPEC_BYTES:
        reader.fail(f"spec file is larger than {MAX_SPEC_BYTES // 1000} kB",
                    hint="a spec describes a model; data belongs in a data file")
    return reader.spec(text)
