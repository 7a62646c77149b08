"""The canonical text form of a spec (`dslc fmt`).

`format_spec(parse(s))` is idempotent and `parse(format_spec(parse(s))) == parse(s)`.
Expressions get the fewest parentheses that keep their meaning.
"""

from __future__ import annotations

import json

from . import ast

INDENT = "    "
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "**": 4, "postfix": 5}


def format_number(value: int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = repr(float(value))
    if text in ("inf", "nan", "-inf"):
        raise ValueError(f"{text} cannot be written in a spec")
    return text


def _precedence(e) -> int:
    if isinstance(e, ast.BinOp):
        return _PRECEDENCE[e.op]
    if isinstance(e, ast.Neg):
        return _PRECEDENCE["neg"]
    if isinstance(e, ast.Number) and (e.value < 0 or str(e.value).startswith("-")):
        return _PRECEDENCE["neg"]
    return 9


def format_expr(e) -> str:
    if isinstance(e, ast.Number):
        return format_number(e.value)
    if isinstance(e, ast.String):
        return json.dumps(e.value, ensure_ascii=False)
    if isinstance(e, ast.Bool):
        return "true" if e.value else "false"
    if isinstance(e, ast.Var):
        return e.name
    if isinstance(e, ast.Attr):
        return f"{_wrap(e.value, _PRECEDENCE['postfix'])}.{e.name}"
    if isinstance(e, ast.Call):
        return f"{_wrap(e.func, _PRECEDENCE['postfix'])}({format_args(e.args)})"
    if isinstance(e, ast.Index):
        return f"{_wrap(e.value, _PRECEDENCE['postfix'])}[{format_expr(e.index)}]"
    if isinstance(e, ast.ListExpr):
        return "[" + ", ".join(format_expr(i) for i in e.items) + "]"
    if isinstance(e, ast.Neg):
        return "-" + _wrap(e.operand, _PRECEDENCE["neg"])
    if isinstance(e, ast.BinOp):
        p = _PRECEDENCE[e.op]
        if e.op == "**":   # right-associative; its left side is a postfix expression
            left, right = _wrap(e.left, _PRECEDENCE["postfix"]), _wrap(e.right, _PRECEDENCE["neg"])
        else:              # left-associative
            left, right = _wrap(e.left, p), _wrap(e.right, p + 1)
        return f"{left} {e.op} {right}"
    raise TypeError(f"not an expression: {e!r}")


def _wrap(e, min_precedence: int) -> str:
    text = format_expr(e)
    return f"({text})" if _precedence(e) < min_precedence else text


def format_args(args: list[ast.Argument]) -> str:
    return ", ".join(f"{a.name}={format_expr(a.value)}" if a.name else format_expr(a.value) for a in args)


def format_type(t: ast.TensorType) -> str:
    return f"{t.dtype}[{', '.join(str(d) for d in t.dims)}]"


def format_stage(s) -> str:
    if isinstance(s, ast.EachStage):
        return "each " + format_stage(s.stage)
    return f"{s.name}({format_args(s.args)})" if s.args else s.name


def _format_stages(stages, indent: str) -> list[str]:
    """Stages on lines of their own, breaking after each activation-like bare stage run."""
    lines, current = [], []
    for s in stages:
        current.append(format_stage(s))
        if sum(len(c) + 1 for c in current) > 60:
            lines.append(indent + " ".join(current))
            current = []
    if current:
        lines.append(indent + " ".join(current))
    return lines


def _format_model(m: ast.Model) -> list[str]:
    inputs = ", ".join(f"{i.name}: {format_type(i.type)}" for i in m.inputs)
    out = [f"model {m.name}({inputs}) {{"]
    run: list = []

    def flush():
        out.extend(_format_stages(run, INDENT))
        run.clear()

    for st in m.body:
        if isinstance(st, (ast.LayerStage, ast.EachStage)):
            run.append(st)
            continue
        flush()
        if isinstance(st, ast.Param):
            typ = f": {format_type(st.type)}" if st.type else ""
            out.append(f"{INDENT}param {st.name}{typ} = {format_expr(st.value)}")
        elif isinstance(st, ast.BlockDef):
            out.append(f"{INDENT}block {st.name} {{")
            out.extend(_format_stages(st.stages, INDENT * 2))
            out.append(f"{INDENT}}}")
        elif isinstance(st, ast.Binding):
            out.append(f"{INDENT}{st.name} = {format_expr(st.value)}")
        elif isinstance(st, ast.Return):
            out.append(f"{INDENT}return " + ", ".join(format_expr(v) for v in st.values))
    flush()
    out.append("}")
    return out


def format_setting(s: ast.Setting) -> str:
    return f"{s.key} = {format_expr(s.value)}"


def format_spec(spec: ast.Spec) -> str:
    chunks: list[list[str]] = []
    lets: list[str] = []
    for item in spec.items:
        if isinstance(item, ast.Let):
            lets.append(f"let {item.name} = {format_expr(item.value)}")
            continue
        if lets:
            chunks.append(lets)
            lets = []
        if isinstance(item, ast.Block):
            chunks.append([f"{item.block} {{"] + [INDENT + format_setting(s) for s in item.settings] + ["}"])
        elif isinstance(item, ast.Model):
            chunks.append(_format_model(item))
        elif isinstance(item, ast.Variants):
            body = [f"{INDENT}{v.name}: " + ", ".join(format_setting(s) for s in v.settings) for v in item.variants]
            chunks.append(["variants {"] + body + ["}"])
    if lets:
        chunks.append(lets)
    return "\n\n".join("\n".join(c) for c in chunks) + "\n"
