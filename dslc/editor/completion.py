"""Completion: what may be written at a position of a spec, read from the text before the cursor.

The text being edited rarely parses, so the context comes from a small scan of
the text up to the cursor (brackets, the block or call they belong to, the
setting being written) and the names come from the catalogs (editor.catalogs)
and from the last checked version of the spec (lets, blocks, data facts,
columns, layer names). `complete(text, line, column, known)` returns plain
`Item`s; the language server turns them into LSP completion items.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import catalogs
from .spec_index import DATA_FACT_DOCS, SpecIndex

_TOKEN = re.compile(r"""
    (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\\n])*"?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<newline>\n)
  | (?P<punct>[{}()\[\],;:=.])
  | (?P<space>[ \t\r]+)
  | (?P<other>.)
""", re.VERBOSE)

DTYPES = ("f32", "f16", "bf16", "f64", "i64", "i32", "bool")
MODEL_KEYWORDS = ("each", "param", "block", "return")


@dataclass(frozen=True)
class Item:
    label: str
    kind: str                 # layer, block, keyword, setting, argument, value, variable, catalog name, data fact, type
    detail: str = ""
    doc: str = ""
    insert: str | None = None  # text to insert when it differs from the label
    sort: str = ""            # sort key: groups the most likely first


@dataclass
class _Frame:
    bracket: str              # "{", "(", "["
    owner: str = ""           # data/train/... for "{", the callee for "(", "" otherwise
    model: str | None = None
    statement: list[tuple[str, str]] = field(default_factory=list)   # (kind, text) tokens since the statement began


@dataclass
class Context:
    where: str                # top, key, value, stage, argument, data fact, type, expression, none
    block: str | None = None  # the enclosing `{` block: data, train, export, init, variants, model, block
    key: str | None = None    # the setting being written, in value position
    call: str | None = None   # the callee, inside its parentheses
    arg: str | None = None    # the keyword argument whose value is being written
    given: tuple[str, ...] = ()
    positional: int = 0       # positional arguments written before the cursor
    after_each: bool = False
    model: str | None = None
    prefix: str = ""


def _statement_key(tokens: list[tuple[str, str]]) -> str | None:
    """`a.b` from the tokens of `a.b = ...` (a setting), None when not a setting."""
    parts, expect_name = [], True
    for kind, text in tokens:
        if text == "=":
            return ".".join(parts) if parts else None
        if expect_name and kind == "name":
            parts.append(text)
            expect_name = False
        elif not expect_name and text == ".":
            expect_name = True
        else:
            return None
    return None


def context(text: str, offset: int) -> Context:
    """Where the cursor at `offset` (a character index into `text`) stands."""
    before = text[:offset]
    m = re.search(r"[A-Za-z_][A-Za-z0-9_]*\Z", before)
    prefix = m.group(0) if m else ""
    body = before[:len(before) - len(prefix)]
    stack: list[_Frame] = [_Frame("")]
    last: tuple[str, str] = ("", "")
    for tok in _TOKEN.finditer(body):
        kind = tok.lastgroup
        value = tok.group()
        if kind == "space":
            continue
        if kind == "comment":
            last = ("comment", value)
            continue
        if kind == "string" and (len(value) < 2 or not value.endswith('"') or value.endswith('\\"')):
            last = ("open string", value)
            continue
        top = stack[-1]
        if kind == "newline":
            if top.bracket in ("", "{") and top.owner not in ("model", "block"):
                key_done = any(t == "=" for _, t in top.statement)
                if key_done and _balanced(top.statement):
                    top.statement = []
            continue
        if value in "([{" and kind == "punct":
            owner, model = "", top.model
            words = [t for k, t in top.statement if k == "name"]
            if value == "{":
                head = words[0] if words else ""
                owner = head if head in ("data", "train", "export", "init", "variants", "model", "block") else "?"
                if head == "model" and len(words) > 1:
                    model = words[1]
            elif value == "(":
                owner = last[1] if last[0] == "name" else ""
                if top.statement and top.statement[0][1] == "model" and len(top.statement) == 2:
                    owner, model = "model inputs", last[1]
            elif value == "[" and last[0] == "name" and last[1] in DTYPES:
                owner = "type"
            top.statement.append(("punct", value))
            stack.append(_Frame(value, owner, model))
            last = ("punct", value)
            continue
        if value in ")]}" and kind == "punct":
            if len(stack) > 1:
                stack.pop()
            parent = stack[-1]
            parent.statement.append(("punct", value))
            if value == "}":
                parent.statement = []
            last = ("punct", value)
            continue
        if value == ";" and top.bracket in ("", "{"):
            top.statement = []
            last = ("punct", value)
            continue
        if top.owner == "variants" and value in (":", ","):
            top.statement = [("punct", ":")]      # a setting of this variant begins
            last = ("punct", value)
            continue
        top.statement.append((kind, value))
        last = (kind, value)

    if last[0] in ("comment", "open string"):
        return Context("none", prefix=prefix)
    top = stack[-1]
    model = next((f.model for f in reversed(stack) if f.model), None)
    block = next((f.owner for f in reversed(stack) if f.bracket == "{"), None)
    if last == ("punct", ".") and len(top.statement) >= 2 and top.statement[-2] == ("name", "data"):
        return Context("data fact", block, prefix=prefix, model=model)
    if top.bracket == "[" and top.owner == "type":
        return Context("none", block, prefix=prefix, model=model)
    if top.bracket == "(":
        if top.owner == "model inputs":
            if last == ("punct", ":"):
                return Context("type", "model", prefix=prefix, model=model)
            return Context("none", "model", prefix=prefix, model=model)
        given = tuple(t for i, (k, t) in enumerate(top.statement) if k == "name"
                      and i + 1 < len(top.statement) and top.statement[i + 1][1] == "=")
        segments = _split(top.statement, ",")[:-1]       # the arguments before the one being written
        positional = sum(1 for seg in segments if seg and not (len(seg) > 1 and seg[1][1] == "="))
        at_name = last[1] in ("(", ",")
        current = top.statement[_last_index(top.statement, ",") + 1:]
        arg = current[0][1] if len(current) >= 2 and current[0][0] == "name" and current[1][1] == "=" else None
        return Context("argument" if at_name else "value", block, key=_outer_key(stack), call=top.owner, arg=arg,
                       given=given, positional=positional, prefix=prefix, model=model)
    if top.bracket == "[":
        return Context("value", block, key=_outer_key(stack), prefix=prefix, model=model)
    if top.bracket == "":
        if top.statement and top.statement[0][1] == "let" and any(t == "=" for _, t in top.statement):
            return Context("value", None, prefix=prefix)
        if top.statement and last[1] not in ("}",):
            return Context("none", None, prefix=prefix)
        return Context("top", None, prefix=prefix)
    # inside a `{` block
    if top.owner in ("model", "block"):
        words = [t for _, t in top.statement]
        if "=" in words:
            if words and words[0] == "param":
                return Context("value", top.owner, key="param", prefix=prefix, model=model)
            return Context("expression", top.owner, prefix=prefix, model=model)
        if words and words[0] == "param":
            return Context("type" if last[1] == ":" else "none", top.owner, prefix=prefix, model=model)
        if words and words[-1] in ("block",):
            return Context("none", top.owner, prefix=prefix, model=model)
        if words and words[0] == "return":
            return Context("expression", top.owner, prefix=prefix, model=model)
        return Context("stage", top.owner, after_each=bool(words) and words[-1] == "each", prefix=prefix, model=model)
    if top.owner == "variants":
        if not top.statement or top.statement[0] != ("punct", ":"):
            return Context("none", top.owner, prefix=prefix)          # a variant's name
        top.statement = top.statement[1:]
    key = _statement_key(top.statement)
    if key is not None:
        return Context("value", top.owner, key=key, prefix=prefix, model=model)
    if top.statement:
        return Context("none", top.owner, prefix=prefix, model=model)
    return Context("key", top.owner, prefix=prefix, model=model)


def _split(tokens: list[tuple[str, str]], text: str) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = [[]]
    for tok in tokens:
        if tok[1] == text:
            out.append([])
        else:
            out[-1].append(tok)
    return out


def _last_index(tokens: list[tuple[str, str]], text: str) -> int:
    return max((i for i, (_, t) in enumerate(tokens) if t == text), default=-1)


def _balanced(tokens) -> bool:
    depth = 0
    for _, t in tokens:
        depth += t in "([" if len(t) == 1 else 0
        depth -= t in ")]" if len(t) == 1 else 0
    return depth <= 0


def _outer_key(stack: list[_Frame]) -> str | None:
    for f in reversed(stack[:-1]):
        if f.bracket == "{" or f.bracket == "":
            return _statement_key(f.statement)
    return None


# ---------------------------------------------------------------- items


def _entry_item(e: catalogs.Entry, sort: str) -> Item:
    return Item(e.name, e.catalog, e.signature, e.doc, sort=sort + e.name)


def _names(known: SpecIndex) -> list[Item]:
    items = [Item(n, "variable", f"let {n} = {v}", sort="1" + n) for n, v in known.lets.items()]
    items.append(Item("data", "variable", "the data source's facts: data.classes, data.vocab, ...", sort="2data"))
    return items


def _value_items(ctx: Context, known: SpecIndex) -> list[Item]:
    block, key = ctx.block, ctx.key
    if ctx.call:   # an argument's value inside a call
        entry = catalogs.lookup(ctx.call)
        arg = entry.arg(ctx.arg) if entry is not None and ctx.arg else None
        choices = arg.choices if arg is not None else ()
        if arg is not None and arg.kind == "true or false":
            choices = ("true", "false")
        return [Item(c, "value", f"{ctx.call}({ctx.arg}=...)", sort="0" + c) for c in choices] + _names(known)
    if block == "model" and key == "param":
        return [_entry_item(e, "0") for e in catalogs.entries("initialiser")] + _names(known)
    if block == "init":
        return [_entry_item(e, "0") for e in catalogs.entries("initialiser")]
    if block == "variants":
        if not key or "." not in key:
            return _names(known)
        block, key = key.split(".", 1)       # a block setting: offer what the block itself would
    items: list[Item] = []
    catalog = catalogs.SETTING_CATALOGS.get((block, key)) if key else None
    if catalog:
        items += [_entry_item(e, "0") for e in catalogs.entries(catalog)]
    for choice in catalogs.SETTING_CHOICES.get((block, key), ()):
        items.append(Item(choice, "value", sort="0" + choice))
    if (block, key) == ("train", "model"):
        items += [Item(m, "model", sort="0" + m) for m in known.models]
    if (block, key) == ("train", "loss"):
        items += [Item(n, "variable", "the model's output", sort="1output") for n in ("output",)]
        items += [_entry_item(e, "2") for e in catalogs.entries("function")]
    if block == "data" and key in ("inputs", "targets"):
        items += [Item(n, "column", t, sort="0" + n) for n, t in known.columns.items()]
    return items + _names(known)


def complete(text: str, offset: int, known: SpecIndex) -> tuple[list[Item], str]:
    """The items that fit at `offset`, and the prefix they replace (the word being typed)."""
    ctx = context(text, offset)
    items: list[Item] = []
    if ctx.where == "top":
        items = [Item(k, "keyword", sort="0" + k) for k in catalogs.KEYWORDS + catalogs.BLOCKS]
    elif ctx.where == "key":
        if ctx.block == "init":
            kinds = sorted({n.split(".")[-1].rsplit("_", 1)[0] for n in known.layer_names})
            for n in kinds + known.layer_names:
                items += [Item(f"{n}.{p}", "setting", f"the {p} of {'every ' + n if n in kinds else n}",
                               sort=("0" if n in kinds else "1") + n + p) for p in ("weight", "bias")]
        elif ctx.block == "variants":
            items = [Item(n, "variable", f"let {n} = {v}", sort="0" + n) for n, v in known.lets.items()]
            for block, keys in catalogs.setting_keys().items():
                items += [Item(f"{block}.{k}", "setting", sort="1" + block + k) for k in keys]
        else:
            items = [Item(k, "setting", f"{ctx.block} setting", sort="0" + k)
                     for k in catalogs.setting_keys().get(ctx.block or "", ())]
    elif ctx.where == "stage":
        items = [_entry_item(e, "0") for e in catalogs.entries("layer")]
        if not ctx.after_each:
            items += [Item(b, "block", "block of this model", sort="0" + b)
                      for b in known.blocks.get(ctx.model or "", [])]
            items += [Item(k, "keyword", sort="1" + k) for k in MODEL_KEYWORDS]
    elif ctx.where == "expression":
        items = [Item(b, "block", "block of this model", sort="0" + b) for b in known.blocks.get(ctx.model or "", [])]
        items += [_entry_item(e, "1") for e in catalogs.entries("function")]
        items += [Item(n, "variable", f"let {n} = {v}", sort="2" + n) for n, v in known.lets.items()]
    elif ctx.where == "argument":
        entry = catalogs.lookup(ctx.call or "")
        if entry is not None:
            filled = [a.name for a in entry.args if not a.variadic][:ctx.positional]
            for a in entry.args:
                if a.name in ctx.given or a.name in filled or a.variadic:
                    continue
                default = "required" if a.required else f"default {a.default}"
                items.append(Item(f"{a.name}=", "argument", f"{a.kind}, {default}", insert=f"{a.name}=",
                                  sort=("0" if a.required else "1") + f"{entry.args.index(a):03d}"))
        items += _names(known)
    elif ctx.where == "value":
        items = _value_items(ctx, known)
    elif ctx.where == "data fact":
        items = [Item(n, "data fact", f"= {v}", DATA_FACT_DOCS.get(n, ""), sort="0" + n)
                 for n, v in known.data_facts.items()]
    elif ctx.where == "type":
        items = [Item(t, "type", sort=f"{i}") for i, t in enumerate(DTYPES)]
    return items, ctx.prefix
