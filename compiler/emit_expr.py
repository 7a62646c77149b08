"""The Python-source backend of the IR: an expression written as torch or numpy code for `dslc emit`.

`SourceExpr(lang, name_of, ...)(node)` returns `(source, precedence)`. It writes what
compiler/ir_compile.py computes, with the same per-sample rule made explicit: a
batched operand with fewer per-sample axes than the result gets `[:, None]` axes
after its batch axis. `name_of(ref)` says how the surrounding code calls an input,
target, column or param; `layer_call(node)` writes a model's chains and block
calls. Nothing here imports torch or numpy.
"""

from __future__ import annotations

import json
from typing import Callable

from .data_sources import GENERATORS
from .functions import FUNCTIONS
from .ir import BlockCall, Chain, Const, Fitted, Generate, LayerCall, LossCall, MetricCall, Node, Op, Reduce, Ref
from .ir_compile import padding
from .losses import LOSSES

ATOM = 9
_INFIX = {"add": ("+", 1), "sub": ("-", 1), "mul": ("*", 2), "div": ("/", 2)}


def wrap(text: str, needed: bool) -> str:
    return f"({text})" if needed else text


def py(value) -> str:
    """A Python literal for a bound argument value (numbers, booleans, strings, tuples, lists, dicts)."""
    if isinstance(value, tuple):
        return "(" + ", ".join(py(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(py(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py(k)}: {py(v)}" for k, v in value.items()) + "}"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)      # double quotes, as the rest of the code
    return repr(value)


def _as_list(value):
    return [_as_list(v) for v in value] if isinstance(value, tuple) else value


def binop(symbol: str, p: int, left: tuple[str, int], right: tuple[str, int]) -> tuple[str, int]:
    """`left symbol right` with the fewest parentheses (sources carry their precedence)."""
    if symbol == "**":
        return f"{wrap(left[0], left[1] <= 4)} ** {wrap(right[0], right[1] < 3)}", 4
    return f"{wrap(left[0], left[1] < p)} {symbol} {wrap(right[0], right[1] <= p)}", p


def loss_source(name: str, args: dict, output: str, target: str, cast: bool = False, output_rank: int = 1) -> str:
    """`F.mse_loss(output, y.reshape(output.shape))`: a catalog loss as torch code, per-sample rule included
    (class scores on the last per-sample axis move to axis 1, where torch's class losses read them)."""
    loss = LOSSES[name]
    keywords = "".join(f", {a.name}={py(args[a.name])}" for a in loss.args if args.get(a.name, a.default) != a.default)
    if loss.target == "same":
        target = f"{target}.reshape({output}.shape)" + (f".to({output}.dtype)" if cast else "")
    else:
        output = f"{output}.movedim(-1, 1)" if output_rank > 1 else output
        target = f"{target}.long()"
    return f"F.{loss.functional}({output}, {target}{keywords})"


class SourceExpr:
    """Writes IR nodes as Python source in `lang` "torch" or "numpy"; records which imports it used."""

    def __init__(self, lang: str, name_of: Callable[[Ref], str], layer_call: Callable | None = None,
                 cast_targets: bool = False, fitted: Callable[[Fitted, str], str] | None = None):
        self.lang = lang
        self.name_of = name_of
        self.layer_call = layer_call
        self.cast_targets = cast_targets
        self.fitted = fitted               # writes standardize/min_max (and their inverses) with fitted statistics
        self.uses: set[str] = set()        # torch, F, np, rng

    def __call__(self, node: Node) -> tuple[str, int]:
        if isinstance(node, Ref):
            return self.name_of(node), ATOM
        if isinstance(node, Const):
            if isinstance(node.value, tuple):           # fitted statistics, one per element
                lib = "torch.tensor" if self.lang == "torch" else "np.array"
                self.uses.add("torch" if self.lang == "torch" else "np")
                return f"{lib}({py(_as_list(node.value))})", ATOM
            v = node.value if self.lang == "torch" or isinstance(node.value, int) else float(node.value)
            return repr(v), (3 if v < 0 else ATOM)
        if isinstance(node, Op):
            return self.op(node)
        if isinstance(node, Reduce):
            return f"{wrap(self(node.arg)[0], self(node.arg)[1] < ATOM)}.{node.name}()", ATOM
        if isinstance(node, (Chain, BlockCall, LayerCall)):
            if self.layer_call is None:
                raise TypeError("layers are written by the model's forward writer")
            return self.layer_call(node), ATOM
        if isinstance(node, LossCall):
            self.uses.add("F")
            return loss_source(node.name, node.kwargs, self(node.output)[0], self(node.target)[0],
                               self.cast_targets, node.output.shape.rank), ATOM
        if isinstance(node, Generate):
            self.uses.add("np")
            g = GENERATORS[node.name]
            if g.random:
                self.uses.add("rng")
            args = {k: self(v) for k, v in node.args}
            return g.source.format(**{k: wrap(t, p < ATOM) for k, (t, p) in args.items()}), \
                (1 if node.name == "arange" else ATOM)
        if isinstance(node, Fitted):
            if self.fitted is None:
                raise TypeError(f"{node.name}(...) needs its fitted statistics to be written")
            return self.fitted(node, self(node.arg)[0]), ATOM
        if isinstance(node, MetricCall):
            raise TypeError("metrics are computed by the training kit")
        raise TypeError(f"cannot write {type(node).__name__}")

    def aligned(self, node: Node, operand: Node) -> tuple[str, int]:
        text, p = self(operand)
        k = padding(node, operand)
        if k > 0:
            return f"{wrap(text, p < ATOM)}[:, {', '.join(['None'] * k)}]", ATOM
        return text, p

    def op(self, node: Op) -> tuple[str, int]:
        if node.name in ("concat", "stack"):
            return self.join(node)
        if node.name == "one_hot":
            x, n = self(node.args[0])[0], self(node.args[1])[0]
            if self.lang == "numpy":
                self.uses.add("np")
                return f"np.eye({n})[{x}]", ATOM
            self.uses.update({"F", "torch"})
            return f"F.one_hot({wrap(x, self(node.args[0])[1] < ATOM)}.long(), {n}).to(torch.get_default_dtype())", ATOM
        shift = 1 if node.args[0].batched else 0
        if node.name in ("softmax", "log_softmax", "mean", "sum", "max", "min"):
            return self.along(node, shift)
        if node.name == "permute":
            x = self.atom(node.args[0])
            order = tuple(range(shift)) + tuple(i + shift for i in node.params)
            if self.lang == "torch":
                return f"{x}.permute{order}", ATOM
            self.uses.add("np")
            return f"np.transpose({x}, {order})", ATOM
        if node.name == "index":
            items = [":"] * shift + [_item(i) for i in node.params]
            return f"{self.atom(node.args[0])}[{', '.join(items)}]", ATOM
        if node.name == "matmul":
            return self.matmul(node)
        args = [self.aligned(node, a) for a in node.args]
        if node.name in _INFIX:
            symbol, p = _INFIX[node.name]
            return binop(symbol, p, *args)
        if node.name == "pow":
            return binop("**", 4, *args)
        if node.name == "neg":
            (a, pa), = args
            return f"-{wrap(a, pa < 3)}", 3
        f = FUNCTIONS[node.name]
        (x, px), = args
        if self.lang == "numpy":
            self.uses.add("np")
            return f.numpy_source.format(x=wrap(x, px < ATOM)), ATOM
        if f.torch.startswith("nn.functional."):
            self.uses.add("F")
            return f"F.{f.torch[len('nn.functional.'):]}({x})", ATOM
        self.uses.add("torch")
        return f"torch.{f.torch}({x})", ATOM

    def atom(self, node: Node) -> str:
        text, p = self(node)
        return wrap(text, p < ATOM)

    def along(self, node: Op, shift: int) -> tuple[str, int]:
        x, axis = self.atom(node.args[0]), node.axis + shift
        if self.lang == "torch":
            self.uses.add("torch")
            fn = {"max": "amax", "min": "amin"}.get(node.name, node.name)
            return f"torch.{fn}({x}, {axis})", ATOM
        self.uses.add("np")
        if node.name in ("softmax", "log_softmax"):
            shifted = f"({x} - np.max({x}, axis={axis}, keepdims=True))"
            log_sum = f"np.log(np.sum(np.exp({shifted}), axis={axis}, keepdims=True))"
            return (f"np.exp({shifted} - {log_sum})" if node.name == "softmax" else f"({shifted} - {log_sum})"), ATOM
        return f"np.{node.name}({x}, axis={axis})", ATOM

    def matmul(self, node: Op) -> tuple[str, int]:
        a_node, b_node = node.args
        a, b = self.atom(a_node), self.atom(b_node)
        expand = (lambda t, k: f"{t}.unsqueeze({k})") if self.lang == "torch" else \
            (lambda t, k: f"np.expand_dims({t}, {k})")
        squeeze = (lambda t, k: f"{t}.squeeze({k})") if self.lang == "torch" else (lambda t, k: f"np.squeeze({t}, {k})")
        a_vec, b_vec = a_node.shape.rank == 1, b_node.shape.rank == 1
        ra, rb = max(a_node.shape.rank, 2), max(b_node.shape.rank, 2)
        rank = max(ra, rb)
        if a_vec:
            a = expand(a, -2)
        if b_vec:
            b = expand(b, -1)
        for text_name, operand, r in (("a", a_node, ra), ("b", b_node, rb)):
            k = rank - r if operand.batched else 0
            if k:
                padded = f"{a if text_name == 'a' else b}[:, {', '.join(['None'] * k)}]"
                a, b = (padded, b) if text_name == "a" else (a, padded)
        out = f"({a} @ {b})"
        if b_vec:
            out = squeeze(out, -1)
        if a_vec:
            out = squeeze(out, -2 if not b_vec else -1)
        return out, ATOM

    def join(self, node: Op) -> tuple[str, int]:
        lib = "torch" if self.lang == "torch" else "np"
        self.uses.add(lib)
        batched = node.batched
        parts = []
        first_batched = next((self(a)[0] for a in node.args if a.batched), None)
        for a in node.args:
            text = self(a)[0]
            if batched and not a.batched:        # a param or number: the same for every sample
                text = (f"{text}.expand({first_batched}.shape[0], *{text}.shape)" if lib == "torch" else
                        f"np.broadcast_to({text}, (len({first_batched}),) + np.shape({text}))")
            parts.append(text)
        axis = node.axis + (1 if batched else 0)
        fn = ("cat" if lib == "torch" else "concatenate") if node.name == "concat" else "stack"
        keyword = "dim" if lib == "torch" else "axis"
        return f"{lib}.{fn}([{', '.join(parts)}], {keyword}={axis})", ATOM


def _item(item) -> str:
    if isinstance(item, int):
        return str(item)
    start, stop, step = item
    text = f"{'' if start is None else start}:{'' if stop is None else stop}"
    return text + (f":{step}" if step is not None else "")
