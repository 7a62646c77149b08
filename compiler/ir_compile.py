"""The one evaluator of the IR: an expression compiled once into nested closures, for any array backend.

`compile_node(node, backend)` returns `fn(env) -> value`. The traversal and the
per-sample rule live here, once; a backend supplies the primitives (torch in
compiler/torch_backend.py, numpy in compiler/numpy_backend.py) and resolves
names from `env`. The rule: per-sample axes line up from the right; a batched
operand with fewer per-sample axes than the result gets size-1 axes inserted
right after its batch axis (`y` of [B] against `output` of [B, 1] becomes
[B, 1], never [B, B]); an unbatched operand (a param, a constant) lines up
from the right by itself. A step pays only for the array operations: nothing
here walks the tree after compiling.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from .ir import BlockCall, Chain, Const, Fitted, Generate, LayerCall, LossCall, MetricCall, Node, Op, Reduce, Ref

Compiled = Callable[[dict], Any]


class Backend(Protocol):
    def ref(self, node: Ref) -> Compiled: ...
    def const(self, value) -> Any: ...
    def op(self, name: str) -> Callable: ...                          # add, sub, ..., exp, tanh, ...
    def pad(self, x, count: int) -> Any: ...                          # insert `count` axes after the batch axis
    def join(self, name: str, values: list, axis: int, batched: list[bool]) -> Any: ...   # concat / stack
    def along(self, name: str, x, axis: int) -> Any: ...    # softmax, log_softmax, mean, sum, max, min on an axis
    def permute(self, x, order: tuple) -> Any: ...          # all axes of the array, batch axis included
    def expand(self, x, axis: int) -> Any: ...              # a new axis (negative: from the end)
    def squeeze(self, x, axis: int) -> Any: ...
    def reduce(self, name: str) -> Callable: ...
    def chain(self, node: Chain) -> Callable: ...                     # fn(env, x)
    def block(self, node: BlockCall) -> Callable: ...                 # fn(env, x)
    def layer_call(self, node: LayerCall) -> Callable: ...            # fn(env, x, **values)
    def loss(self, node: LossCall) -> Callable: ...                   # fn(output, target)
    def metric(self, node: MetricCall) -> Callable: ...               # fn(output, target) -> (sum, count)
    def generate(self, node: Generate) -> Callable: ...               # fn(env, **args)


def compile_node(node: Node, backend: Backend) -> Compiled:
    if isinstance(node, Ref):
        return backend.ref(node)
    if isinstance(node, Const):
        value = backend.const(node.value)
        return lambda env: value
    if isinstance(node, Op):
        return _op(node, backend)
    if isinstance(node, Reduce):
        arg, fn = compile_node(node.arg, backend), backend.reduce(node.name)
        return lambda env: fn(arg(env))
    if isinstance(node, (Chain, BlockCall)):
        inner = compile_node(node.input, backend)
        fn = backend.chain(node) if isinstance(node, Chain) else backend.block(node)
        return lambda env: fn(env, inner(env))
    if isinstance(node, LayerCall):
        inner = compile_node(node.input, backend)
        values = {k: compile_node(v, backend) for k, v in node.values}
        fn = backend.layer_call(node)
        return lambda env: fn(env, inner(env), **{k: v(env) for k, v in values.items()})
    if isinstance(node, (LossCall, MetricCall)):
        out, target = compile_node(node.output, backend), compile_node(node.target, backend)
        fn = backend.loss(node) if isinstance(node, LossCall) else backend.metric(node)
        return lambda env: fn(out(env), target(env))
    if isinstance(node, Generate):
        args = {k: compile_node(v, backend) for k, v in node.args}
        fn = backend.generate(node)
        return lambda env: fn(env, **{k: a(env) for k, a in args.items()})
    if isinstance(node, Fitted):
        raise TypeError(f"{node.name}(...) has no statistics yet: fit the expression on the training split first "
                        f"(compiler/fitting.py)")
    raise TypeError(f"cannot compile {type(node).__name__}")


def padding(node: Node, operand: Node) -> int:
    """How many size-1 axes a batched operand needs after its batch axis to line up with `node`'s per-sample axes."""
    return node.shape.rank - operand.shape.rank if operand.batched else 0


def _aligned(node: Node, operand: Node, backend: Backend) -> Compiled:
    fn = compile_node(operand, backend)
    k = padding(node, operand)
    if k <= 0:
        return fn
    pad = backend.pad
    return lambda env: pad(fn(env), k)


def _op(node: Op, backend: Backend) -> Compiled:
    shift = 1 if node.args and node.args[0].batched else 0        # per-sample axis k is array axis k + shift
    if node.name in ("softmax", "log_softmax", "mean", "sum", "max", "min"):
        x, along, name, axis = compile_node(node.args[0], backend), backend.along, node.name, node.axis + shift
        return lambda env: along(name, x(env), axis)
    if node.name == "permute":
        x, permute = compile_node(node.args[0], backend), backend.permute
        order = tuple(range(shift)) + tuple(i + shift for i in node.params)
        return lambda env: permute(x(env), order)
    if node.name == "index":
        x = compile_node(node.args[0], backend)
        key = (slice(None),) * shift + tuple(i if isinstance(i, int) else slice(*i) for i in node.params)
        return lambda env: x(env)[key]
    if node.name == "matmul":
        return _matmul(node, backend)
    if node.name in ("concat", "stack"):
        parts = [compile_node(a, backend) for a in node.args]
        batched = [a.batched for a in node.args]
        join, name, axis = backend.join, node.name, node.axis
        return lambda env: join(name, [p(env) for p in parts], axis, batched)
    fn = backend.op(node.name)
    if node.name == "one_hot":                # adds an axis: its operands line up as they are
        x, n = (compile_node(a, backend) for a in node.args)
        return lambda env: fn(x(env), n(env))
    if len(node.args) == 1:
        (x,) = [_aligned(node, a, backend) for a in node.args]
        return lambda env: fn(x(env))
    a, b = (_aligned(node, arg, backend) for arg in node.args)
    return lambda env: fn(a(env), b(env))


def _matmul(node: Op, backend: Backend) -> Compiled:
    """a @ b per sample: a vector becomes a row (left) or a column (right) and is squeezed out again; batched
    operands get size-1 axes after the batch axis until their leading per-sample axes line up."""
    a_node, b_node = node.args
    a, b = compile_node(a_node, backend), compile_node(b_node, backend)
    expand, squeeze, pad, mm = backend.expand, backend.squeeze, backend.pad, backend.op("matmul")
    a_vec, b_vec = a_node.shape.rank == 1, b_node.shape.rank == 1
    ra, rb = max(a_node.shape.rank, 2), max(b_node.shape.rank, 2)
    rank = max(ra, rb)
    pad_a = rank - ra if a_node.batched else 0
    pad_b = rank - rb if b_node.batched else 0

    def run(env):
        x, y = a(env), b(env)
        if a_vec:
            x = expand(x, -2)
        if b_vec:
            y = expand(y, -1)
        if pad_a:
            x = pad(x, pad_a)
        if pad_b:
            y = pad(y, pad_b)
        out = mm(x, y)
        if b_vec:
            out = squeeze(out, -1)
        if a_vec:
            out = squeeze(out, -2 if not b_vec else -1)
        return out
    return run
