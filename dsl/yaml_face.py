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
from .parse import MAX_NESTING, MAX_NUMBER_DIGITS, parse

BLOCKS = ("data", "train", "export", "init")
MAX_VALUES = 100_000
_SCALARS = yaml.constructor.SafeConstructor()   # safe_load's scalar rules, without a parser per value
TOP_KEYS = ("let", "models", "variants") + BLOCKS


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
        if not isinstance(node, yaml.MappingNode):
            self.fail(f"{what} must be a mapping", node)
        pairs = []
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                self.fail(f"keys in {what} must be names", k)
            pairs.append((k, v))
        return pairs

    def text(self, node, start: str):
        """Parse a YAML string scalar as text syntax, with spans in the YAML file (once per node:
        an alias repeats the same node)."""
        if not isinstance(node, yaml.ScalarNode):
            self.fail("expected a single value here", node)
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
            v = int(_SCALARS.construct_yaml_int(node))
            return ast.Neg(operand=ast.Number(value=-v, span=span), span=span) if v < 0 else ast.Number(value=v, span=span)
        if tag.endswith(":float"):
            v = float(_SCALARS.construct_yaml_float(node))
            if v != v or v in (float("inf"), float("-inf")):
                self.fail("numbers must be finite", node)
            return ast.Neg(operand=ast.Number(value=-v, span=span), span=span) if v < 0 else ast.Number(value=v, span=span)
        if tag.endswith(":bool"):
            return ast.Bool(value=bool(_SCALARS.construct_yaml_bool(node)), span=span)
        if tag.endswith(":null"):
            self.fail("a value is missing here", node)
        return self.text(node, "expr")

    def name(self, node, what: str) -> str:
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

    def spec(self, text: str) -> ast.Spec:
        try:
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
        items: list = []
        for key, node in self.mapping(root, "a YAML spec"):
            if key.value == "let":
                items += [ast.Let(name=self.name(k, "a variable"), value=self.expr(v), span=self.span(k))
                          for k, v in self.mapping(node, "let")]
            elif key.value in BLOCKS:
                items.append(ast.Block(block=key.value, settings=self.settings(node, key.value), span=self.span(key)))
            elif key.value == "models":
                items += [self.model(k, v) for k, v in self.mapping(node, "models")]
            elif key.value == "variants":
                variants = [ast.Variant(name=self.name(k, "a variant's name"), settings=self.settings(v, k.value), span=self.span(k))
                            for k, v in self.mapping(node, "variants")]
                items.append(ast.Variants(variants=variants, span=self.span(key)))
            else:
                from .diagnostics import did_you_mean
                self.fail(f"unknown top-level key '{key.value}'", key, did_you_mean(key.value, TOP_KEYS))
        return ast.Spec(items=items)


def from_yaml(text: str, path: str = "<spec.yaml>") -> ast.Spec:
    return _Reader(text, path).spec(text)
