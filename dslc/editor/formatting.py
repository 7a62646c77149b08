"""Formatting for editors: `dslc fmt`'s canonical text, with the spec's comments carried over.

`dslc fmt` prints the syntax tree (dsl/format.py), which has no comments. An
editor must never delete what a user wrote, so `format_text` puts every comment
back next to the statement it belonged to: a comment that ends a line stays at
the end of the line where that statement ends; a comment on a line of its own
goes on its own line before the statement that followed it (or at the end of
the file). Each node of the original tree is matched with its twin in the
formatted text (same tree: `parse(fmt(s)) == parse(s)`), so statements are
found by structure, not by guessing. The result is checked to parse to the same
tree and to hold every comment; otherwise formatting is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dslc.dsl import ast
from dslc.compiler.layers import LINE_STARTERS
from dslc.dsl.format import format_spec
from dslc.dsl.parse import parse

_LEXEME = re.compile(r'(?P<comment>#[^\n]*)|(?P<string>"(?:\\.|[^"\\\n])*"?)|(?P<newline>\n)|[^#"\n]+')

# The nodes a comment can belong to: statements, settings, arguments, items.
_ANCHORS = (ast.Let, ast.Block, ast.Setting, ast.Model, ast.Input, ast.Param, ast.BlockDef, ast.Binding,
            ast.Return, ast.LayerStage, ast.EachStage, ast.Variants, ast.Variant, ast.Argument)


class FormatRefused(Exception):
    """The spec cannot be formatted as it is (it does not parse, or comments could not be kept)."""


@dataclass(frozen=True)
class Comment:
    line: int           # 1-based
    column: int
    text: str
    own_line: bool      # nothing but blanks before it on its line


def comments(text: str) -> list[Comment]:
    out, line, line_start, code_on_line = [], 1, 0, False
    for m in _LEXEME.finditer(text):
        if m.lastgroup == "newline":
            line, line_start, code_on_line = line + 1, m.end(), False
        elif m.lastgroup == "comment":
            out.append(Comment(line, m.start() - line_start + 1, m.group().rstrip(), not code_on_line))
        elif m.group().strip():
            code_on_line = True
    return out


def _pairs(a, b, out: list) -> None:
    """(original span, formatted span) of every anchor node, walking both trees together."""
    if isinstance(a, ast.Node):
        if isinstance(a, _ANCHORS) and a.span.known and b.span.known:
            out.append((a.span, b.span))
        for name in ast.fields_of(a):
            _pairs(getattr(a, name), getattr(b, name), out)
    elif isinstance(a, list):
        for x, y in zip(a, b):
            _pairs(x, y, out)


def format_text(text: str, path: str = "<spec>") -> str:
    """The canonical text of the spec, comments kept. Raises SpecError when it does not parse."""
    original = parse(text, path)
    formatted = format_spec(original, LINE_STARTERS)
    notes = comments(text)
    if not notes:
        return formatted
    pairs: list = []
    _pairs(original, parse(formatted, path), pairs)
    lines = formatted.split("\n")
    source_lines = text.split("\n")
    before: dict[int, list[str]] = {}     # formatted line (0-based) -> comment lines to put above it
    below: dict[int, list[str]] = {}      # formatted line -> comment lines to put under it
    after: dict[int, list[str]] = {}      # formatted line -> comments to put at its end
    tail: list[str] = []
    for c in notes:
        if c.own_line:
            following = [(o, f) for o, f in pairs if (o.line, o.column) > (c.line, c.column)]
            nxt = min(following, key=lambda p: (p[0].line, p[0].column, -p[0].end_line, -p[0].end_column)) \
                if following else None
            if nxt is not None and not _closes_between(source_lines, c, nxt[0]):
                before.setdefault(nxt[1].line - 1, []).append(c.text)
                continue
            preceding = [(o, f) for o, f in pairs if (o.end_line, o.end_column) <= (c.line, c.column)]
            end = ast.Span(line=len(source_lines), column=len(source_lines[-1]) + 1)
            if not preceding or (nxt is None and not _closes_between(source_lines, c, end)):
                tail.append(c.text)
                continue
            # the last thing in its block: under the statement it followed, inside the block
            _, f = max(preceding, key=lambda p: (p[0].end_line, p[0].end_column, p[0].line, p[0].column))
            below.setdefault(f.end_line - 1, []).append(c.text)
        else:
            ending = [(o, f) for o, f in pairs if o.end_line == c.line and o.end_column <= c.column]
            if ending:
                _, f = max(ending, key=lambda p: (p[0].end_column, p[0].end_line - p[0].line, -p[0].column))
                after.setdefault(f.end_line - 1, []).append(c.text)
            else:   # after an opening bracket, say: the line of the next statement
                following = [(o, f) for o, f in pairs if (o.line, o.column) > (c.line, c.column)]
                target = min(following, key=lambda p: (p[0].line, p[0].column))[1].line - 1 if following else None
                if target is None:
                    tail.append(c.text)
                else:
                    after.setdefault(target, []).append(c.text)
    out: list[str] = []
    for n, line in enumerate(lines):
        indent = line[:len(line) - len(line.lstrip())]
        out += [indent + t for t in before.get(n, [])]
        out.append(line + "".join("  " + t for t in after.get(n, [])) if after.get(n) and line.strip() else line)
        out += [indent + t for t in below.get(n, [])]
    while out and out[-1] == "":
        out.pop()
    result = "\n".join(out + tail) + "\n"
    if parse(result, path) != original or sorted(c.text for c in comments(result)) != sorted(c.text for c in notes):
        raise FormatRefused("the comments could not be kept in place")
    return result


def _closes_between(lines: list[str], c: Comment, start) -> bool:
    """Whether a `}` closes a block between the comment and the statement that follows it."""
    between = lines[c.line:start.line - 1] + [lines[start.line - 1][:start.column - 1]]
    return any("}" in _LEXEME.sub(lambda m: "" if m.lastgroup in ("comment", "string") else m.group(), text)
               for text in between)
