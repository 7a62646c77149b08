"""Model diagrams: a checked model drawn as boxes and arrows (`dslc show SPEC --graph FILE`).

`model_graph(model_ir)` turns the model's forward program into nodes (inputs,
params, layers, operators, bindings, outputs) and edges, each layer labelled
with its output shape and parameter count (counted by the layer catalog,
without torch), and a block's layers grouped under the block's name.
`layout` ranks the nodes top to bottom (longest path; a source sits just above
its first consumer) and places each near its predecessors without overlaps.
`draw_graph` draws that with matplotlib patches into SVG, PNG or PDF, so no
Graphviz is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .ir import BlockCall, Chain, CheckedSpec, Const, LayerCall, LayerIR, ModelIR, Op, Ref
from .layers import LAYERS, layer_params

FORMATS = (".svg", ".png", ".pdf")
CHAR_WIDTH = 0.072          # inches per character at 9 pt
NODE_HEIGHT = 0.52          # inches, two lines
RANK_GAP = 0.5              # inches between ranks
NODE_GAP = 0.35             # inches between neighbours in a rank
GROUP_PAD = 0.14
GROUP_LABEL = 0.24
SYMBOLS = {"add": "+", "sub": "−", "mul": "×", "div": "÷", "pow": "**", "neg": "−x"}
COLOURS = {"input": "#d7f0dc", "param": "#fbefc2", "layer": "#dbe8f7", "plain": "#eeeeee", "recurrent": "#e7def5",
           "op": "#ffffff", "binding": "#ffffff", "output": "#fbdcc4"}


@dataclass
class Node:
    id: int
    kind: str                 # input | param | layer | op | binding | output
    title: str
    detail: str = ""
    colour: str = "layer"
    group: int | None = None
    rank: int = 0
    x: float = 0.0

    @property
    def width(self) -> float:
        if self.kind == "op" and not self.detail:
            return max(0.45, CHAR_WIDTH * len(self.title) + 0.25)
        return CHAR_WIDTH * max(len(self.title), len(self.detail) * 0.9) + 0.36

    @property
    def height(self) -> float:
        return NODE_HEIGHT if self.detail else 0.36


@dataclass
class Group:
    id: int
    label: str


@dataclass
class Graph:
    title: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[int, int]] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    params: int = 0

    def add(self, kind: str, title: str, detail: str = "", colour: str | None = None, group: int | None = None) -> int:
        self.nodes.append(Node(len(self.nodes), kind, title, detail, colour or kind, group))
        return len(self.nodes) - 1

    def link(self, a: int, b: int) -> None:
        self.edges.append((a, b))


# ---------------------------------------------------------------- the graph of a model


def _count(n: int) -> str:
    return f"{n:,} param" + ("" if n == 1 else "s")


def model_graph(model: ModelIR) -> Graph:
    """Nodes and edges of the model's forward program (torch-free)."""
    graph = Graph(f"model {model.name}")
    names: dict[str, int] = {}
    for name, shape in model.inputs.items():
        names[name] = graph.add("input", f"input {name}", str(shape))
    for p in model.params:
        n = p.shape.numel() or 0
        graph.params += n
        names[p.name] = graph.add("param", f"param {p.name}", f"{p.shape} · {_count(n)}")
    layers = {l.name: l for l in model.layers}
    called: set[str] = set()

    def layer_node(l: LayerIR, group: int | None, counted: bool) -> int:
        n = layer_params(l)
        if counted:
            graph.params += n
        colour = "recurrent" if LAYERS[l.layer].recurrent else "layer" if n else "plain"
        extra = (f" · {_count(n)}" if counted else " · shared") if n else ""
        return graph.add("layer", str(l), f"{l.output}{extra}", colour, group)

    def emit(node) -> int | None:
        if isinstance(node, Ref):
            return names[node.name]
        if isinstance(node, Const):
            return None
        if isinstance(node, Chain):
            src = emit(node.input)
            for name in node.layers:
                nid = layer_node(layers[name], None, True)
                if src is not None:
                    graph.link(src, nid)
                src = nid
            return src
        if isinstance(node, BlockCall):
            src = emit(node.input)
            shared = node.block in called
            called.add(node.block)
            gid = len(graph.groups)
            graph.groups.append(Group(gid, f"block {node.block}" + (" (same weights)" if shared else "")))

            def steps(path: str, src):
                start = src
                for step in model.blocks[path].steps:
                    if isinstance(step, str):
                        src = steps(step, src)
                        continue
                    nid = layer_node(step, gid, not shared)
                    if src is not None:
                        graph.link(src, nid)
                    src = nid
                if model.blocks[path].residual and start is not None and src is not None:
                    add = graph.add("op", "+ (residual)", "", group=gid)
                    graph.link(src, add)
                    graph.link(start, add)
                    src = add
                return src
            return steps(node.block, src)
        if isinstance(node, LayerCall):
            sources = [emit(node.input)] + [emit(v) for _, v in node.values]
            nid = layer_node(layers[node.layer], None, True)
            for s in sources:
                if s is not None:
                    graph.link(s, nid)
            return nid
        if isinstance(node, Op):
            sources = [emit(a) for a in node.args]
            consts = [_const(a.value) for a in node.args if isinstance(a, Const)]
            symbol = SYMBOLS.get(node.name, node.name)
            title = f"{symbol} {', '.join(consts)}" if consts else symbol
            nid = graph.add("op", title)
            for s in sources:
                if s is not None:
                    graph.link(s, nid)
            return nid
        raise TypeError(f"unknown node {node!r}")

    for name, node in model.steps:
        src = emit(node)
        names[name] = graph.add("binding", name)
        if src is not None:
            graph.link(src, names[name])
    several = len(model.outputs) > 1
    for i, (node, shape) in enumerate(zip(model.outputs, model.output_shapes)):
        src = emit(node)
        out = graph.add("output", f"output {i}" if several else "output", str(shape))
        if src is not None:
            graph.link(src, out)
    return graph


