"""Parse .dlspec text into the syntax tree (dsl.ast), with located errors.

`parse(text, path)` returns a `Spec` or raises `SpecError`. The grammar is
`dlspec.lark` beside this file; the same parser also reads single expressions,
stages and tensor types for the YAML face.
"""

from __future__ import annotations

import dataclasses

import re
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError

from . import ast
from dslc.errors import SpecError
from .diagnostics import Diagnostic, Source, did_you_mean

GRAMMAR = Path(__file__).with_name("dlspec.lark")
MAX_SPEC_BYTES = 1_000_000
MAX_NESTING = 64
MAX_NUMBER_DIGITS = 300
BOM = "\ufeff"
INVISIBLE = {"\u200b": "zero-width space U+200B", "\u200c": "zero-width non-joiner U+200C",
             "\u200d": "zero-width joiner U+200D", "\u2060": "word joiner U+2060", "\u00a0": "no-break space U+00A0"}

TOKEN_NAMES = {
    "NAME": "a name", "NUMBER": "a number", "INT": "a whole number", "STRING": "a string",
    "$END": "the end of the file",
}


@lru_cache(maxsize=None)
def _parser() -> Lark:
    return Lark(GRAMMAR.read_text(), parser="lalr", propagate_positions=True,
                start=["start", "expr", "stage", "tensor_type"], cache=True)


def _span(meta) -> ast.Span:
    if getattr(meta, "empty", True):
        return ast.NO_SPAN
    return ast.Span(line=meta.line, column=meta.column, end_line=meta.end_line, end_column=meta.end_column)


def _token_span(tok: Token) -> ast.Span:
    return ast.Span(line=tok.line, column=tok.column, end_line=tok.end_line, end_column=tok.end_column)


def _number(text: str, span: ast.Span) -> int | float:
    too_long = len(text) > MAX_NUMBER_DIGITS
    value = float("inf") if too_long else int(text) if re.fullmatch(r"[0-9]+", text) else float(text)
    if value == float("inf"):
        shown = text if not too_long else text[:20] + "..."
        raise SpecError([Diagnostic(f"the number {shown} is too large", span, "numbers must be finite")])
    return value


_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body)


