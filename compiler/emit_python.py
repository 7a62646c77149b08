"""Eject a checked spec to plain PyTorch source (`dslc emit SPEC --python DIR`): model.py, train.py, README.md.

model.py holds one `nn.Module` class per model, written the way a person
would write it: every layer an attribute named as dslc names it (`conv2d_1`,
`encoder.linear_1`, params `w`, `b`), and a `forward` with one line per layer
and the shape in a comment. Because the names and the construction order are
dslc's, a dslc `state_dict` loads into it unchanged (strict) and a model
built after the same `torch.manual_seed` starts from the same weights.
Layers are written from their catalog entries (compiler/layers.py: the torch
class and its arguments, or an inline form). Nothing here imports torch at module
level; which tensors an `init` rule fills is read from the module dslc builds, on
the meta device, without memory or RNG draws.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass, field

from .emit_expr import SourceExpr, py
from .ir import BlockCall, BlockIR, Chain, CheckedSpec, InitIR, LayerCall, LayerIR, ModelIR, Ref
from .layers import LAYERS
from .shapes import TensorShape

INDENT = "    "
RESERVED = {"nn", "torch", "F", "Each", "OrderedDict", "np", "math"}

# ---------------------------------------------------------------- small formatting helpers


MODULE_NAMES = {"self", "torch", "nn", "F", "np", "math", "random", "argparse", "OrderedDict", "Each"}


def local(name: str, reserved=()) -> str:
    """A spec name as a Python variable: `class` -> `class_`, likewise names the code itself uses."""
    return name + "_" if keyword.iskeyword(name) or name in MODULE_NAMES or name in reserved else name


def attr(owner: str, name: str) -> str:
    """`self.w`, or `getattr(self, "in")` for a name Python cannot write after a dot."""
    return f'getattr({owner}, "{name}")' if keyword.iskeyword(name) else f"{owner}.{name}"


def set_attr(owner: str, name: str, value: str) -> str:
    """`self.w = VALUE`, or `setattr(self, "in", VALUE)` for a keyword."""
    return f'setattr({owner}, "{name}", {value})' if keyword.iskeyword(name) else f"{owner}.{name} = {value}"


def camel(name: str) -> str:
    """`bn_cnn` -> `BnCnn`: a spec name as a Python class name."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Model"


def class_names(checked: CheckedSpec) -> dict[str, str]:
    """Model name -> class name, unique and clear of the names model.py imports."""
    out: dict[str, str] = {}
    for name in checked.models:
        base = camel(name)
        if base in RESERVED:
            base += "Model"
        cls, n = base, 2
        while cls in out.values():
            cls, n = f"{base}{n}", n + 1
        out[name] = cls
    return out


def shape_text(shape: TensorShape, batched: bool = True) -> str:
    """`[B, 16, 28, 28]`: the tensor's full shape, batch axis first, as the comments show it."""
    dims = (["B"] if batched else []) + [str(d) for d in shape.dims]
    return "[" + ", ".join(dims) + "]" if dims else "scalar"


def call(name: str, positional=(), keywords=()) -> str:
    """`name(a, b, k=v)` from already formatted argument texts; keywords with None are left out."""
    parts = list(positional) + [f"{k}={v}" for k, v in keywords if v is not None]
    return f"{name}({', '.join(parts)})"


# ---------------------------------------------------------------- layer constructors


