"""The canonical text form of a spec (`dslc fmt`).

`format_spec(parse(s))` is idempotent and `parse(format_spec(parse(s))) == parse(s)`.
Expressions get the fewest parentheses that keep their meaning.
"""

from __future__ import annotations

from . import ast

INDENT = "    "
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "@": 2, "neg": 3, "**": 4, "postfix": 5}


def format_number(value: int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = repr(float(value))
    if text in ("inf", "nan", "-inf"):
        raise ValueError(f"{text} cannot be written in a spec")
    return text


def format_string(value: str) -> str:
    """A string literal using only the escapes the grammar reads back: \\\\ \\" \\n."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


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
        return format_string(e.value)
    if isinstance(e, ast.Bool):
        return "true" if e.value else "false"
    if isinstance(e, ast.Var):
        return e.name
    if isinstance(e, ast.Attr):
        base = _wrap(e.value, _PRECEDENCE["postfix"])
        return f"({base}).{e.name}" if isinstance(e.value, ast.Number) else f"{base}.{e.name}"   # not `1.x`
    if isinstance(e, ast.Call):
        return f"{_wrap(e.func, _PRECEDENCE['postfix'])}({format_args(e.args)})"
    if isinstance(e, ast.Index):
        return f"{_wrap(e.value, _PRECEDENCE['postfix'])}[{format_expr(e.index)}]"
    if isinstance(e, ast.Subscript):
        return f"{_wrap(e.value, _PRECEDENCE['postfix'])}[{', '.join(_subscript(i) for i in e.items)}]"
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


def _subscript(item) -> str:
    if not isinstance(item, ast.Slice):
        return format_expr(item)
    text = ":".join("" if part is None else format_expr(part) for part in (item.start, item.stop))
    return text + (f":{format_expr(item.step)}" if item.step is not None else "")


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
    if isinstance(s, ast.RepeatStage):
        return f"repeat({format_expr(s.count)}) " + format_stage(s.stage)
    if isinstance(s, ast.ResidualStage):
        return "residual { " + " ".join(format_stage(x) for x in s.stages) + " }"
    return f"{s.name}({format_args(s.args)})" if s.args else s.name


MAX_LINE = 88


def _starts_line(stage, starters: frozenset[str]) -> bool:
    inner = stage
    while isinstance(inner, (ast.EachStage, ast.RepeatStage)):
        inner = inner.stage
    return isinstance(inner, ast.ResidualStage) or inner.name in starters


def _format_stages(stages, indent: str, starters: frozenset[str]) -> list[str]:
    """Stages on lines of their own: a new line before each of `starters` (the weighted or reshaping
    layers, and each block used as a stage) once the line has one, the activations, pooling and dropout
    that follow it staying beside it; long lines break before MAX_LINE."""
    lines: list[list[str]] = []
    starter_on_line = False
    for s in stages:
        text = format_stage(s)
        starts = _starts_line(s, starters)
        too_long = lines and len(indent) + len(" ".join(lines[-1] + [text])) > MAX_LINE
        if not lines or too_long or (starts and starter_on_line):
            lines.append([])
            starter_on_line = False
        lines[-1].append(text)
        starter_on_line = starter_on_line or starts
    return [indent + " ".join(line) for line in lines]


def _format_model(m: ast.Model, line_starters: frozenset[str]) -> list[str]:
    inputs = ", ".join(f"{i.name}: {format_type(i.type)}" for i in m.inputs)
    out = [f"model {m.name}({inputs}) {{"]
    blocks = line_starters | {st.name for st in m.body if isinstance(st, ast.BlockDef)}
    run: list = []

    def flush():
        out.extend(_format_stages(run, INDENT, blocks))
        run.clear()

    for st in m.body:
        if isinstance(st, (ast.LayerStage, ast.EachStage, ast.RepeatStage, ast.ResidualStage)):
            run.append(st)
            continue
        flush()
        if isinstance(st, ast.Param):
            typ = f": {format_type(st.type)}" if st.type else ""
            out.append(f"{INDENT}param {st.name}{typ} = {format_expr(st.value)}")
        elif isinstance(st, ast.BlockDef):
            params = f"({', '.join(st.params)})" if st.params else ""
            out.append(f"{INDENT}block {st.name}{params} {{")
            out.extend(_format_stages(st.stages, INDENT * 2, blocks))
            out.append(f"{INDENT}}}")
        elif isinstance(st, ast.Binding):
            out.append(f"{INDENT}{st.name} = {format_expr(st.value)}")
        elif isinstance(st, ast.Unpack):
            out.append(f"{INDENT}{', '.join(st.names)} = {format_expr(st.value)}")
        elif isinstance(st, ast.Return):
            out.append(f"{INDENT}return " + ", ".join(format_expr(v) for v in st.values))
    flush()
    out.append("}")
    return out


def format_setting(s: ast.Setting) -> str:
    return f"{s.key} = {format_expr(s.value)}"


def _setting_lines(s: ast.Setting, width: int, indent: str) -> list[str]:
    """`key = value` with the `=` at column `width`; a call too long for one line gets one argument a line."""
    head = f"{indent}{s.key.ljust(width)} = "
    line = head + format_expr(s.value)
    e = s.value
    if len(line) <= MAX_LINE or not isinstance(e, ast.Call) or not e.args:
        return [line]
    inner = indent + INDENT
    return ([f"{head}{_wrap(e.func, _PRECEDENCE['postfix'])}("]
            + [f"{inner}{format_args([a])}," for a in e.args] + [f"{indent})"])


def _format_block(item: ast.Block) -> list[str]:
    width = max((len(s.key) for s in item.settings), default=0)
    body = [line for s in item.settings for line in _setting_lines(s, width, INDENT)]
    if len(body) == 1 and len(item.block) + len(body[0]) + 4 <= MAX_LINE:     # export { format = onnx }
        return [f"{item.block} {{ {body[0].strip()} }}"]
    return [f"{item.block} {{"] + body + ["}"]


def format_spec(spec: ast.Spec, line_starters: frozenset[str] = frozenset()) -> str:
    """The canonical text. `line_starters` names the layers that start a new line in a chain (the layer
    catalog knows them: compiler.layers.LINE_STARTERS); without it, only blocks do."""
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
            chunks.append(_format_block(item))
        elif isinstance(item, ast.Model):
            chunks.append(_format_model(item, frozenset(line_starters)))
        elif isinstance(item, ast.Variants):
            width = max((len(v.name) + 1 for v in item.variants), default=0)
            body = [f"{INDENT}{(v.name + ':').ljust(width)} " + ", ".join(format_setting(s) for s in v.settings)
                    for v in item.variants]
            chunks.append(["variants {"] + body + ["}"])
    if lets:
        chunks.append(lets)
    return "\n\n".join("\n".join(c) for c in chunks) + "\n"
