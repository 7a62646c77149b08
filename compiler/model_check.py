"""Checking one `model` block: names, layer arguments and shape inference, into a ModelIR.

The running value starts as the model's only input; each stage (a layer from
the catalog, a block, or `each STAGE`) maps its shape to the next. Bindings
and `return` are expressions over inputs, params, bindings and block calls.
Every mistake is reported with its span; checking goes on to find the rest.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager

from dslc.dsl import ast
from dslc.dsl.diagnostics import Report, did_you_mean

from .expr_check import Bail as _Bail
from .expr_check import STRUCTURAL, ExprChecker, const
from .functions import ELEMENTWISE
from .initializers import INITIALIZERS
from .ir import BlockCall, BlockIR, Chain, LayerCall, LayerIR, ModelIR, Node, ParamIR, Ref
from .layers import LAYERS, layer_params
from .shapes import DTYPES, FLOAT_DTYPES, ShapeError, TensorShape
from .values import Arg, CallValue, Evaluator, NotConstant, bind

MAX_DIM = 1 << 31
MAX_PARAMS = 2_000_000_000     # 8 GB of float32 weights: beyond this a spec is a mistake
MAX_REPEAT = 1000


def tensor_type(t: ast.TensorType, report: Report) -> TensorShape | None:
    if t.dtype not in DTYPES:
        report.error(f"unknown element type '{t.dtype}'", t.span, did_you_mean(t.dtype, DTYPES))
        return None
    for d in t.dims:
        if isinstance(d, int) and not 0 < d < MAX_DIM:
            report.error(f"a dimension must be between 1 and {MAX_DIM - 1}, not {d}", t.span)
            return None
    return TensorShape(t.dtype, tuple(t.dims))


class ModelChecker:
    def __init__(self, model: ast.Model, evaluate: Evaluator, report: Report):
        self.m = model
        self.ev = evaluate
        self.report = report
        self.ir = ModelIR(model.name, {}, span=model.span)
        self.values: dict[str, Node] = {}           # inputs, params, bindings (Refs)
        self.block_defs: dict[str, ast.BlockDef] = {}
        self.counters: dict[str, dict[str, int]] = {}
        self.used: set[str] = set()
        self.failed_blocks: set[str] = set()       # reported once; later calls stay quiet
        self.building: dict[str, list] = {}          # block path -> its steps so far
        self.pending_values: dict[str, list] = {}    # layer name -> its value arguments (memory=...)
        self.instantiating: list[str] = []            # the blocks being built, innermost last
        self.current: Node | None = None
        self.open_chain: tuple[Node, list[str], Chain] | None = None     # see `closed`
        self.exprs = ExprChecker(report, evaluate, self.name, self.call, f"in model {model.name}")
        self.chain_broken = False      # a stage of the running chain failed: later shapes are unknown
        self.returned = False
        self.first_stage = None         # the first stage of the top-level chain, if any

    # ------------------------------------------------------------ entry

    def check(self) -> ModelIR | None:
        m = self.m
        if not m.inputs:
            self.report.error(f"model {m.name} declares no inputs", m.span,
                              f"declare them with types: model {m.name}(x: f32[784]) {{ ... }}")
        for inp in m.inputs:
            if inp.name in self.values:
                self.report.error(f"input '{inp.name}' is declared twice", inp.span)
                continue
            shape = tensor_type(inp.type, self.report)
            if shape:
                self.ir.inputs[inp.name] = shape
                mask = (inp.name, None) if shape.is_int and shape.rank >= 1 else None   # token ids: padding, once embedded
                self.values[inp.name] = Ref(name=inp.name, role="input", shape=shape, batched=True, mask=mask)
        for st in m.body:
            if isinstance(st, ast.BlockDef):
                if st.name in self.block_defs:
                    self.report.error(f"block '{st.name}' is defined twice", st.span,
                                      f"the first is at line {self.block_defs[st.name].span.line}; rename one")
                elif st.name in LAYERS:
                    self.report.error(f"block '{st.name}' has the name of a layer", st.span, "choose another name")
                else:
                    self.block_defs[st.name] = st
        for st in m.body:
            try:
                self.statement(st)
            except _Bail:
                pass
        if not self.returned and not self.chain_broken:
            if self.current is None:
                if len(self.ir.inputs) == 1 and len(self.m.inputs) == 1:     # no stages: the identity
                    self.current = self.values[next(iter(self.ir.inputs))]
                    self.used.update(self.ir.inputs)
                elif len(self.ir.inputs) > 1:
                    self.report.error(f"model {m.name} has several inputs and no `return`", m.span,
                                      "end the model with `return EXPR`")
            if self.current is not None:
                self.ir.outputs = [self.closed(self.current)]
        for name, b in self.block_defs.items():
            if name not in self.used:
                self.report.warning(f"block '{name}' is never used", b.span)
                for st in b.stages:
                    self.validate(st, scope=name)
        self.count_params()
        for name in self.ir.inputs:
            if name not in self.used:
                self.report.warning(f"input '{name}' is never used", self._input_span(name))
        return self.ir

    def count_params(self) -> None:
        """Refuse models too large to build, before any weight is allocated."""
        total = sum(layer_params(l) for _, l in self.ir.all_layers) + sum(p.shape.numel() or 0 for p in self.ir.params)
        self.ir.param_count = total
        if total > MAX_PARAMS:
            self.report.error(f"model {self.m.name} would have {total:,} parameters, more than the "
                              f"{MAX_PARAMS:,} dslc builds", self.m.span, "use smaller layers")

    def _input_span(self, name):
        return next((i.span for i in self.m.inputs if i.name == name), self.m.span)

    # ------------------------------------------------------------ statements

    def statement(self, st) -> None:
        if self.returned and not isinstance(st, ast.BlockDef):
            self.report.error("nothing may follow `return` in a model", st.span, "move `return` to the end")
            raise _Bail
        if isinstance(st, ast.Param):
            self.param(st)
        elif isinstance(st, ast.BlockDef):
            return
        elif isinstance(st, ast.Binding):
            self._new_name(st.name, st.span)
            value = self.exprs.check(st.value)
            self.ir.steps.append((st.name, value))
            # Later uses read the computed value (Ref), so a binding runs once per forward pass.
            self.values[st.name] = Ref(name=st.name, role="binding", shape=value.shape, batched=value.batched,
                                       mask=value.mask)
        elif isinstance(st, ast.Unpack):
            self.unpack(st)
        elif isinstance(st, ast.Return):
            self.returned = True
            if self.first_stage is not None:
                self.report.error("the stages of the model's chain compute a value that `return` never uses",
                                  self.first_stage.span, "with `return`, put the stages in a block and call it "
                                  "(h = encoder(x)), or leave `return` out to return the chain's value")
            outs = [self.exprs.check(v) for v in st.values]
            for v, o in zip(st.values, outs):
                if not o.batched:
                    self.report.error("this output does not depend on any input", v.span)
            self.ir.outputs = outs
        else:
            self.top_stage(st)

    def unpack(self, st: ast.Unpack) -> None:
        """`a, b = split(h, 2)`: one binding per part."""
        for name in st.names:
            self._new_name(name, st.span)
        e = st.value
        if not (isinstance(e, ast.Call) and isinstance(e.func, ast.Var) and e.func.name == "split"):
            self.report.error("only split(...) gives several values to name", e.span,
                              "write one binding per value: a = ..., b = ...")
            raise _Bail
        parts = self.exprs.split_parts(e)
        if len(parts) != len(st.names):
            self.report.error(f"split makes {len(parts)} parts but {len(st.names)} names take them", st.span)
            raise _Bail
        for name, value in zip(st.names, parts):
            self.ir.steps.append((name, value))
            self.values[name] = Ref(name=name, role="binding", shape=value.shape, batched=value.batched,
                                    mask=value.mask)

    def _new_name(self, name: str, span) -> None:
        if name in self.values or name in self.block_defs:
            self.report.error(f"'{name}' is already defined in model {self.m.name}", span,
                              "each input, param, block and binding needs its own name")
            raise _Bail

    def param(self, st: ast.Param) -> None:
        self._new_name(st.name, st.span)
        declared = tensor_type(st.type, self.report) if st.type else None
        if st.type and declared is None:
            raise _Bail
        try:
            value = self.ev(st.value)
        except NotConstant:
            raise _Bail from None
        if isinstance(value, CallValue):
            init = INITIALIZERS.get(value.name)
            if init is None:
                self.report.error(f"unknown initialiser '{value.name}'", value.name_span,
                                  did_you_mean(value.name, INITIALIZERS))
                raise _Bail
            if declared is None:
                self.report.error(f"param {st.name} needs a type to be drawn from {value.name}(...)", st.span,
                                  f"write: param {st.name}: f32[3] = {value.name}(...)")
                raise _Bail
            args = bind(value.name, init.args, list(value.args), value.span, self.report)
            if args is None:
                raise _Bail
            if init.needs_matrix and declared.rank < 2:
                self.report.error(f"{value.name} fills matrices, but param {st.name} is {declared}", st.value.span,
                                  "declare at least two dims, or use normal(...) or uniform(...)")
            shape, init_value = declared, CallValue(value.name, value.args, value.span)
        else:
            dims = _list_dims(value)
            if dims is None:
                self.report.error(f"param {st.name} must start as a number, a list of numbers or a distribution",
                                  st.value.span, "e.g. param w = 1.0, or param w: f32[3] = normal(0, 1)")
                raise _Bail
            shape = declared or TensorShape("f32", dims)
            if declared and declared.dims != dims and dims != ():
                self.report.error(f"param {st.name} is declared {declared} but its value has dims {list(dims)}", st.span)
                raise _Bail
            init_value = value
        if shape.dtype not in FLOAT_DTYPES or shape.symbolic:
            self.report.error(f"param {st.name} must be a floating-point tensor of fixed size, not {shape}", st.span)
            raise _Bail
        self.ir.params.append(ParamIR(st.name, shape, init_value))
        self.values[st.name] = Ref(name=st.name, role="param", shape=shape, batched=False)

    # ------------------------------------------------------------ stages

    def top_stage(self, st) -> None:
        if self.chain_broken:
            self.validate(st, scope="")
            raise _Bail
        if self.current is None:
            if len(self.ir.inputs) != len(self.m.inputs):    # an input's type is wrong, and reported
                self.chain_broken = True
                self.validate(st, scope="")
                raise _Bail
            if len(self.ir.inputs) != 1:
                self.chain_broken = True
                self.report.error(f"with {len(self.ir.inputs)} inputs, a stage needs to know which one it takes",
                                  st.span, "put the stages in a `block` and call it: h = encoder(x)")
                raise _Bail
            name = next(iter(self.ir.inputs))
            self.used.add(name)
            self.current = self.values[name]
            self.first_stage = st
        try:
            self.current = self.stage(st, self.current, scope="")
        except _Bail:
            self.chain_broken = True
            raise

    def validate(self, st, scope: str) -> None:
        """Check what can be checked of a stage whose input shape is unknown: its name and arguments."""
        if isinstance(st, (ast.EachStage, ast.RepeatStage)):
            return self.validate(st.stage, scope)
        if isinstance(st, ast.ResidualStage):
            for inner in st.stages:
                self.validate(inner, scope)
            return
        if st.name in self.block_defs:
            return
        try:
            self.layer_args(st, scope)
        except _Bail:
            pass

    def stage(self, st, value: Node, scope: str, copy: bool = False) -> Node:
        """Apply one stage to `value`; in the model's chain (scope "") the result is its IR node, inside a block
        (scope: the block's path) a placeholder with its shape. `copy`: a block gets weights of its own."""
        if isinstance(st, (ast.EachStage, ast.RepeatStage, ast.ResidualStage)) or st.name in self.block_defs:
            value = self.closed(value)
        if isinstance(st, ast.EachStage):
            return self.each(st, value, scope)
        if isinstance(st, ast.RepeatStage):
            return self.repeat(st, value, scope)
        if isinstance(st, ast.ResidualStage):
            return self.residual(st, value, scope)
        if st.name in self.block_defs:
            return self.use_block(st.name, st.args, value, scope, st.span, copy=copy, in_chain=True)
        layer_ir = self.layer(st, value.shape, scope, each=False)
        return self.add_layer(layer_ir, value, scope)

    def closed(self, value: Node) -> Node:
        """`value` itself, or the Chain it stands for when it is the chain still being extended: layers are
        appended to a list while the model's chain grows (linear in the number of stages), and the Chain
        node is made once something else takes it."""
        if self.open_chain is not None and value is self.open_chain[2]:
            start, names, _ = self.open_chain
            self.open_chain = None
            return Chain(layers=tuple(names), input=start, shape=value.shape, batched=True, mask=value.mask)
        return value

    def add_layer(self, layer_ir: LayerIR, value: Node, scope: str) -> Node:
        """The value after a layer: top-level layers join the model's chain; block layers join the block.
        A padding mask follows the time axis: an embedding with `padding` starts one from its token ids,
        layers that keep the time axis pass it on, mask-aware layers read it."""
        entry = LAYERS[layer_ir.layer]
        mask_in = value.mask if value.mask and value.mask[1] is not None else None
        if entry.mask_aware and mask_in:
            layer_ir = dataclasses.replace(layer_ir, mask=mask_in)
        out = layer_ir.output
        if layer_ir.layer == "embedding" and value.mask and layer_ir.args.get("padding") is not None:
            mask = (value.mask[0], layer_ir.args["padding"])
        elif value.mask and out.rank >= 2 and value.shape.rank >= 1 and out.dims[0] == value.shape.dims[0] \
                and (value.mask[1] is not None or out.is_int):
            mask = value.mask
        else:
            mask = None
        if scope:
            self.building[scope].append(layer_ir)
            return Ref(name="x", role="input", shape=out, batched=True, mask=mask)
        self.ir.layers.append(layer_ir)
        values = self.pending_values.pop(layer_ir.name, None)
        if values:
            return LayerCall(layer=layer_ir.name, input=self.closed(value), values=tuple(values), shape=out,
                             batched=True, mask=mask)
        if self.open_chain is not None and value is self.open_chain[2]:
            start, names, _ = self.open_chain
            names.append(layer_ir.name)
        elif isinstance(value, Chain):
            start, names = value.input, [*value.layers, layer_ir.name]
        else:
            start, names = value, [layer_ir.name]
        growing = Chain(layers=(), input=start, shape=out, batched=True, mask=mask)    # stands for the chain
        self.open_chain = (start, names, growing)
        return growing

    def add_block(self, block: BlockIR, value: Node, scope: str) -> Node:
        mask = block.masks[1]
        if scope:
            self.building[scope].append(block.name)
            return Ref(name="x", role="input", shape=block.output, batched=True, mask=mask)
        return BlockCall(block=block.name, input=value, shape=block.output, batched=True, mask=mask)

    def next_name(self, scope: str, base: str) -> str:
        """`linear_3`, `res_2`, `residual_1`: the next module name of a kind inside a scope."""
        counters = self.counters.setdefault(scope, {})
        counters[base] = counters.get(base, 0) + 1
        return f"{base}_{counters[base]}"

    def layer_args(self, st: ast.LayerStage, scope: str):
        """The catalog entry a stage names and its bound arguments (reported and _Bail if wrong)."""
        layer = LAYERS.get(st.name)
        if layer is None:
            known = list(LAYERS) + list(self.block_defs)
            self.report.error(f"unknown layer '{st.name}'", st.name_span if st.name_span.known else st.span,
                              did_you_mean(st.name, known) or "see `dslc layers` for the catalog")
            raise _Bail
        values = self.ev.values(st.args)
        if values is None:
            raise _Bail
        args = bind(st.name, layer.args, values, st.span, self.report, known_names=self.ev.env)
        if args is None:
            raise _Bail
        args.pop("__spans__")
        return layer, args

    def layer(self, st: ast.LayerStage, shape: TensorShape, scope: str, each: bool) -> LayerIR:
        layer, args = self.layer_args(st, scope)
        values = self.value_arguments(st, layer, args, scope)
        shape_args = {**args, **{k: v.shape for k, v in values}}
        try:
            out = layer.shape(shape, shape_args)
        except ShapeError as err:
            self.report.error(err.message, st.span, err.hint)
            raise _Bail from None
        for d in out.dims:
            if isinstance(d, int) and d >= MAX_DIM:
                self.report.error(f"{st.name} would produce a dimension of {d}", st.span)
                raise _Bail
        name = self.next_name(scope, st.name)
        if values:
            self.pending_values[name] = values
        value_masks = tuple((k, v.mask) for k, v in values if v.mask and v.mask[1] is not None)
        return LayerIR(name, st.name, args, shape, out, each, st.span, value_masks=value_masks)

    def value_arguments(self, st: ast.LayerStage, layer, args: dict, scope: str) -> list[tuple[str, Node]]:
        """The model values a layer's value arguments name (memory=enc); only the model's own layers see them."""
        out = []
        for name in layer.value_args:
            symbol = args.get(name)
            if symbol is None:
                continue
            span = next((a.span for a in st.args if a.name == name), st.span)
            if scope:
                self.report.error(f"{name}={symbol.name} names a value of the model, which a block cannot see", span,
                                  f"call the layer in the model on values: h = {st.name}(h, ..., {name}={symbol.name})")
                raise _Bail
            value = self.values.get(symbol.name)
            if value is None or not value.batched:
                known = [k for k, v in self.values.items() if v.batched]
                self.report.error(f"{name}={symbol.name}: the model has no value '{symbol.name}'", span,
                                  did_you_mean(symbol.name, known) or "name an input or a binding")
                raise _Bail
            self.used.add(symbol.name)
            args[name] = symbol.name
            out.append((name, value))
        return out

    def each(self, st: ast.EachStage, value: Node, scope: str):
        inner = st.stage
        shape = value.shape
        if not isinstance(inner, ast.LayerStage) or inner.name in self.block_defs:
            self.report.error("`each` applies one layer at every time step", st.span,
                              "write each linear(1), not each of a block, a repeat or another each")
            raise _Bail
        if shape.rank < 2:
            self.report.error(f"`each` needs a sequence [T, ...] but gets {shape.dims_text}", st.span,
                              "it follows a recurrent layer, whose output has a time axis")
            raise _Bail
        spec = LAYERS.get(inner.name)
        if spec is not None and spec.sequence_input:
            self.report.error(f"{inner.name} already works on whole sequences; `each` is for per-step layers", st.span)
            raise _Bail
        step = TensorShape(shape.dtype, shape.dims[1:])
        layer_ir = self.layer(inner, step, scope, each=True)
        out = TensorShape(layer_ir.output.dtype, (shape.dims[0],) + layer_ir.output.dims)
        layer_ir = LayerIR(layer_ir.name, layer_ir.layer, layer_ir.args, shape, out, True, st.span)
        return self.add_layer(layer_ir, value, scope)

    def repeat(self, st: ast.RepeatStage, value: Node, scope: str) -> Node:
        """`repeat(N) STAGE`: N copies, each with its own weights; the stage must give back its input's shape."""
        try:
            n = self.ev(st.count)
        except NotConstant:
            raise _Bail from None
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_REPEAT:
            self.report.error(f"repeat takes a whole number of copies from 1 to {MAX_REPEAT}, not {n!r}",
                              st.count.span)
            raise _Bail
        for i in range(n):
            before = value.shape
            value = self.stage(st.stage, value, scope, copy=True)
            if value.shape != before:
                self.report.error(f"repeat needs a stage that gives back the shape it takes, but this one turns "
                                  f"{before} into {value.shape}", st.stage.span,
                                  "repeat stages that keep the shape (a residual block, a layer of the same width); "
                                  "put a first copy before the repeat to change the shape")
                raise _Bail
        return value

    def residual(self, st: ast.ResidualStage, value: Node, scope: str) -> Node:
        """`residual { STAGES }`: the stages' value plus the value they started from (same shape)."""
        if not st.stages:
            self.report.error("residual needs stages: residual { linear(64) relu }", st.span)
            raise _Bail
        path = self.child_path(scope, self.next_name(scope, "residual"))
        block = self.build_block(path, st.stages, value, residual=True, span=st.span)
        return self.add_block(block, value, scope)

    def child_path(self, scope: str, name: str) -> str:
        return f"{scope}.{name}" if scope else name

    def use_block(self, name: str, args, value: Node, scope: str, span, copy: bool, in_chain: bool) -> Node:
        """A use of `block name`: blocks without parameters used in the model share one set of weights;
        a block with parameters, one repeated, or one used inside another block is a copy of its own."""
        self.used.add(name)
        d = self.block_defs[name]
        if args and not d.params:
            self.report.error(f"block '{name}' takes no arguments", span,
                              f"write just `{name}` in a chain, or call it on a value: {name}(x)" if in_chain
                              else f"call it on one value: {name}(x)")
            raise _Bail
        bound = self.block_arguments(d, args, span)
        if not value.batched:
            self.report.error(f"block '{name}' is applied to a value that does not depend on any input", span)
            raise _Bail
        shared = not d.params and not copy and not scope
        if shared:
            existing = self.ir.blocks.get(name)
            if existing is not None:
                if existing.input != value.shape:
                    self.report.error(f"block '{name}' was first called with {existing.input} and now with "
                                      f"{value.shape}", span,
                                      "a block has one set of weights, so its input shape must stay the same")
                    raise _Bail
                if existing.masks[0] != value.mask:
                    self.report.error(f"block '{name}' was first called on a value padded like "
                                      f"{_mask_text(existing.masks[0])} and now on one padded like "
                                      f"{_mask_text(value.mask)}", span,
                                      "its attention and time reductions read one padding mask")
                    raise _Bail
                return self.add_block(existing, value, scope)
            if name in self.failed_blocks:
                raise _Bail
            path = name
        else:
            path = self.child_path(scope, self.next_name(scope, name))
        if name in self.instantiating:
            self.report.error(f"block '{name}' uses itself", span, "a block cannot contain itself")
            raise _Bail
        self.instantiating.append(name)
        try:
            with self.param_env(bound):
                block = self.build_block(path, d.stages, value, residual=False, span=span, definition=name)
        except _Bail:
            self.failed_blocks.add(name)
            raise
        finally:
            self.instantiating.pop()
        return self.add_block(block, value, scope)

    def block_arguments(self, d: ast.BlockDef, args, span) -> dict:
        """The numbers a use of a block gives its parameters, by position or by name."""
        if not d.params:
            return {}
        values = self.ev.values(args or [])
        if values is None:
            raise _Bail
        specs = [Arg(p, "any") for p in d.params]
        bound = bind(d.name, specs, values, span, self.report, known_names=self.ev.env)
        if bound is None:
            raise _Bail
        bound.pop("__spans__")
        return bound

    @contextmanager
    def param_env(self, values: dict):
        """Evaluate a block's stages with its parameters' values beside the `let` variables."""
        if not values:
            yield
            return
        outer = self.ev
        self.ev = Evaluator({**outer.env, **values}, self.report)
        self.ev.used, self.ev.failed = outer.used, outer.failed
        try:
            yield
        finally:
            self.ev = outer

    def build_block(self, path: str, stages, value: Node, residual: bool, span, definition: str = "") -> BlockIR:
        shape = value.shape
        self.building[path] = []
        typed: Node = Ref(name="x", role="input", shape=shape, batched=True, mask=value.mask)
        for n, st in enumerate(stages):
            try:
                typed = self.stage(st, typed, scope=path)
            except _Bail:
                for rest in stages[n + 1:]:
                    self.validate(rest, scope=path)
                self.building.pop(path, None)
                raise
        if residual and typed.shape != shape:
            self.building.pop(path, None)
            self.report.error(f"residual adds its stages' value to the value they start from, so the stages must "
                              f"give back {shape} but they give {typed.shape}", span,
                              "end the stages with a layer of the input's width, e.g. linear(...) or conv2d(...)")
            raise _Bail
        out_mask = value.mask if residual else typed.mask
        block = BlockIR(path, tuple(self.building.pop(path)), shape, typed.shape, residual, definition,
                        (value.mask, out_mask))
        self.ir.blocks[path] = block
        return block

    # ------------------------------------------------------------ expressions

    def name(self, e: ast.Var) -> Node:
        """What a name means in a model expression: an input, param or binding, or a `let` number."""
        if e.name in self.ev.failed:
            raise _Bail
        if e.name in self.values:
            self.used.add(e.name)
            return self.values[e.name]
        if e.name in self.block_defs:
            self.report.error(f"block '{e.name}' must be called on a value", e.span, f"write {e.name}(x)")
            raise _Bail
        if e.name in self.ev.env:
            try:
                v = self.ev(e)
            except NotConstant:
                raise _Bail from None
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return const(v)
            self.report.error(f"'{e.name}' is not a number", e.span)
            raise _Bail
        known = list(self.values) + list(self.block_defs) + [k for k in self.ev.env if k != "data"]
        self.report.error(f"unknown name '{e.name}' in model {self.m.name}", e.span, did_you_mean(e.name, known))
        raise _Bail

    def call(self, e: ast.Call) -> Node | None:
        """A model's own calls: a block on a value. Layers are stages, not functions."""
        name = e.func.name
        if name in self.block_defs:
            if not e.args or e.args[0].name is not None:
                self.report.error(f"{name}(...) takes the value it is applied to first: {name}(x)", e.span)
                raise _Bail
            value = self.exprs.check(e.args[0].value)
            return self.use_block(name, e.args[1:], value, "", e.span, copy=False, in_chain=False)
        if name in LAYERS and name not in ELEMENTWISE and name not in STRUCTURAL:
            return self.layer_on_value(e)
        return None

    def layer_on_value(self, e: ast.Call) -> Node:
        """`linear(h, 10)`, `multihead_attention(q, 4, memory=enc)`: a layer of the model applied to a value."""
        name = e.func.name
        if not e.args or e.args[0].name is not None:
            self.report.error(f"{name}(...) on a value takes the value first: {name}(h, ...)", e.span,
                              f"or use it as a stage in a chain: ... {name}(...)")
            raise _Bail
        value = self.exprs.check(e.args[0].value)
        if not value.batched:
            self.report.error(f"{name} is applied to a value that does not depend on any input", e.span)
            raise _Bail
        st = ast.LayerStage(name=name, args=list(e.args[1:]), span=e.span, name_span=e.func.span)
        return self.add_layer(self.layer(st, value.shape, "", each=False), value, "")


def _mask_text(mask) -> str:
    if not mask:
        return "nothing (no padding)"
    return f"{mask[0]} == {mask[1]}" if mask[1] is not None else f"the token ids of {mask[0]}"


def _list_dims(v) -> tuple | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return ()
    if isinstance(v, list) and v:
        inner = [_list_dims(x) for x in v]
        if inner[0] is not None and all(i == inner[0] for i in inner):
            return (len(v),) + inner[0]
    return None