def layer_constructor(l: LayerIR) -> str:
    """The torch.nn constructor for one layer, as source, from its catalog entry:
    `nn.Conv2d(1, 16, kernel_size=5, padding=2)` (keywords at torch's defaults left out)."""
    entry = LAYERS[l.layer]
    x = l.step_input
    if entry.emit_constructor is not None:
        return entry.emit_constructor(x, l.args)
    kwargs = entry.kwargs(x, l.args)
    name = entry.emit_module or entry.module_name(x, l.args)
    for extra in entry.dslc_kwargs:         # dslc's own modules subclass torch's, with these on top
        kwargs.pop(extra, None)
    if entry.recurrent:                     # dslc's recurrent modules are torch's, with carry_state on top
        kwargs.pop("carry_state", None)
        name = f"nn.{name}"
    if not name.startswith("nn."):
        raise ValueError(f"layer '{l.layer}' is built as dslc's own module {name}: give its catalog entry an "
                         f"`inline` form for `dslc emit`")
    items = list(kwargs.items())
    positional = [py(v) for _, v in items[:entry.positional]]
    keywords = [(k, py(v)) for k, v in items[entry.positional:]
                if not (k in entry.torch_defaults and entry.torch_defaults[k] == v)]
    text = call(name, positional, keywords)
    return f"Each({text})" if l.each and not entry.last_axis else text


def inline_source(l: LayerIR, x: str, mask: str | None = None, module: str | None = None) -> str | None:
    """How a layer is written in forward: inline for one without weights (`x[:, -1]`), or the call of its module
    (`self.multihead_attention_1(x, x, x, need_weights=False)[0]`); None when it is a plain module call."""
    form = LAYERS[l.layer].inline
    if form is None:
        return None
    if callable(form):
        return form(x, l, mask, module=module) if module is not None else form(x, l, mask)
    return form.format(x=x, out=", ".join(str(d) for d in l.output.dims))


def mask_name(source) -> str:
    """The local variable that holds a padding mask in ejected code: `mask_tokens` (True: a real step)."""
    return f"mask_{local(source[0])}"


HELPERS = {
    "real_steps": '''

def real_steps(mask):
    """A padding mask [B, T] (True: a real step); a sample of nothing but padding counts all its steps."""
    return mask | ~mask.any(dim=1, keepdim=True)''',
    "causal_mask": '''

def causal_mask(steps, device):
    """[T, T], True where a step may not look: at later steps."""
    return torch.ones(steps, steps, dtype=torch.bool, device=device).triu(1)''',
    "sinusoidal_code": '''

def sinusoidal_code(steps, dim, base=10000.0):
    """The fixed sine/cosine position code [T, D] of "Attention Is All You Need"."""
    t = torch.arange(steps, dtype=torch.float32).unsqueeze(1)
    i = torch.arange(0, dim, 2, dtype=torch.float32)
    angle = t * torch.exp(-math.log(base) * i / dim)
    code = torch.zeros(steps, dim)
    code[:, 0::2] = torch.sin(angle)
    code[:, 1::2] = torch.cos(angle[:, : dim // 2])
    return code''',
}


# ---------------------------------------------------------------- forward programs


@dataclass
class Scope:
    """What a forward program can refer to: its layers, blocks and params, and the inputs' names."""

    layers: dict[str, LayerIR]
    blocks: dict[str, BlockIR] = field(default_factory=dict)
    params: dict[str, TensorShape] = field(default_factory=dict)
    inputs: dict[str, TensorShape] = field(default_factory=dict)
    all_blocks: dict[str, BlockIR] = field(default_factory=dict)     # every block of the model, nested ones too


def block_masks(blocks: dict[str, BlockIR], path: str) -> list:
    """The padding masks a block's layers (nested blocks included) read, in a stable order."""
    found: list = []

    def walk(p: str) -> None:
        for step in blocks[p].steps:
            if isinstance(step, str):
                walk(step)
            elif step.mask and step.mask not in found:
                found.append(step.mask)
    walk(path)
    return found