@v_args(meta=True)
class _ToAst(Transformer):
    """Turns Lark's parse tree into dsl.ast nodes, one method per grammar rule."""

    def start(self, meta, items):
        return ast.Spec(items=items, span=_span(meta))

    def let_decl(self, meta, c):
        return ast.Let(name=str(c[0]), value=c[1], span=_span(meta))

    def block_kind(self, meta, c):
        return str(c[0])

    def block(self, meta, c):
        return ast.Block(block=c[0], settings=c[1:], span=_span(meta))

    def target(self, meta, c):
        return [str(t) for t in c]

    def setting(self, meta, c):
        return ast.Setting(target=c[0], value=c[1], span=_span(meta))

    def variants(self, meta, c):
        return ast.Variants(variants=c, span=_span(meta))

    def variant(self, meta, c):
        return ast.Variant(name=str(c[0]), settings=c[1:], span=_span(meta))

    def model(self, meta, c):
        inputs = [x for x in c[1:] if isinstance(x, ast.Input)]
        body = [x for x in c[1:] if x is not None and not isinstance(x, ast.Input)]
        return ast.Model(name=str(c[0]), inputs=inputs, body=body, span=_span(meta))

    def input_decl(self, meta, c):
        return ast.Input(name=str(c[0]), type=c[1], span=_span(meta))

    def tensor_type(self, meta, c):
        dims = [d for d in c[1:] if d is not None]
        return ast.TensorType(dtype=str(c[0]), dims=dims, span=_span(meta))

    def dim(self, meta, c):
        tok = c[0]
        return _number(str(tok), _token_span(tok)) if tok.type == "INT" else str(tok)

    def param_decl(self, meta, c):
        return ast.Param(name=str(c[0]), type=c[1], value=c[2], span=_span(meta))

    def block_def(self, meta, c):
        params = c[1] if c[1] is not None else []
        return ast.BlockDef(name=str(c[0]), params=params, stages=[x for x in c[2:] if x is not None],
                            span=_span(meta))

    def block_params(self, meta, c):
        return [str(t) for t in c if t is not None]

    def binding(self, meta, c):
        return ast.Binding(name=str(c[0]), value=c[1], span=_span(meta))

    def unpack(self, meta, c):
        return ast.Unpack(names=[str(t) for t in c[:-1]], value=c[-1], span=_span(meta))

    def return_stmt(self, meta, c):
        return ast.Return(values=c, span=_span(meta))

    def layer_stage(self, meta, c):
        args = c[1] if c[1] is not None else []
        return ast.LayerStage(name=str(c[0]), args=args, span=_span(meta), name_span=_token_span(c[0]))

    def each_stage(self, meta, c):
        return ast.EachStage(stage=c[0], span=_span(meta))

    def repeat_stage(self, meta, c):
        return ast.RepeatStage(count=c[0], stage=c[1], span=_span(meta))

    def residual_stage(self, meta, c):
        return ast.ResidualStage(stages=[x for x in c if x is not None], span=_span(meta))

    def arguments(self, meta, c):
        return [a for a in c if a is not None]

    def positional(self, meta, c):
        return ast.Argument(value=c[0], span=_span(meta))

    def keyword(self, meta, c):
        return ast.Argument(name=str(c[0]), value=c[1], span=_span(meta))

    def _binop(self, op, meta, c):
        return ast.BinOp(op=op, left=c[0], right=c[1], span=_span(meta))

    def add(self, meta, c):
        return self._binop("+", meta, c)

    def sub(self, meta, c):
        return self._binop("-", meta, c)

    def mul(self, meta, c):
        return self._binop("*", meta, c)

    def div(self, meta, c):
        return self._binop("/", meta, c)

    def pow(self, meta, c):
        return self._binop("**", meta, c)

    def matmul(self, meta, c):
        return self._binop("@", meta, c)

    def neg(self, meta, c):
        return ast.Neg(operand=c[0], span=_span(meta))

    def call(self, meta, c):
        return ast.Call(func=c[0], args=c[1] or [], span=_span(meta))

    def index(self, meta, c):
        items = [x for x in c[1:] if x is not None]
        if len(items) == 1 and not isinstance(items[0], ast.Slice):
            return ast.Index(value=c[0], index=items[0], span=_span(meta))
        return ast.Subscript(value=c[0], items=items, span=_span(meta))

    def slice(self, meta, c):
        start, stop, step = (list(c) + [None, None, None])[:3]
        return ast.Slice(start=start, stop=stop, step=step, span=_span(meta))

    def attr(self, meta, c):
        return ast.Attr(value=c[0], name=str(c[1]), span=_span(meta))

    def number(self, meta, c):
        return ast.Number(value=_number(str(c[0]), _span(meta)), span=_span(meta))

    def string(self, meta, c):
        return ast.String(value=_unescape(str(c[0])[1:-1]), span=_span(meta))

    def true(self, meta, c):
        return ast.Bool(value=True, span=_span(meta))

    def false(self, meta, c):
        return ast.Bool(value=False, span=_span(meta))

    def var(self, meta, c):
        return ast.Var(name=str(c[0]), span=_span(meta))

    def list(self, meta, c):
        return ast.ListExpr(items=[x for x in c if x is not None], span=_span(meta))


def _describe(terminal: str) -> str:
    if terminal in TOKEN_NAMES:
        return TOKEN_NAMES[terminal]
    for t in _parser().terminals:
        if t.name == terminal and t.pattern.type == "str":
            return f"'{t.pattern.value}'"
    return terminal.lower()


def _unclosed_bracket(text: str) -> tuple[str, int, int] | None:
    """The innermost bracket left open at the end of the text, with its line and column."""
    stack: list[tuple[str, int, int]] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    line, col, in_string, in_comment = 1, 0, False, False
    prev = ""
    for ch in text:
        col += 1
        if ch == "\n":
            line, col, in_comment, in_string = line + 1, 0, False, False
        elif in_comment:
            pass
        elif in_string:
            if ch == '"' and prev != "\\":
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "#":
            in_comment = True
        elif ch in "([{":
            stack.append((ch, line, col))
        elif ch in pairs and stack and stack[-1][0] == pairs[ch]:
            stack.pop()
        prev = ch
    return stack[-1] if stack else None


