"""The training loss as a torch function: a built-in loss or a loss expression, compiled once.

`make_loss(checked, module)` returns `loss(output, inputs, targets) -> 0-d tensor`.
A built-in (`loss = cross_entropy`) compares the model's only output with the
only target. A loss expression (`mean((output - t_c) ** 2)`,
`mse(output[1], x)`) is turned into nested Python closures before training,
so a step pays for the tensor operations only, never for walking the syntax
tree. Names resolve as the checker typed them: `output` (a tensor, or a
tuple for several outputs, indexed `output[i]`), the data's target names and
`target` (when there is one), the model's input names, its params, and
numeric `let` variables; functions come from compiler.functions (`mean` and
`sum` reduce over everything) and built-in losses can be called as
`mse(output[1], x)`.
"""

from __future__ import annotations

import operator

import torch

from dslc.compiler.functions import FUNCTIONS
from dslc.compiler.ir import CheckedSpec
from dslc.compiler.losses import LOSSES
from dslc.dsl import ast

_BINOPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "**": operator.pow}


def make_loss(checked: CheckedSpec, module: torch.nn.Module):
    """The spec's loss as `fn(output, inputs, targets) -> 0-d tensor`."""
    loss = checked.train.loss
    if loss.builtin is not None:
        fn = LOSSES[loss.builtin.name].build(loss.builtin.args)
        return lambda output, inputs, targets: fn(output, targets[0])
    return _Compiler(checked, module).compile(loss.expr)


class _Compiler:
    """Turns a loss expression into a closure `(output, inputs, targets) -> tensor`."""

    def __init__(self, checked: CheckedSpec, module: torch.nn.Module):
        data, model = checked.data, checked.model
        self.targets = {name: i for i, name in enumerate(data.target_names)}
        if len(data.target_names) == 1:
            self.targets.setdefault("target", 0)
        self.inputs = {name: i for i, name in enumerate(model.inputs)}
        self.params = {p.name for p in model.params}
        self.module = module
        self.all_lets = checked.lets
        self.lets = {k: float(v) for k, v in checked.lets.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def compile(self, e):
        if isinstance(e, ast.Number):
            value = e.value                     # ints stay ints: x ** 2 is torch's fast square
            return lambda o, i, t: value
        if isinstance(e, ast.Var):
            return self.name(e.name)
        if isinstance(e, ast.Index):
            base, index = self.compile(e.value), int(e.index.value)
            return lambda o, i, t: base(o, i, t)[index]
        if isinstance(e, ast.Neg):
            inner = self.compile(e.operand)
            return lambda o, i, t: -inner(o, i, t)
        if isinstance(e, ast.BinOp):
            op, left, right = _BINOPS[e.op], self.compile(e.left), self.compile(e.right)
            return lambda o, i, t: op(left(o, i, t), right(o, i, t))
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Var):
            return self.call(e)
        raise TypeError(f"cannot evaluate {type(e).__name__} in a loss (the checker should have refused it)")

    def name(self, name: str):
        if name == "output":
            return lambda o, i, t: o
        if name in self.targets:
            k = self.targets[name]
            return lambda o, i, t: t[k]
        if name in self.inputs:
            k = self.inputs[name]
            return lambda o, i, t: i[k]
        if name in self.params:
            param = getattr(self.module, name)
            return lambda o, i, t: param
        if name in self.lets:
            value = self.lets[name]
            return lambda o, i, t: value
        raise KeyError(f"unknown name '{name}' in the loss (the checker should have refused it)")

    def call(self, e: ast.Call):
        name = e.func.name
        if name in LOSSES:
            positional = [self.compile(a.value) for a in e.args if a.name is None]
            kwargs = {a.name: self.constant(a.value) for a in e.args if a.name}
            args = {a.name: kwargs.get(a.name, a.default) for a in LOSSES[name].args}
            fn = LOSSES[name].build(args)
            out, target = positional
            return lambda o, i, t: fn(out(o, i, t), target(o, i, t))
        f = FUNCTIONS[name]
        torch_fn = torch
        for part in f.torch_name.split("."):
            torch_fn = getattr(torch_fn, part)
        inner = self.compile(e.args[0].value)
        return lambda o, i, t: torch_fn(_tensor(inner(o, i, t)))

    def constant(self, e):
        """A keyword argument of a loss call in an expression: a number, boolean or `let` variable."""
        if isinstance(e, ast.Neg):
            return -self.constant(e.operand)
        if isinstance(e, (ast.Number, ast.Bool, ast.String)):
            return e.value
        if isinstance(e, ast.Var) and e.name in self.all_lets:
            return self.all_lets[e.name]
        raise TypeError("arguments of a loss inside a loss expression are numbers or variables")


def _tensor(x):
    return x if isinstance(x, torch.Tensor) else torch.tensor(x)