class ForwardWriter:
    """Writes the statements of a forward program: one line per layer, bindings by name, shapes in comments.

    Expressions are written by the IR's source backend (compiler/emit_expr.py); this class adds the layers.
    """

    def __init__(self, scope: Scope, taken: set[str]):
        self.scope = scope
        self.taken = set(taken)
        self.lines: list[str] = []
        self.source = SourceExpr("torch", self.name_of, self.layer_call)
        self.masks: set = set()            # (input, padding id) of the masks the lines read
        self.uses_helpers: set[str] = set()

    @property
    def uses_torch(self) -> bool:
        return "torch" in self.source.uses

    @property
    def uses_functional(self) -> bool:
        return "F" in self.source.uses

    def name_of(self, ref: Ref) -> str:
        return attr("self", ref.name) if ref.role == "param" else local(ref.name)

    def layer_call(self, node) -> str:
        if isinstance(node, LayerCall):
            return self.layer_on_values(node)
        if isinstance(node, BlockCall):
            masks = block_masks(self.scope.all_blocks, node.block)
            self.masks |= set(masks)
            args = [self.source(node.input)[0]] + [mask_name(m) for m in masks]
            return f"{attr('self', node.block)}({', '.join(args)})"
        return self.chain(node)

    def layer_on_values(self, node: LayerCall) -> str:
        """A layer called with other model values (memory=): one line, the result in a fresh variable."""
        l = self.scope.layers[node.layer]
        x = self.source(node.input)[0]
        values = {k: self.source(v)[0] for k, v in node.values}
        masks = {f"{k}_mask": mask_name(m) for k, m in l.value_masks}
        self.masks |= {m for _, m in l.value_masks}
        mask = mask_name(l.mask) if l.mask else None
        if mask:
            self.masks.add(l.mask)
        text = LAYERS[l.layer].inline(x, l, mask, module=attr("self", l.name), **values, **masks)
        self.uses_helpers |= {h for h in HELPERS if h + "(" in text}
        var = self.fresh()
        self.taken.add(var)
        self.lines.append(f"{var} = {text}  # {l.name}: {shape_text(l.output)}")
        return var

    def comment(self, *nodes) -> str:
        return ", ".join(shape_text(n.shape, n.batched) for n in nodes)

    def expr(self, node) -> tuple[str, int]:
        return self.source(node)

    # -- statements

    def fresh(self, preferred: str = "x") -> str:
        for name in [preferred, "x", "h", "y", "z", "out"] + [f"x{i}" for i in range(2, 100)]:
            if name not in self.taken:
                return name
        raise ValueError("no free variable name")

    def chain(self, node: Chain) -> str:
        """Emit one line per layer of a chain; returns the variable that holds its result."""
        source = self.expr(node.input)[0]
        if isinstance(node.input, Ref) and node.input.role == "input":
            var = source if source == "x" or "x" in self.taken else "x"
        else:
            var = self.fresh()
            if source != var:
                self.lines.append(f"{var} = {source}  # {self.comment(node.input)}")
                source = var
        self.taken.add(var)
        for name in node.layers:
            self.layer_lines(self.scope.layers[name], source, var)
            source = var
        return var

    def layer_lines(self, l: LayerIR, x: str, var: str) -> None:
        out = shape_text(l.output)
        entry = LAYERS[l.layer]
        recurrent = entry.recurrent
        mask = mask_name(l.mask) if l.mask else None
        if mask:
            self.masks.add(l.mask)
        if entry.inline is not None:
            text = inline_source(l, x, mask, None if entry.inline_only else attr("self", l.name))
            self.uses_helpers |= {h for h in HELPERS if h + "(" in text}
            self.source.uses.add("torch") if "torch." in text else None
            self.lines.append(f"{var} = {text}  # {l.name}: {out}")
        elif recurrent and l.args["carry_state"]:
            self.carried_lines(l, x, var)
        elif recurrent:
            self.lines.append(f"{var} = self.{l.name}({x})[0]  # {out}")
        elif l.each:
            self.lines.append(f"{var} = self.{l.name}({x})  # each time step: {out}")
        else:
            self.lines.append(f"{var} = self.{l.name}({x})  # {out}")

    def carried_lines(self, l: LayerIR, x: str, var: str) -> None:
        state = f"self.{l.name}_state"
        first = "carried[0]" if l.layer == "lstm" else "carried"
        detach = "tuple(s.detach() for s in state)" if l.layer == "lstm" else "state.detach()"
        self.lines += [
            f"# {l.name} starts from the state the previous training batch ended in (detached)",
            f"carried = {state} if self.training else None",
            f"if carried is not None and {first}.shape[1] != {x}.shape[0]:",
            f"{INDENT}carried = None  # a batch of another size starts afresh",
            f"{var}, state = self.{l.name}({x}, carried)  # {shape_text(l.output)}",
            "if self.training:",
            f"{INDENT}{state} = {detach}",
        ]
        self.taken.update({"carried", "state"})

    def mask_lines(self, inputs: dict[str, TensorShape]) -> list[str]:
        """`mask_tokens = tokens != 0`: the padding masks the forward program reads, computed from its inputs."""
        return [f"{mask_name(m)} = {local(m[0])} != {m[1]}  # real steps of {m[0]} (not padding)"
                for m in sorted(self.masks) if m[0] in inputs]

    def program(self, steps, outputs) -> list[str]:
        """The body of `forward`: bindings, then the return statement."""
        for name, node in steps:
            source = self.expr(node)[0]
            self.lines.append(f"{local(name)} = {source}  # {self.comment(node)}")
            self.taken.add(local(name))
        results = [self.expr(node)[0] for node in outputs]
        line = f"return {', '.join(results)}  # {self.comment(*outputs)}"
        if len(results) > 1 and len(line) > 100:          # one output a line
            self.lines.append("return (")
            self.lines += [f"{INDENT}{r},  # {self.comment(n)}" for r, n in zip(results, outputs)]
            self.lines.append(")")
        else:
            self.lines.append(line)
        return self.lines