def _syntax_error(err: UnexpectedInput, text: str, source: Source) -> SpecError:
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        span = ast.Span(line=err.line, column=err.column, end_line=err.line, end_column=err.column + 1)
        hint = None
        if ch == "'":
            hint = 'strings use double quotes: "like this"'
        elif ch == '"':
            hint = "this string is not closed on its line"
        elif ch in "{}[]()":
            hint = "brackets must be balanced"
        elif ch == BOM:
            hint = ("a byte-order mark (U+FEFF) in the middle of the text, e.g. where two files were joined; "
                    "delete it")
        elif ch in INVISIBLE:
            hint = f"an invisible character ({INVISIBLE[ch]}), perhaps pasted from a web page; delete it"
        return SpecError([Diagnostic(f"unexpected character {ch!r}", span, hint, source=source)])

    token = getattr(err, "token", None)
    expected = sorted({_describe(t) for t in getattr(err, "expected", set()) or getattr(err, "accepts", set())})
    at_end = isinstance(err, UnexpectedEOF) or (token is not None and token.type == "$END")
    if at_end:
        lines = text.rstrip().splitlines() or [""]
        span = ast.Span(line=len(lines), column=len(lines[-1]) + 1, end_line=len(lines), end_column=len(lines[-1]) + 2)
        message = "unexpected end of file"
        open_ = _unclosed_bracket(text)
        hint = (f"the '{open_[0]}' opened at line {open_[1]}, column {open_[2]} is never closed"
                if open_ else "the spec stops in the middle of a statement")
    else:
        span = _token_span(token)
        message = f"unexpected {'name' if token.type == 'NAME' else 'token'} '{token}'"
        hint = None
        inside = _unclosed_bracket(text[:token.start_pos]) if token.start_pos is not None else None
        if str(token) in ("}", ")", "]"):
            closes = inside is not None and inside[0] == {"}": "{", ")": "(", "]": "["}[str(token)]
            if closes:
                hint = f"something is missing before the '{token}'"
            elif inside is not None and inside[0] in "([":
                hint = (f"the '{inside[0]}' opened at line {inside[1]}, column {inside[2]} is not closed "
                        f"before this '{token}'")
            else:
                hint = f"the '{token}' closes nothing here, or something before it is missing"
        elif inside and inside[0] in "([" and "','" in expected and str(token) != "=":
            hint = ("arguments are separated by commas: f(a, b, name=value)" if inside[0] == "("
                    else "list items are separated by commas: [a, b, c]")
        elif str(token) == "=" and "','" in expected:
            hint = "keyword arguments are written name=value inside a call's parentheses"
        elif token.type in ("NUMBER", "STRING", "INT") and "a name" in expected:
            hint = "a stage is a layer name, optionally with arguments in parentheses"
        elif "'='" in expected:
            hint = "a setting is written `name = value`"
    if expected and len(expected) <= 10:
        message += "; expected " + ", ".join(expected)
    if hint is None and not at_end:
        if expected and "'model'" in expected:
            keywords = [k.strip("'") for k in expected if k.startswith("'") and k.strip("'").isidentifier()]
            hint = ((did_you_mean(str(token), keywords) if token.type == "NAME" else None)
                    or "a spec is made of `let`, `data`, `model`, `train`, `export`, `init` and `variants`")
        else:
            hint = "check the statement before this point"
    return SpecError([Diagnostic(message, span, hint, source=source)])


