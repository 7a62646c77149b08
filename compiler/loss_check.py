"""Checking the loss and the metrics of a `train` block into the IR.

Part of the spec checker (compiler/check.py mixes `LossChecks` in). A loss is a
catalog name (`loss = cross_entropy`: the model's only output against the data's
only target), a call with options (`cross_entropy(label_smoothing=0.1)`), or an
expression; all three become the same IR: `LossCall` nodes inside an expression
reduced to one number per batch. Names in a loss: `output` (`output[i]` of
several), the data's targets by name (and `target` when there is one), the
model's inputs and params, and `let` numbers. `mean`/`sum` reduce over the batch
and every axis; a loss of the catalog called on two values reduces itself.
Metrics become `MetricCall` nodes on the same output and target; a value metric of
a target scaled from one column (`price / 100`, `standardize(body_mass_g)`) compares
both in the column's own units (compiler/target_units.py), while the loss keeps
the scaled units it trains in.
"""

from __future__ import annotations

from dslc.dsl import ast
from dslc.dsl.diagnostics import did_you_mean
from dslc.dsl.format import format_expr

from .expr_check import Bail, ExprChecker, const
from .functions import FUNCTIONS
from .ir import DataIR, LossCall, LossIR, MetricCall, ModelIR, Node, Reduce, Ref, walk
from .losses import LOSSES
from .metrics import METRICS
from .shapes import INT_DTYPES, ShapeError, TensorShape, bind_dims, dim_bindings
from .target_units import scaled, undo
from .values import bind

SCALAR = TensorShape("f32", ())


def loss_fits(kind: str, name: str, output: TensorShape, target: TensorShape, classes: int | None) -> None:
    """Raise ShapeError when a loss or metric (`kind` "class" or "same") cannot compare this output with this target.

    Class losses read class scores on the output's last axis: [classes] against a label [], or [T, classes]
    against labels [T]. Value losses compare samples of equal size.
    """
    if not output.is_float:
        raise ShapeError(f"{name} needs floating-point outputs, not {output}")
    if kind == "class":
        if not target.is_int:
            raise ShapeError(f"{name} compares class scores with integer class labels, but the target is {target}",
                             "for regression use mse or l1")
        if output.rank != target.rank + 1:
            raise ShapeError(f"{name} needs one score per class on the last axis ({target.dims_text} labels need "
                             f"{list(target.dims) + ['classes']} scores), but the output is {output.dims_text}",
                             "end the model with linear(data.classes)")
        for o, t in zip(output.dims[:-1], target.dims):
            if isinstance(o, int) and isinstance(t, int) and o != t:
                raise ShapeError(f"{name}: the output {output.dims_text} gives scores for {o} positions but the "
                                 f"target {target.dims_text} has {t} labels")
        scores = output.dims[-1]
        if classes is not None and isinstance(scores, int) and scores != classes:
            raise ShapeError(f"the model gives {scores} class scores but the data has {classes} classes",
                             "use linear(data.classes) as the last layer")
        if isinstance(scores, str):
            raise ShapeError(f"{name} needs a fixed number of class scores, not {scores}")
        return
    if target.is_int:
        raise ShapeError(f"{name} compares values, but the target holds integer class labels {target}",
                         "for classification use cross_entropy")
    on, tn = output.numel(), target.numel()
    if on is not None and tn is not None and on != tn:
        raise ShapeError(f"{name}: the output {output.dims_text} and the target {target.dims_text} differ in size")
    if (on is None) != (tn is None) or (on is None and output.dims != target.dims):
        raise ShapeError(f"{name}: the output {output.dims_text} and the target {target.dims_text} may differ in size")


