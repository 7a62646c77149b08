"""Hover text: a spec_index.Fact as Markdown, the way the language server shows it."""

from __future__ import annotations

from .spec_index import Fact


def _code(text: str) -> str:
    return f"`{text}`"


def markdown(f: Fact) -> str:
    head = f.title or f.name
    if f.kind in ("let", "param", "column", "setting") and f.value is not None:
        head = f"{head} = {f.value}" if f.kind != "setting" else f"{f.name} = {f.value}"
    elif f.kind == "data fact":
        head = f"{f.name} = {f.value}" if f.value is not None else f"{f.name} (unknown)"
    elif f.kind == "init target" and f.value:
        head = f"{f.name}: {f.value}"
    lines = [f"```dlspec\n{head}\n```"]
    shapes = []
    if f.input is not None and f.output is not None:
        arrow = "inputs" if f.kind == "model" else "input"
        shapes.append(f"{arrow} {_code(f.input)} → output{'s' if f.kind == 'model' and ',' in f.output else ''} "
                      f"{_code(f.output)}")
    elif f.output is not None:
        shapes.append(f"type {_code(f.output)}")
    if f.params is not None:
        shapes.append(f"{f.params:,} parameter{'s' if f.params != 1 else ''}")
    if shapes:
        lines.append(" · ".join(shapes))
    if f.kind == "variant" and f.value:
        lines.append(f"sets {f.value}")
    if f.origin:
        lines.append(f.origin)
    if f.doc:
        lines.append(f.doc)
    return "\n\n".join(lines)