# ---------------------------------------------------------------- classes


def _carried(layers) -> list[LayerIR]:
    return [l for l in layers if LAYERS[l.layer].recurrent and l.args["carry_state"]]


def _plain_sequential(block: BlockIR, blocks: dict[str, BlockIR]) -> bool:
    """A block can be an nn.Sequential when each of its steps is one module taking and giving a tensor.

    A padding mask read anywhere inside it, nested blocks included, needs a class whose forward takes it."""
    return (not block.residual and not block_masks(blocks, block.name)
            and all(not LAYERS[l.layer].inline and not LAYERS[l.layer].recurrent for l in block.layers))


@dataclass
class PyFile:
    """model.py being written: its lines and the imports they need."""

    lines: list[str] = field(default_factory=list)
    imports: set[str] = field(default_factory=set)

    def add(self, *lines: str, depth: int = 0) -> None:
        self.lines += [(INDENT * depth + line) if line else "" for line in lines]


def _init_rule_targets(model: ModelIR, rule: InitIR) -> list[str]:
    """The tensors an `init` rule fills, as `self.PATH.PARAM`, in the order dslc fills them."""
    import torch

    from .build import build_layer
    from .initializers import INITIALIZERS
    init = INITIALIZERS[rule.dist.name]
    kinds = [(l.name, l) for l in model.layers]
    kinds += [(f"{b.name}.{l.name}", l) for b in model.blocks.values() for l in b.layers]
    out = []
    for path, l in kinds:
        if rule.target not in (path, l.layer):
            continue
        with torch.device("meta"):
            module = build_layer(l)
        for name, tensor in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf.startswith(rule.param) and (tensor.dim() >= 2 or not init.needs_matrix):
                owner = attr("self", path.split(".")[0]) + "".join(f".{p}" for p in path.split(".")[1:])
                out.append(f"{owner}.{name}")
    return out


def init_call(name: str, args: dict, tensor: str) -> str:
    """`nn.init.uniform_(self.linear_1.weight, -0.1, 0.1)`: one initialiser, called as dslc calls it."""
    from .initializers import INITIALIZERS
    init = INITIALIZERS[name]
    if name in ("uniform", "normal"):                     # dslc passes these positionally
        return call(f"nn.init.{init.torch_fn}", [tensor] + [py(args[a.name]) for a in init.args])
    positional = [py(args[a.name]) for a in init.args if a.required]
    keywords = [(a.name, py(args[a.name])) for a in init.args if not a.required and args[a.name] != a.default]
    return call(f"nn.init.{init.torch_fn}", [tensor] + positional, keywords)


