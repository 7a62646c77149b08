"""Diagnostics: errors and warnings that point into a spec file.

Every mistake in a spec becomes a `Diagnostic` and is shown as

    path:line:col: error: message
       3 |     lienar(10)
         |     ^^^^^^
      hint: did you mean 'linear'?

`dslc.errors.SpecError` carries one or more of them; the command line prints them and
exits with status 2. Nothing here imports torch.
"""

from __future__ import annotations

import functools

import difflib
import json
from dataclasses import dataclass, field
from typing import Iterable, Literal

from dslc.errors import SpecError

from .ast import NO_SPAN, Span


@dataclass(frozen=True)
class Source:
    """A spec's text and the path it is reported under."""

    path: str
    text: str

    @functools.cached_property
    def lines(self) -> list[str]:
        """The text's lines, split once (a spec with thousands of diagnostics shows thousands of them)."""
        return self.text.split("\n")

    def line(self, number: int) -> str:
        """Line `number` (1-based), counted as the parser counts them: only '\\n' ends a line."""
        lines = self.lines
        return lines[number - 1].rstrip("\r") if 0 < number <= len(lines) else ""


@dataclass
class Diagnostic:
    message: str
    span: Span = NO_SPAN
    hint: str | None = None
    severity: Literal["error", "warning"] = "error"
    source: Source | None = None

    @property
    def where(self) -> Source | None:
        """The text the span points into: the spec, or an override's own text."""
        return self.span.origin or self.source

    def render(self) -> str:
        source = self.where
        path = source.path if source else "<spec>"
        line, col = (self.span.line, self.span.column) if self.span.known else (1, 1)
        out = [f"{path}:{line}:{col}: {self.severity}: {self.message}"]
        if source and self.span.known:
            text = source.line(line).rstrip("\n").expandtabs(1)
            if text.strip():
                end = self.span.end_column if self.span.end_line == line else len(text) + 1
                width = max(1, min(end, len(text) + 1) - col)
                text, col, width = _clip(text, col, width)
                gutter = f"{line:>5} | "
                out.append(gutter + text)
                out.append(" " * (len(gutter) - 2) + "| " + " " * (col - 1) + "^" * width)
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)

    def as_json(self) -> dict:
        return {
            "file": self.where.path if self.where else None,
            "line": self.span.line, "column": self.span.column,
            "end_line": self.span.end_line, "end_column": self.span.end_column,
            "severity": self.severity, "message": self.message, "hint": self.hint,
        }


@dataclass
class Report:
    """Collects diagnostics while checking, so that every error is reported at once."""

    source: Source | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, message: str, span: Span = NO_SPAN, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(message, span, hint, "error", self.source))

    def warning(self, message: str, span: Span = NO_SPAN, hint: str | None = None) -> None:
        self.diagnostics.append(Diagnostic(message, span, hint, "warning", self.source))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    def raise_if_errors(self) -> None:
        if self.errors:
            raise SpecError(sorted(self.errors, key=lambda d: (d.span.line, d.span.column)))


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest known name, or listing the choices when few."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if 0 < len(choices) <= 12:
        return "expected one of: " + ", ".join(choices)
    return None


MAX_SHOWN = 100


def _clip(text: str, col: int, width: int) -> tuple[str, int, int]:
    """At most MAX_SHOWN characters of a long line, around the caret, marked with '...'."""
    if len(text) <= MAX_SHOWN:
        return text, col, width
    width = min(width, MAX_SHOWN // 2)
    start = max(0, min(col - 1 - MAX_SHOWN // 3, len(text) - MAX_SHOWN))
    shown = text[start:start + MAX_SHOWN]
    prefix = "..." if start > 0 else ""
    suffix = "..." if start + MAX_SHOWN < len(text) else ""
    return prefix + shown + suffix, col - start + len(prefix), width


def render_json(diagnostics: Iterable[Diagnostic]) -> str:
    return json.dumps([d.as_json() for d in diagnostics], indent=2)