def _const(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------- layout


def layout(graph: Graph) -> None:
    """Ranks (rows) and x positions (inches) for every node."""
    preds: dict[int, list[int]] = {n.id: [] for n in graph.nodes}
    succs: dict[int, list[int]] = {n.id: [] for n in graph.nodes}
    for a, b in graph.edges:
        preds[b].append(a)
        succs[a].append(b)
    order = _topological(graph, preds, succs)
    for nid in order:
        graph.nodes[nid].rank = max((graph.nodes[p].rank + 1 for p in preds[nid]), default=0)
    for nid in reversed(order):                   # sources sit just above their first consumer
        if not preds[nid] and succs[nid]:
            graph.nodes[nid].rank = max(0, min(graph.nodes[s].rank for s in succs[nid]) - 1)
    rows: dict[int, list[Node]] = {}
    for n in graph.nodes:
        rows.setdefault(n.rank, []).append(n)
    for rank in sorted(rows):
        row = rows[rank]
        wanted = {n.id: sum(graph.nodes[p].x for p in preds[n.id]) / len(preds[n.id]) if preds[n.id] else None
                  for n in row}
        row.sort(key=lambda n: (wanted[n.id] is None, wanted[n.id] or 0.0, n.id))
        x_prev, w_prev = None, 0.0
        for n in row:
            want = wanted[n.id]
            lowest = x_prev + w_prev / 2 + NODE_GAP + n.width / 2 if x_prev is not None else None
            n.x = want if lowest is None else (lowest if want is None else max(want, lowest))
            if want is None and lowest is None:
                n.x = 0.0
            x_prev, w_prev = n.x, n.width
        placed = [(wanted[n.id], n.x) for n in row if wanted[n.id] is not None]
        if placed:                                # centre the pushed-apart row on where it wanted to be
            shift = sum(w - x for w, x in placed) / len(placed)
            for n in row:
                n.x += shift


def _topological(graph: Graph, preds, succs) -> list[int]:
    indegree = {n: len(p) for n, p in preds.items()}
    ready = [n.id for n in graph.nodes if indegree[n.id] == 0]
    order = []
    while ready:
        nid = ready.pop(0)
        order.append(nid)
        for s in succs[nid]:
            indegree[s] -= 1
            if indegree[s] == 0:
                ready.append(s)
    return order


def _y(rank: int) -> float:
    return rank * (NODE_HEIGHT + RANK_GAP)


# ---------------------------------------------------------------- drawing


def draw_graph(graph: Graph, target, fmt: str | None = None) -> None:
    """Draw the graph to `target` (a path, or a binary file with `fmt`: svg, png or pdf); units are inches."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    layout(graph)
    nodes = graph.nodes
    margin = 0.3
    boxes = {n.id: (n.x - n.width / 2, _y(n.rank) - n.height / 2, n.x + n.width / 2, _y(n.rank) + n.height / 2)
             for n in nodes}
    group_boxes = {}
    for g in graph.groups:
        members = [boxes[n.id] for n in nodes if n.group == g.id]
        if members:
            group_boxes[g.id] = (min(b[0] for b in members) - GROUP_PAD, min(b[1] for b in members) - GROUP_PAD - GROUP_LABEL,
                                 max(b[2] for b in members) + GROUP_PAD, max(b[3] for b in members) + GROUP_PAD)
    everything = list(boxes.values()) + list(group_boxes.values())
    x0 = min(b[0] for b in everything) - margin
    x1 = max(b[2] for b in everything) + margin
    title_room = 0.55
    y0 = min(b[1] for b in everything) - margin - title_room
    y1 = max(b[3] for b in everything) + margin
    width = max(x1 - x0, CHAR_WIDTH * 1.3 * len(graph.title) + 2 * margin)
    if width > x1 - x0:
        pad = (width - (x1 - x0)) / 2
        x0, x1 = x0 - pad, x1 + pad
    fig = Figure(figsize=(x1 - x0, y1 - y0), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)                            # rank 0 at the top
    ax.set_axis_off()
    ax.text((x0 + x1) / 2, y0 + margin + 0.1, f"{graph.title}  ·  {_count(graph.params)}", ha="center", va="center",
            fontsize=11, weight="bold")
    for g in graph.groups:
        if g.id not in group_boxes:
            continue
        gx0, gy0, gx1, gy1 = group_boxes[g.id]
        ax.add_patch(FancyBboxPatch((gx0, gy0), gx1 - gx0, gy1 - gy0, boxstyle="round,pad=0,rounding_size=0.1",
                                    facecolor="#f7f9fc", edgecolor="#7d8fa8", linestyle="--", linewidth=1))
        ax.text(gx0 + 0.1, gy0 + 0.06, g.label, ha="left", va="top", fontsize=9, style="italic", color="#3b4a63")
    for a, b in graph.edges:
        na, nb = nodes[a], nodes[b]
        span = nb.rank - na.rank
        ax.add_patch(FancyArrowPatch((na.x, boxes[a][3]), (nb.x, boxes[b][1]), arrowstyle="-|>", mutation_scale=11,
                                     shrinkA=1, shrinkB=1, color="#44546a", linewidth=1.1,
                                     connectionstyle=f"arc3,rad={0.25 if span > 1 else 0}"))
    for n in nodes:
        bx0, by0, bx1, by1 = boxes[n.id]
        style = "round,pad=0,rounding_size=0.18" if n.kind in ("op", "binding") else "round,pad=0,rounding_size=0.06"
        ax.add_patch(FancyBboxPatch((bx0, by0), bx1 - bx0, by1 - by0, boxstyle=style, facecolor=COLOURS[n.colour],
                                    edgecolor="#44546a", linewidth=1.1 if n.kind != "binding" else 0.9))
        y = _y(n.rank)
        if n.detail:
            ax.text(n.x, y - 0.1, n.title, ha="center", va="center", fontsize=9,
                    weight="bold" if n.kind in ("input", "output") else "normal")
            ax.text(n.x, y + 0.12, n.detail, ha="center", va="center", fontsize=8, color="#3d3d3d")
        else:
            ax.text(n.x, y, n.title, ha="center", va="center", fontsize=9 if n.kind != "op" else 11,
                    style="italic" if n.kind == "binding" else "normal")
    fig.savefig(target, format=fmt or Path(target).suffix[1:].lower(), facecolor="white")


def write_graph(checked: CheckedSpec, path: str | Path, model_name: str | None = None) -> Path:
    """Draw the model (the trained one, or `model_name`) to `path`; the format follows the extension."""
    from dslc.errors import UserError
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise UserError(f"cannot draw to {path}: the diagram's file name must end in {', '.join(FORMATS)}")
    if model_name is not None and model_name not in checked.models:
        raise UserError(f"there is no model '{model_name}'; the spec has: {', '.join(checked.models)}")
    model = checked.models[model_name] if model_name else checked.model
    if not path.parent.is_dir():
        raise UserError(f"cannot write {path}: the folder {path.parent} does not exist")
    draw_graph(model_graph(model), path)
    return path