def init_text(name: str, args: dict) -> str:
    """The initialiser as a spec writes it, for a comment: `uniform(-0.1, 0.1)`."""
    from .initializers import INITIALIZERS
    if name in ("uniform", "normal"):
        return f"{name}({', '.join(py(args[a.name]) for a in INITIALIZERS[name].args)})"
    shown = [py(args[a.name]) if a.required else f"{a.name}={py(args[a.name])}"
             for a in INITIALIZERS[name].args if a.required or args[a.name] != a.default]
    return f"{name}({', '.join(shown)})" if shown else name


class ModelSource:
    """Writes the classes of one model: its blocks that need their own class, then the model."""

    def __init__(self, checked: CheckedSpec, model: ModelIR, cls: str, src: PyFile):
        self.checked = checked
        self.m = model
        self.cls = cls
        self.src = src
        self.block_classes = {b.name: f"{cls}{camel(b.name.replace('.', '_'))}" for b in model.blocks.values()
                              if not _plain_sequential(b, model.blocks)}

    def write(self) -> None:
        for block in self.m.blocks.values():
            if block.name in self.block_classes:
                self.block_class(block)
        self.model_class()

    def layer_attributes(self, layers, depth: int) -> None:
        for l in layers:
            if not LAYERS[l.layer].inline_only:
                self.src.add(f"self.{l.name} = {self.constructor(l)}", depth=depth)
        for l in _carried(layers):
            self.src.add(f"self.{l.name}_state = None  # carried between training batches", depth=depth)

    def constructor(self, l: LayerIR) -> str:
        text = layer_constructor(l)
        if text.startswith("Each("):
            self.src.imports.add("each")
        return text

    def forward(self, scope: Scope, args: list[str], steps, outputs, depth: int, doc: str) -> None:
        writer = ForwardWriter(scope, set(args))
        body = writer.program(steps, outputs)
        body = writer.mask_lines(scope.inputs) + body
        self.helpers(writer)
        if writer.uses_torch:
            self.src.imports.add("torch")
        if writer.uses_functional:
            self.src.imports.add("F")
        self.src.add("", f"def forward(self, {', '.join(args)}):", depth=depth)
        self.src.add(f'"""{doc}"""', depth=depth + 1)
        self.src.add(*body, depth=depth + 1)

    def reset_state(self, layers, blocks, depth: int) -> None:
        carried = _carried(layers)
        if not carried and not blocks:
            return
        self.src.add("", "def reset_state(self):", depth=depth)
        self.src.add('"""Forget the carried recurrent state (a new pass over the data starts afresh)."""', depth=depth + 1)
        for l in carried:
            self.src.add(f"self.{l.name}_state = None", depth=depth + 1)
        for b in blocks:
            self.src.add(f"{attr('self', b)}.reset_state()", depth=depth + 1)

    def helpers(self, writer) -> None:
        for helper in writer.uses_helpers:
            self.src.imports.add(f"helper:{helper}")
            self.src.imports.add("torch")
        if writer.uses_torch:
            self.src.imports.add("torch")

    def needs_reset(self, block: BlockIR) -> bool:
        return bool(_carried(block.layers)) or any(self.needs_reset(self.m.blocks[c]) for c in block.children)

    def block_class(self, block: BlockIR) -> None:
        kind = "residual" if block.residual else f"block {block.definition or block.name}"
        self.src.add("", "", f"class {self.block_classes[block.name]}(nn.Module):")
        self.src.add(f'"""{kind} `{block.name}` of model {self.m.name}: {shape_text(block.input)} -> '
                     f'{shape_text(block.output)}."""', depth=1)
        self.src.add("", "def __init__(self):", depth=1)
        self.src.add("super().__init__()", depth=2)
        for step in block.steps:
            if isinstance(step, str):
                self.block_attribute(self.m.blocks[step], depth=2)
            elif not LAYERS[step.layer].inline_only:
                self.src.add(f"self.{step.name} = {self.constructor(step)}", depth=2)
        for l in _carried(block.layers):
            self.src.add(f"self.{l.name}_state = None  # carried between training batches", depth=2)
        masks = [mask_name(m) for m in block_masks(self.m.blocks, block.name)]
        writer = ForwardWriter(Scope({l.name: l for l in block.layers}, inputs={"x": block.input},
                                     all_blocks=self.m.blocks), {"x", *masks})
        var, source = ("h" if block.residual else "x"), "x"
        for step in block.steps:
            if isinstance(step, str):
                child = step.rsplit(".", 1)[-1]
                args = [source] + [mask_name(m) for m in block_masks(self.m.blocks, step)]
                writer.lines.append(f"{var} = {attr('self', child)}({', '.join(args)})  "
                                    f"# {shape_text(self.m.blocks[step].output)}")
            else:
                writer.layer_lines(step, source, var)
            source = var
        writer.lines.append(f"return {source} + x  # {shape_text(block.output)}" if block.residual else
                            f"return {source}")
        self.helpers(writer)
        self.src.add("", f"def forward(self, {', '.join(['x'] + masks)}):", depth=1)
        self.src.add(f'"""{shape_text(block.input)} -> {shape_text(block.output)}"""', depth=2)
        self.src.add(*writer.lines, depth=2)
        nested = [c.rsplit(".", 1)[-1] for c in block.children if self.needs_reset(self.m.blocks[c])]
        self.reset_state(block.layers, nested, depth=1)

    def model_class(self) -> None:
        m = self.m
        inputs = ", ".join(f"{n}: {s}" for n, s in m.inputs.items())
        outputs = ", ".join(shape_text(s) for s in m.output_shapes)
        self.src.add("", "", f"class {self.cls}(nn.Module):")
        self.src.add(f'"""model {m.name}({inputs}) -> {outputs}."""', depth=1)
        self.src.add("", "def __init__(self):", depth=1)
        self.src.add("super().__init__()", depth=2)
        # The order dslc builds in: params, blocks (in order of first use), then top-level layers.
        for p in m.params:
            self.param_lines(p)
        for b in m.top_blocks:
            self.block_attribute(b, depth=2)
        self.layer_attributes(m.layers, depth=2)
        self.init_rules()
        scope = Scope({l.name: l for l in m.layers}, m.blocks, {p.name: p.shape for p in m.params}, dict(m.inputs),
                      m.blocks)
        doc = ", ".join(f"{n}: {shape_text(s)} {_dtype(s)}" for n, s in m.inputs.items())
        self.forward(scope, [local(n) for n in m.inputs], m.steps, m.outputs, depth=1, doc=doc)
        carried_blocks = [b.name for b in m.top_blocks if self.needs_reset(b)]
        self.reset_state(m.layers, carried_blocks, depth=1)

    def param_lines(self, p) -> None:
        self.src.imports.add("torch")
        dims = tuple(p.shape.dims)
        if isinstance(p.init, (int, float, list)):
            self.src.add(set_attr("self", p.name, f"nn.Parameter(torch.tensor({py(_floats(p.init))}))"), depth=2)
            return
        from .initializers import INITIALIZERS
        from .values import bind
        from dslc.dsl.diagnostics import Report
        init = INITIALIZERS[p.init.name]
        args = bind(init.name, init.args, list(p.init.args), p.init.span, Report())
        args.pop("__spans__", None)
        shape = ", ".join(str(d) for d in dims) if dims else "()"
        self.src.add(set_attr("self", p.name, f"nn.Parameter(torch.empty({shape}))"), depth=2)
        self.src.add(init_call(p.init.name, args, attr("self", p.name)), depth=2)

    def block_attribute(self, b: BlockIR, depth: int) -> None:
        """`self.NAME = ...`: a block's module (its class, or an nn.Sequential of its steps)."""
        name = b.name.rsplit(".", 1)[-1]
        lines = self.block_constructor(b)
        first = f'setattr(self, "{name}", {lines[0]}' if keyword.iskeyword(name) else f"self.{name} = {lines[0]}"
        last = lines[-1] + (")" if keyword.iskeyword(name) else "")
        if len(lines) == 1:
            self.src.add(first + (")" if keyword.iskeyword(name) else ""), depth=depth)
            return
        self.src.add(first, depth=depth)
        self.src.add(*lines[1:-1], depth=depth)
        self.src.add(last, depth=depth)

    def block_constructor(self, b: BlockIR) -> list[str]:
        """The source lines that construct a block's module (the first and last carry the opening and closing)."""
        if b.name in self.block_classes:
            return [f"{self.block_classes[b.name]}()"]
        self.src.imports.add("OrderedDict")
        lines = ["nn.Sequential(OrderedDict(["]
        for step in b.steps:
            if isinstance(step, str):
                inner = self.block_constructor(self.m.blocks[step])
                child = step.rsplit(".", 1)[-1]
                if len(inner) == 1:
                    lines.append(f'{INDENT}("{child}", {inner[0]}),')
                else:
                    lines.append(f'{INDENT}("{child}", {inner[0]}')
                    lines += [INDENT + line for line in inner[1:-1]]
                    lines.append(f"{INDENT}{inner[-1]}),")
            else:
                lines.append(f'{INDENT}("{step.name}", {self.constructor(step)}),')
        lines.append("]))")
        return lines

    def init_rules(self) -> None:
        for rule in self.checked.init:
            targets = _init_rule_targets(self.m, rule)
            if not targets:
                continue
            self.src.add(f"# init {{ {rule.target}.{rule.param} = {init_text(rule.dist.name, rule.dist.args)} }}", depth=2)
            leaves = {t.rsplit(".", 1)[1] for t in targets}
            if len(targets) > 1 and len(leaves) == 1:
                leaf = leaves.pop()
                owners = ", ".join(t.rsplit(".", 1)[0] for t in targets)
                self.src.add(f"for layer in ({owners}):", depth=2)
                self.src.add(init_call(rule.dist.name, rule.dist.args, f"layer.{leaf}"), depth=3)
            else:
                for t in targets:
                    self.src.add(init_call(rule.dist.name, rule.dist.args, t), depth=2)


