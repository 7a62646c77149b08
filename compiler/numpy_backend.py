"""The numpy backend of the IR: data columns at load time and the recorded preprocessing at prediction time.

`evaluate(node, columns, rows=None, rng=None)` computes a data expression over
columns (arrays whose first axis runs over rows) with the primitives below and
compiler/ir_compile.py's per-sample rule. Element types follow the checker's
(shapes.result_dtype): integers stay integers, floats are float64 here and the
data loader casts them to the model's declared types. Generating functions (linspace,
normal, ...) make one value per row and draw from the seeded generator given.
numpy only: serving uses this without torch.
"""

from __future__ import annotations

import numpy as np

from dslc.errors import UserError

from .data_sources import GENERATORS
from .functions import FUNCTIONS
from .ir import Generate, Node, Ref
from .ir_compile import compile_node

ROWS, RNG = "__rows__", "__rng__"


def _quiet(fn):
    def run(*args):
        with np.errstate(all="ignore"):         # NaN/inf are found later, naming the rows
            return fn(*args)
    return run


_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide, "pow": np.power,
           "neg": np.negative, "matmul": np.matmul}


def _softmax(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis):
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


_ALONG = {"softmax": _softmax, "log_softmax": _log_softmax, "mean": np.mean, "sum": np.sum, "max": np.max,
          "min": np.min}


class NumpyBackend:
    def ref(self, node: Ref):
        name = node.name

        def read(env):
            try:
                return np.asarray(env[name])
            except KeyError:
                known = ", ".join(k for k in env if not k.startswith("__")) or "none"
                raise UserError(f"the data has no column '{name}' (columns: {known})") from None
        return read

    def const(self, value):
        if isinstance(value, tuple):              # fitted statistics, one per element
            return np.asarray(value, dtype=np.float64)
        return value                  # ints stay ints: label + 1 is still a label, as the checker types it

    def op(self, name: str):
        if name in _BINARY:
            return _quiet(_BINARY[name])
        f = FUNCTIONS[name]
        if name == "one_hot":
            return lambda x, n: f.numpy(np, x, n)
        return _quiet(lambda x: f.numpy(np, x))

    def pad(self, x, count: int):
        return x.reshape(x.shape[:1] + (1,) * count + x.shape[1:])

    def join(self, name: str, values: list, axis: int, batched: list[bool]):
        rows = next((len(v) for v, b in zip(values, batched) if b), None)
        if rows is not None:
            values = [v if b else np.broadcast_to(v, (rows,) + np.shape(v)) for v, b in zip(values, batched)]
        values = [np.asarray(v, dtype=np.float64) for v in values]
        at = axis + (1 if rows is not None else 0)
        return np.concatenate(values, axis=at) if name == "concat" else np.stack(values, axis=at)

    def along(self, name: str, x, axis: int):
        with np.errstate(all="ignore"):
            return _ALONG[name](np.asarray(x), axis=axis)

    def permute(self, x, order: tuple):
        return np.transpose(x, order)

    def expand(self, x, axis: int):
        return np.expand_dims(x, axis)

    def squeeze(self, x, axis: int):
        return np.squeeze(x, axis)

    def reduce(self, name: str):
        return np.mean if name == "mean" else np.sum

    def generate(self, node: Generate):
        g = GENERATORS[node.name]

        def make(env, **args):
            rows, rng = env.get(ROWS), env.get(RNG)
            if rows is None:
                raise UserError(f"{node.name}(...) makes one value per row and can only be used where the number of "
                                f"rows is known (generate, sequence)")
            for k, v in args.items():
                if np.ndim(v) != 0 and np.shape(v)[0] != rows:
                    raise UserError(f"{node.name}(...): '{k}' must be a number or a column of {rows} rows")
            if g.random and rng is None:
                raise UserError(f"{node.name}(...) draws random numbers but no seed was given")
            if node.name == "normal" and np.any(np.asarray(args["std"]) < 0):
                raise UserError("normal(...) needs std >= 0")
            if node.name == "uniform" and np.any(np.asarray(args["high"]) < np.asarray(args["low"])):
                raise UserError("uniform(...) needs low <= high")
            return g.numpy(np, rng, rows, **args)
        return make

    def _torch_only(self, node):
        raise TypeError(f"{type(node).__name__} runs on the torch backend only")

    chain = block = layer_call = loss = metric = _torch_only


BACKEND = NumpyBackend()
_cache: dict[Node, object] = {}


def compiled(node: Node):
    """The node compiled once for numpy (kept: data expressions are few and small)."""
    fn = _cache.get(node)
    if fn is None:
        fn = _cache[node] = compile_node(node, BACKEND)
    return fn


def evaluate(node: Node, columns: dict, rows: int | None = None, rng=None):
    """The value of a data expression over columns: an array with one entry per row, or a plain number."""
    env = dict(columns)
    env[ROWS], env[RNG] = rows, rng
    value = compiled(node)(env)
    return float(value) if np.ndim(value) == 0 else value


def evaluate_column(node: Node, columns: dict, rows: int, rng=None) -> np.ndarray:
    """Like `evaluate`, but a constant becomes a column of `rows` equal values."""
    value = evaluate(node, columns, rows, rng)
    if np.ndim(value) == 0:
        return np.full(rows, float(value))
    return value