# A spec past these is refused with a located error before Lark sees it: parsing (~40 µs a token here) and the
# recursive tree walks stay bounded, so any spec within MAX_SPEC_BYTES checks in well under 5 s.
MAX_TOKENS = 50_000
MAX_OPERATORS = 100        # in one expression: `a + b + ...` nests one level per operator
_SCAN = re.compile(r'(?P<nl>\n)|(?P<skip>#[^\n]*|"(?:[^"\\\n]|\\.)*"|[ \t\r]+)|(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<open>[(\[{])|(?P<close>[)\]}])'
                   r'|(?P<op>\*\*|[-+*/@.])|(?P<sep>[,;=:])|(?P<word>[^\s#"()\[\]{},;=:*/@.+-]+)|(?P<other>.)')


def _beyond_limits(text: str) -> tuple[str, int, int, str] | None:
    """(message, line, column, hint) for the first place the text passes a limit, or None."""
    tokens = operators = 0
    line, line_start = 1, 0
    previous = ""
    opened: list[str] = []
    for m in _SCAN.finditer(text):
        kind = m.lastgroup
        if kind == "nl":
            line, line_start = line + 1, m.end()
            if not opened or opened[-1] == "{":          # a new statement
                operators = 0
            continue
        if kind == "skip":
            continue
        tokens += 1
        column = m.start() - line_start + 1
        if tokens > MAX_TOKENS:
            return (f"spec has more than {MAX_TOKENS:,} tokens", line, column,
                    "a spec describes a model: write repeated stages as repeat(N) STAGE; data belongs in a data file")
        if kind == "open":
            opened.append(m.group())
            if len(opened) > MAX_NESTING:
                return f"brackets nested more than {MAX_NESTING} deep", line, column, "simplify the expression"
            if m.group() == "{":
                operators = 0
            elif previous == "close":            # f(x)(y), a[0][1]: one more level of the same expression
                operators += 1
        elif kind == "close":
            if opened:
                opened.pop()
            if m.group() == "}":
                operators = 0
        elif kind == "op":
            operators += 1
        elif kind == "sep":
            operators = 0
        if operators > MAX_OPERATORS:
            return (f"more than {MAX_OPERATORS} operators in one expression", line, column,
                    "split it into parts with `let` variables")
        previous = kind
    return None


def parse(text: str, path: str = "<spec>", start: str = "start"):
    """Parse spec text (or, with `start`, one expression, stage or tensor type)."""
    source = Source(path, text)
    if len(text.encode("utf-8", "replace")) > MAX_SPEC_BYTES:
        raise SpecError([Diagnostic(f"spec file is larger than {MAX_SPEC_BYTES // 1000} kB", ast.Span(line=1, column=1, end_line=1, end_column=2),
                                    "a spec describes a model; data belongs in a data file", source=source)])
    beyond = _beyond_limits(text)
    if beyond:
        message, line, col, hint = beyond
        raise SpecError([Diagnostic(message, ast.Span(line=line, column=col, end_line=line, end_column=col + 1),
                                    hint, source=source)])
    try:
        tree = _parser().parse(text, start=start)
        return _ToAst().transform(tree)
    except UnexpectedInput as err:
        raise _syntax_error(err, text, source) from None
    except VisitError as err:
        if isinstance(err.orig_exc, SpecError):
            raise err.orig_exc.with_source(source) from None
        if isinstance(err.orig_exc, RecursionError):
            raise SpecError([Diagnostic("spec is nested too deeply", source=source)]) from None
        raise SpecError([Diagnostic(f"cannot read this spec: {err.orig_exc}", source=source)]) from None
    except RecursionError:
        raise SpecError([Diagnostic("spec is nested too deeply", source=source)]) from None


def relocate(node, origin: Source):
    """A copy of a parsed node whose spans point into `origin` (text other than the spec, e.g. --set)."""
    updates = {}
    for f in dataclasses.fields(node):
        name = f.name
        value = getattr(node, name)
        if isinstance(value, ast.Span):
            updates[name] = dataclasses.replace(value, origin=origin) if value.known else value
        elif isinstance(value, ast.Node):
            updates[name] = relocate(value, origin)
        elif isinstance(value, list):
            updates[name] = [relocate(v, origin) if isinstance(v, ast.Node) else v for v in value]
    return dataclasses.replace(node, **updates)