class LossChecks:
    """The loss and metric methods of SpecChecker (report, ev, lets, catalog_call come from it)."""

    def loss_names(self, model: ModelIR, data: DataIR) -> dict[str, Node]:
        """What a name means in a loss: outputs, targets, `target`, model inputs and params."""
        names: dict[str, Node] = {}
        bound = {}          # the model's symbolic dims at the sizes the data gives (f32[T, 1] fed [10, 1]: T = 10)
        for declared, node in zip(model.inputs.values(), data.inputs):
            bound.update(dim_bindings(declared, node.shape))
        outs = [bind_dims(o.shape, bound) for o in model.outputs]
        self.output_shapes = outs
        if len(outs) == 1:
            names["output"] = Ref(name="output", role="output", shape=outs[0], batched=True)
        for n, node in zip(data.target_names, data.targets):
            names[n] = Ref(name=n, role="target", shape=node.shape, batched=True)
        if len(data.targets) == 1:
            names.setdefault("target", Ref(name=data.target_names[0], role="target", shape=data.targets[0].shape,
                                           batched=True))
        for n, shape in model.inputs.items():
            names.setdefault(n, Ref(name=n, role="input", shape=shape, batched=True))
        for p in model.params:
            names.setdefault(p.name, Ref(name=p.name, role="param", shape=p.shape, batched=False))
        return names

    def check_loss(self, s, model: ModelIR, data: DataIR, block) -> LossIR:
        if s is None:
            self.report.error("the train block needs a `loss`", block.span,
                              "e.g. loss = cross_entropy, or loss = mean((output - y) ** 2)")
            raise Bail
        e = s.value
        classes = data.source.facts.get("classes")
        if (isinstance(e, ast.Var) and e.name in LOSSES) or (
                isinstance(e, ast.Call) and isinstance(e.func, ast.Var) and e.func.name in LOSSES
                and all(a.name for a in e.args)):
            call = self.catalog_call(s, LOSSES, "loss", None)
            output, target = self.default_pair(call.name, model, data, e.span)
            node = self.loss_call(call.name, call.args, output, target, classes, e.span)
            return LossIR(node=node, text=format_expr(e))
        if isinstance(e, ast.Var) and e.name not in self.lets and e.name not in self.loss_names(model, data):
            self.report.error(f"unknown loss '{e.name}'", e.span,
                              did_you_mean(e.name, LOSSES) or "losses: " + ", ".join(LOSSES))
            raise Bail
        node = self.loss_checker(model, data).check(e)
        self.no_category_arithmetic(node, data, e.span)
        if node.batched:
            self.report.error("the loss must be one number per batch, but this is one per sample", e.span,
                              "wrap it in mean(...)")
            raise Bail
        if node.shape.rank != 0:
            self.report.error(f"the loss must be one number, but this has shape {node.shape.dims_text}", e.span,
                              "reduce it with mean(...) or sum(...)")
            raise Bail
        if not node.shape.is_float:
            self.report.error(f"the loss must be a floating-point number to be minimised, but this is {node.shape}",
                              e.span)
            raise Bail
        if not any(isinstance(n, Ref) and n.batched for n in walk(node)):
            self.report.error("the loss does not depend on the data", e.span,
                              "use output and the targets, e.g. mean((output - y) ** 2)")
            raise Bail
        return LossIR(node=node, text=format_expr(e))

    def no_category_arithmetic(self, node: Node, data: DataIR, span) -> None:
        """A target that is a category column (an index into its categories) is compared by class losses only."""
        kinds = data.source.facts.get("kinds") or {}
        names = {n for n, t in zip(data.target_names, data.targets)
                 if isinstance(t, Ref) and t.role == "column" and kinds.get(t.name) == "category"}
        for n in walk(node):
            if isinstance(n, LossCall):
                continue
            if any(isinstance(a, Ref) and a.role == "target" and a.name in names for a in n.children()) \
                    and not isinstance(n, (LossCall, Reduce)):
                target = next(a.name for a in n.children() if isinstance(a, Ref) and a.name in names)
                self.report.error(f"target '{target}' is a category (an index into its categories), so arithmetic on "
                                  f"it means nothing", span, "compare class scores with it: loss = cross_entropy")
                raise Bail

    def default_pair(self, name: str, model: ModelIR, data: DataIR, span) -> tuple[Node, Node]:
        """(output, target) a catalog loss or metric compares when the spec names neither."""
        if len(model.outputs) != 1:
            self.report.error(f"model {model.name} has {len(model.outputs)} outputs; say which one the {name} uses",
                              span, f"e.g. loss = {name}(output[0], {data.target_names[0] if data.target_names else 'y'})")
            raise Bail
        if not data.targets:
            self.report.error(f"the data gives no targets for {name}", span, "add targets = [COLUMN] to the data block")
            raise Bail
        if len(data.targets) != 1:
            self.report.error(f"{name} compares the output with one target, but the data gives {len(data.targets)}",
                              span)
            raise Bail
        names = self.loss_names(model, data)
        return names["output"], names["target"]

    def loss_call(self, name: str, args: dict, output: Node, target: Node, classes, span) -> LossCall:
        if not output.batched or not target.batched:
            self.report.error(f"{name} compares per-sample values (the output, a target or an input)", span)
            raise Bail
        try:
            loss_fits(LOSSES[name].target, name, output.shape, target.shape, classes)
        except ShapeError as err:
            self.report.error(err.message, span, err.hint)
            raise Bail from None
        kwargs = tuple((k, v) for k, v in args.items() if not k.startswith("__"))
        return LossCall(name=name, args=kwargs, output=output, target=target, shape=SCALAR, batched=False)

    def loss_checker(self, model: ModelIR, data: DataIR) -> ExprChecker:
        names = self.loss_names(model, data)
        classes = data.source.facts.get("classes")

        def name(e: ast.Var) -> Node:
            if e.name in names:
                return names[e.name]
            if e.name == "output" and len(model.outputs) > 1:
                self.report.error("the model has several outputs; pick one with output[i]", e.span,
                                  f"output[0] to output[{len(model.outputs) - 1}]")
                raise Bail
            if e.name in self.ev.failed:
                raise Bail
            v = self.lets.get(e.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.ev.used.add(e.name)
                return const(v)
            self.report.error(f"unknown name '{e.name}' in the loss", e.span,
                              did_you_mean(e.name, list(names) + list(LOSSES) + list(FUNCTIONS))
                              or "the loss can use: " + ", ".join(names))
            raise Bail

        def call(e: ast.Call) -> Node | None:
            fname = e.func.name
            if fname in LOSSES:
                pos = [a for a in e.args if a.name is None]
                if len(pos) != 2:
                    self.report.error(f"{fname}(...) in a loss expression takes the output and the target: "
                                      f"{fname}(output, y)", e.span)
                    raise Bail
                kw = [a for a in e.args if a.name]
                values = self.ev.values(kw)
                args = bind(fname, LOSSES[fname].args, values or [], e.span, self.report) if values is not None else None
                if args is None:
                    raise Bail
                args.pop("__spans__")
                output, target = checker.check(pos[0].value), checker.check(pos[1].value)
                return self.loss_call(fname, args, output, target, classes, e.span)
            f = FUNCTIONS.get(fname)
            if f is not None and f.kind == "reduce" and not any(a.name == "axis" for a in e.args):
                if len(e.args) != 1 or e.args[0].name:
                    self.report.error(f"{fname}(...) takes one value", e.span)
                    raise Bail
                x = checker.check(e.args[0].value)
                if fname == "mean" and x.shape.dtype in INT_DTYPES:
                    self.report.error(f"mean needs floating-point values, not {x.shape}", e.span,
                                      "multiply by 1.0 first")
                    raise Bail
                return Reduce(name=fname, arg=x, shape=TensorShape(x.shape.dtype, ()), batched=False)
            return None

        def index(e) -> Node | None:
            """output[i] picks one of several outputs; any other subscript indexes per-sample axes."""
            if not (isinstance(e, ast.Index) and isinstance(e.value, ast.Var) and e.value.name == "output"
                    and len(model.outputs) > 1):
                return None
            if not (isinstance(e.index, ast.Number) and isinstance(e.index.value, int)):
                self.report.error("an output index is a whole number", e.index.span)
                raise Bail
            i = e.index.value
            if not 0 <= i < len(model.outputs):
                self.report.error(f"the model has {len(model.outputs)} outputs; output[{i}] does not exist",
                                  e.index.span, f"use output[0] to output[{len(model.outputs) - 1}]")
                raise Bail
            return Ref(name="output", role="output", index=i, shape=self.output_shapes[i], batched=True)

        checker = ExprChecker(self.report, self.ev, name, call, "in the loss", index=index)
        return checker

    # ------------------------------------------------------------ metrics

    def check_metrics(self, s, model: ModelIR | None, data: DataIR) -> list[MetricCall]:
        if s is None:
            return []
        e = s.value
        items = e.items if isinstance(e, ast.ListExpr) else [e]
        out = []
        for item in items:
            call = self.catalog_call(ast.Setting(target=["metric"], value=item, span=item.span), METRICS, "metric", None)
            if model is None:
                continue
            if len(model.outputs) != 1 or len(data.targets) != 1:
                self.report.error(f"{call.name} compares the model's one output with the data's one target, but there "
                                  f"are {len(model.outputs)} outputs and {len(data.targets)} targets", item.span,
                                  "remove `metrics`, or return one output")
                raise Bail
            output, target = self.default_pair(call.name, model, data, item.span)
            kind = METRICS[call.name].target
            try:
                loss_fits(kind, call.name, output.shape, target.shape, data.source.facts.get("classes"))
            except ShapeError as err:
                hint = "use mse or mae for regression" if kind == "class" else err.hint
                message = (f"{call.name} needs class scores and class labels" if kind == "class"
                           else err.message)
                self.report.error(message, item.span, hint)
                raise Bail from None
            kwargs = tuple((k, v) for k, v in call.args.items() if not k.startswith("__"))
            if kind == "same" and scaled(data.targets[0]):          # in the column's units, not the scaled ones
                output, target = undo(data.targets[0], output), undo(data.targets[0], target)
            out.append(MetricCall(name=call.name, args=kwargs, output=output, target=target, shape=SCALAR))
        return out