def _floats(v):
    if isinstance(v, list):
        return [_floats(x) for x in v]
    return float(v)


def _dtype(shape: TensorShape) -> str:
    from .shapes import DTYPES
    return DTYPES[shape.dtype]


# ---------------------------------------------------------------- model.py


EACH_CLASS = '''

class Each(nn.Module):
    """Applies `inner` at every time step of a [B, T, ...] sequence."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x.flatten(0, 1)).unflatten(0, x.shape[:2])'''


def model_source(checked: CheckedSpec, spec_label: str) -> str:
    """The text of model.py: one class per model of the spec."""
    from dslc import __version__
    names = class_names(checked)
    src = PyFile()
    for name, model in checked.models.items():
        ModelSource(checked, model, names[name], src).write()
    trained = names[checked.model.name]
    header = [
        f'"""The models of {spec_label} as plain PyTorch (written by dslc {__version__}, `dslc emit`).',
        "",
        "Attribute and parameter names are dslc's, so the weights of a dslc run load unchanged:",
        "",
        f"    model = {trained}()",
        '    model.load_state_dict(torch.load("RUN/checkpoints/best.pt")["model"])',
        '"""',
        "",
    ]
    imports = []
    if "OrderedDict" in src.imports:
        imports += ["from collections import OrderedDict", ""]
    if "torch" in src.imports:
        imports.append("import torch")
    if "F" in src.imports:
        imports.append("import torch.nn.functional as F")
    imports.append("from torch import nn")
    if "helper:sinusoidal_code" in src.imports:
        imports.insert(0, "import math")
    body = "\n".join(src.lines)
    each = EACH_CLASS if "each" in src.imports else ""
    helpers = "".join(text + "\n" for name, text in HELPERS.items() if f"helper:{name}" in src.imports)
    return "\n".join(header + imports) + "\n" + helpers + (each + "\n" if each else "") + body + "\n"
