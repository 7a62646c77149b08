"""Check a whole spec: variables, overrides and variants, data, models, training, init, export.

`check(spec, source)` returns a `CheckedSpec` (compiler.ir) or raises
`SpecError` with every error found, each located in the spec. `check_all`
checks the spec once per variant. Nothing here imports torch, so `dslc check`
starts fast.
"""

from __future__ import annotations

from pathlib import Path

from dslc.dsl import ast
from dslc.errors import SpecError
from dslc.dsl.diagnostics import Diagnostic, Report, Source, did_you_mean
from dslc.dsl.parse import parse, relocate
from dslc.dsl.read import read_spec

from .data_check import DATA_KEYS, DataChecks
from .expr_check import Bail as _Bail
from .initializers import INITIALIZERS
from .ir import CallIR, CheckedSpec, DataIR, ExportIR, InitIR, LossIR, ModelIR, TrainIR
from .layers import layer_params
from .loss_check import LossChecks
from .memory_budget import describe, machine_memory, parse_size, training_memory
from .model_check import ModelChecker
from .optimizers import OPTIMIZERS
from .schedules import SCHEDULES
from .values import Arg, CallValue, Evaluator, NotConstant, Symbol, Value, bind, positive

TRAIN_KEYS = ("model", "loss", "optimizer", "schedule", "warmup_steps", "epochs", "steps", "metrics", "evaluate",
              "log", "early_stopping", "clip_grad_norm", "seed", "device", "precision", "deterministic", "checkpoint",
              "memory_budget")
EXPORT_KEYS = ("format", "opset", "file", "auto")


# ---------------------------------------------------------------- overrides and variants


def parse_override(text: str) -> tuple[list[str], ast.Expr]:
    """`NAME=VALUE` or `block.key=VALUE` from the command line; raises SpecError."""
    source = Source("--set", text)
    name, sep, value = text.partition("=")
    target = name.strip().split(".")
    if not sep or not all(t.isidentifier() for t in target) or not value.strip():
        raise SpecError([Diagnostic(f"cannot read --set {text!r}", ast.Span(line=1, column=1, end_line=1,
                                    end_column=len(text) + 1), "write --set NAME=VALUE, e.g. --set lr=0.01 "
                                    "or --set train.epochs=3", source=source)])
    try:
        expr = parse(" " * (len(name) + 1) + value, "--set", start="expr")
    except SpecError as err:
        for d in err.diagnostics:
            d.source = source
        raise SpecError(err.diagnostics) from None
    return target, relocate(expr, source)


def apply_overrides(spec: ast.Spec, overrides: list[tuple[list[str], ast.Expr]], report: Report,
                    where: str = "--set") -> ast.Spec:
    """A copy of the spec with `let` values or block settings replaced (strictly: unknown names are errors)."""
    items = list(spec.items)
    lets = {i.name: n for n, i in enumerate(items) if isinstance(i, ast.Let)}
    for target, expr in overrides:
        key = ".".join(target)
        if len(target) == 1:
            if target[0] not in lets:
                report.error(f"{where}: there is no variable '{target[0]}' to set", _name_span(key, expr.span),
                             did_you_mean(target[0], lets) or "variables are declared with `let NAME = value`; "
                             "block settings are set as block.key, e.g. train.epochs")
                continue
            n = lets[target[0]]
            old = items[n]
            old_kind = _literal_kind(old.value)
            new_kind = _literal_kind(expr)
            if old_kind and new_kind and old_kind != new_kind and not {old_kind, new_kind} <= {"int", "float"}:
                report.error(f"{where}: '{key}' is {_KIND_TEXT[old_kind]} in the spec, not {_KIND_TEXT[new_kind]}",
                             expr.span)
                continue
            if old_kind == "int" and new_kind == "float":
                report.error(f"{where}: '{key}' is a whole number in the spec", expr.span)
                continue
            items[n] = ast.Let(name=old.name, value=expr, span=old.span)
            continue
        block_name, setting = target[0], target[1:]
        allowed = {"data": DATA_KEYS, "train": TRAIN_KEYS, "export": EXPORT_KEYS, "init": None}.get(block_name, ())
        if allowed == () or (allowed is not None and setting[0] not in allowed):
            hint = did_you_mean(setting[0], allowed) if allowed else did_you_mean(block_name, ("data", "train", "export", "init"))
            report.error(f"{where}: there is no setting '{key}'", _name_span(key, expr.span), hint)
            continue
        new = ast.Setting(target=setting, value=expr, span=expr.span)
        for n, item in enumerate(items):
            if isinstance(item, ast.Block) and item.block == block_name:
                settings = [s for s in item.settings if s.target != setting] + [new]
                items[n] = ast.Block(block=block_name, settings=settings, span=item.span)
                break
        else:
            items.append(ast.Block(block=block_name, settings=[new], span=expr.span))
    return ast.Spec(items=items, span=spec.span)


def _name_span(key: str, value_span: ast.Span) -> ast.Span:
    """Where NAME is in `--set NAME=VALUE` (the value's span elsewhere: a variant's settings are re-located)."""
    if value_span.origin is None:
        return value_span
    return ast.Span(line=1, column=1, end_line=1, end_column=len(key) + 1, origin=value_span.origin)


_KIND_TEXT = {"int": "a whole number", "float": "a number", "a string": "a string", "a boolean": "a boolean",
              "a list": "a list"}


def _literal_kind(e) -> str | None:
    if isinstance(e, ast.Neg):
        return _literal_kind(e.operand)
    if isinstance(e, ast.Number):
        return "int" if isinstance(e.value, int) else "float"
    if isinstance(e, ast.String):
        return "a string"
    if isinstance(e, ast.Bool):
        return "a boolean"
    if isinstance(e, ast.ListExpr):
        return "a list"
    return None


# ---------------------------------------------------------------- the checker


class SpecChecker(DataChecks, LossChecks):
    """Checks one configuration of a spec into a CheckedSpec (data and loss checks come from the mixins)."""

    def __init__(self, spec: ast.Spec, source: Source, variant: str | None):
        self.spec = spec
        self.source = source
        self.variant = variant
        self.report = Report(source)
        self.lets: dict = {}
        self.let_spans: dict[str, ast.Span] = {}
        self.broken_models: set[str] = set()
        self.ev = Evaluator(self.lets, self.report)
        self.spec_dir = Path(source.path).parent if source.path not in ("<spec>", "-") else Path.cwd()

    def run(self) -> CheckedSpec:
        self.structure()
        self.check_lets()
        data = self.check_data()
        models = self.check_models()
        train = self.check_train(models, data)
        init = self.check_init(models, train)
        export = self.check_export()
        if data and models and not self.report.errors:
            self.check_data_fits_model(data, models[train.model] if train else next(iter(models.values())))
        for name, span in self.let_spans.items():
            if name not in self.ev.used and name not in self._variant_names():
                self.report.warning(f"variable '{name}' is never used", span, "remove it or use it")
        self.report.raise_if_errors()
        return CheckedSpec(self.spec, self.source, dict(self.lets), models, data, train, export, init,
                           self.variant, self.report.warnings)

    def _variant_names(self) -> set[str]:
        return {s.target[0] for v in self.spec.variants for s in v.settings}

    # ------------------------------------------------------------ structure

    def structure(self) -> None:
        seen_blocks: dict[str, ast.Block] = {}
        for item in self.spec.items:
            if isinstance(item, ast.Block):
                if item.block in seen_blocks:
                    self.report.error(f"a second `{item.block}` block", item.span,
                                      f"merge it into the `{item.block}` block at line {seen_blocks[item.block].span.line}")
                seen_blocks[item.block] = item
        models = self.spec.models
        first: dict[str, ast.Span] = {}
        for m in models:
            if m.name in first:
                self.report.error(f"model '{m.name}' is defined twice", m.span,
                                  f"the first is at line {first[m.name].line}; rename one")
            first.setdefault(m.name, m.span)
        if not models:
            self.report.error("the spec defines no model", ast.Span(line=1, column=1, end_line=1, end_column=2),
                              "add one: model net(x: f32[4]) { linear(1) }")
        variants = self.spec.variants
        if sum(isinstance(i, ast.Variants) for i in self.spec.items) > 1:
            self.report.error("a second `variants` block", [i for i in self.spec.items if isinstance(i, ast.Variants)][1].span,
                              "list every variant in one block")
        vfirst: dict[str, ast.Span] = {}
        for v in variants:
            if v.name in vfirst:
                self.report.error(f"variant '{v.name}' is defined twice", v.span,
                                  f"the first is at line {vfirst[v.name].line}")
            vfirst.setdefault(v.name, v.span)
            keys: dict[str, ast.Span] = {}
            for setting in v.settings:
                if setting.key in keys:
                    self.report.error(f"'{setting.key}' is set twice in variant '{v.name}'", setting.span,
                                      f"the first is at column {keys[setting.key].column}; keep one")
                keys.setdefault(setting.key, setting.span)

    def settings(self, block: ast.Block, allowed) -> dict[str, ast.Setting]:
        out: dict[str, ast.Setting] = {}
        for s in block.settings:
            if allowed is not None:
                if len(s.target) != 1 or s.target[0] not in allowed:
                    self.report.error(f"unknown {block.block} setting '{s.key}'", s.span,
                                      did_you_mean(s.target[0], allowed) or "known: " + ", ".join(allowed))
                    continue
            if s.key in out:
                self.report.error(f"'{s.key}' is set twice in the {block.block} block", s.span)
                continue
            out[s.key] = s
        return out

    def value(self, s: ast.Setting | None, default=None):
        if s is None:
            return default
        try:
            return self.ev(s.value)
        except NotConstant:
            raise _Bail from None

    def typed(self, s: ast.Setting | None, kind: str, default=None, check=None, choices=()):
        """A setting's value, validated like a catalog argument."""
        if s is None:
            return default
        v = self.value(s)
        out = bind(s.key, [Arg(s.key, kind, choices=choices, check=check)], [Value(None, v, s.value.span)],
                   s.span, self.report, known_names=[k for k in self.lets])
        if out is None:
            raise _Bail
        return out[s.key]

    # ------------------------------------------------------------ lets

    def check_lets(self) -> None:
        first: dict[str, ast.Span] = {}
        self.ev.pending = {}
        for let in self.spec.lets:
            self.ev.pending.setdefault(let.name, let.span)
        try:
            self._check_lets_in_order(first)
        finally:
            self.ev.pending, self.ev.current = {}, None

    def _check_lets_in_order(self, first: dict[str, ast.Span]) -> None:
        for let in self.spec.lets:
            if let.name in first:
                self.report.error(f"variable '{let.name}' is defined twice", let.span,
                                  f"the first is at line {first[let.name].line}; use --set or variants to change it")
                continue
            first[let.name] = let.span
            if let.name in ("data", "output", "target"):
                self.report.error(f"'{let.name}' is a reserved name", let.span, "choose another name")
                continue
            self.ev.current = let.name
            try:
                self.lets[let.name] = self.ev(let.value)
                self.let_spans[let.name] = let.span
            except NotConstant:
                self.ev.failed.add(let.name)
            self.ev.pending.pop(let.name, None)

    # ------------------------------------------------------------ models

    def check_models(self) -> dict[str, ModelIR]:
        models = {}
        for m in self.spec.models:
            errors = len(self.report.errors)
            checker = ModelChecker(m, self.ev, self.report)
            ir = checker.check()
            if len(self.report.errors) > errors or checker.chain_broken:    # (a variable that failed: quiet)
                self.broken_models.add(m.name)      # its shapes are unreliable: no checks that use them
            if ir is not None and m.name not in models:
                models[m.name] = ir
        return models

    # ------------------------------------------------------------ training

    def check_train(self, models: dict[str, ModelIR], data: DataIR | None) -> TrainIR | None:
        block = self.spec.block("train")
        if block is None:
            return None
        s = self.settings(block, TRAIN_KEYS)
        try:
            if "model" in s:
                v = self.value(s["model"])
                name = v.name if isinstance(v, Symbol) else v
                if name not in models:
                    self.report.error(f"there is no model '{name}' to train", s["model"].value.span,
                                      did_you_mean(str(name), models))
                    raise _Bail
            else:
                if len(self.spec.models) > 1:
                    self.report.error("this spec has several models; say which one trains", block.span,
                                      f"add: model = {self.spec.models[0].name}")
                    raise _Bail
                name = self.spec.models[0].name if self.spec.models else None
            model = models.get(name)
            if model is None:
                raise _Bail
            if data is None:
                if self.spec.block("data") is None:
                    self.report.error("training needs a data block", block.span,
                                      "add: data { source = mnist(root=\"data\") batch = 64 }")
                raise _Bail
            model_ok = name not in self.broken_models
            if model_ok and model.param_count == 0:
                self.report.error(f"model {name} has no weights, so training has nothing to change", model.span,
                                  "add a layer with weights (linear, conv2d, lstm, ...) or a `param`")
                raise _Bail
            loss = self.check_loss(s.get("loss"), model, data, block) if model_ok else LossIR()
            optimizer = self.catalog_call(s.get("optimizer"), OPTIMIZERS, "optimizer", CallIR("adam", {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}))
            schedule = self.catalog_call(s.get("schedule"), SCHEDULES, "schedule", None)
            epochs = self.typed(s.get("epochs"), "int", None, positive)
            steps = self.typed(s.get("steps"), "int", None, positive)
            if epochs and steps:
                self.report.error("give `epochs` or `steps`, not both", s["steps"].span)
            if epochs is None and steps is None:
                epochs = 1
            metrics = self.check_metrics(s.get("metrics"), model if model_ok else None, data)
            evaluate = self.every(s.get("evaluate"), ("epochs", 1))
            log = self.every(s.get("log"), ("steps", 50))
            checkpoint = self.every(s.get("checkpoint"), ("epochs", 1))
            early = None
            if "early_stopping" in s:
                call = self.catalog_call(s["early_stopping"], {"early_stopping": _EARLY}, "early_stopping", None)
                early = call.args if call else None
            precision = self.typed(s.get("precision"), "str", "fp32", choices=("fp32", "amp", "bf16"))
            if model_ok and optimizer is not None:
                self.check_memory(model, optimizer, data, precision, s.get("memory_budget"))
            return TrainIR(
                model=name, loss=loss, optimizer=optimizer, schedule=schedule,
                warmup_steps=self.typed(s.get("warmup_steps"), "int", 0, lambda v: None if v >= 0 else "must not be negative"),
                epochs=epochs, steps=steps, metrics=metrics, evaluate=evaluate, log=log, early_stopping=early,
                clip_grad_norm=self.typed(s.get("clip_grad_norm"), "float", None, positive),
                seed=self.typed(s.get("seed"), "int", 0),
                device=self.typed(s.get("device"), "str", "auto", choices=("auto", "cpu", "cuda")),
                precision=precision,
                deterministic=self.typed(s.get("deterministic"), "bool", False),
                checkpoint_every=checkpoint)
        except _Bail:
            return None

    def check_memory(self, model: ModelIR, optimizer: CallIR, data: DataIR, precision: str,
                     budget_setting) -> None:
        """Refuse a model whose training would not fit the memory budget, with the figures (memory_budget.py)."""
        stated = budget_setting is not None
        if stated:
            text = self.typed(budget_setting, "str", None)
            budget = parse_size(text) if text is not None else None
            if budget is None and text is not None:
                self.report.error(f"memory_budget must be a size such as \"24 GB\" or \"512 MiB\", not {text!r}",
                                  budget_setting.value.span)
        else:
            budget = machine_memory()
        if budget is None:
            return
        copies = 2 + OPTIMIZERS[optimizer.name].state(optimizer.args)
        rows = data.source.facts.get("rows") or data.source.args.get("n")      # no batch: the whole set at once
        batch = data.batch or (rows if isinstance(rows, int) else 1)
        need = training_memory(model, copies, batch, 2 if precision in ("amp", "bf16") else 4)
        if need.total <= budget:
            return
        biggest = max(model.all_layers, key=lambda pl: layer_params(pl[1]), default=None)
        where = biggest[1].span if biggest and need.state >= need.activations and biggest[1].span.known else model.span
        whose = "the memory_budget of" if stated else "this machine's memory,"
        self.report.error(
            f"training model {model.name} needs at least {describe(need.total)}, more than {whose} "
            f"{describe(budget)}: {need.params:,} parameters with their gradients and {optimizer.name}'s state "
            f"take {describe(need.state)} and the layer outputs of a batch of {batch} take "
            f"{describe(need.activations)}",
            where, "use smaller layers or a smaller batch; if training runs on a larger machine, say so with "
                   "memory_budget = \"64 GB\" in the train block")

    def catalog_call(self, s, catalog, what: str, default):
        if s is None:
            return default
        v = self.value(s)
        if isinstance(v, Symbol):
            v = CallValue(v.name, (), s.value.span, s.value.span)
        if not isinstance(v, CallValue):
            self.report.error(f"{what} must be one of: {', '.join(catalog)}", s.value.span)
            raise _Bail
        entry = catalog.get(v.name)
        if entry is None:
            self.report.error(f"unknown {what} '{v.name}'", v.name_span, did_you_mean(v.name, catalog))
            raise _Bail
        args = bind(v.name, entry.args, list(v.args), v.span, self.report, known_names=list(self.lets))
        if args is None:
            raise _Bail
        args.pop("__spans__")
        return CallIR(v.name, args, v.span)

    def every(self, s, default) -> tuple[str, int]:
        if s is None:
            return default
        v = self.value(s)
        if isinstance(v, CallValue) and v.name == "every" and len(v.args) == 1 and v.args[0].name in ("steps", "epochs"):
            n = v.args[0].value
            if isinstance(n, int) and not isinstance(n, bool) and n > 0:
                return (v.args[0].name, n)
        self.report.error(f"`{s.key}` is written every(epochs=N) or every(steps=N)", s.value.span)
        raise _Bail

    # ------------------------------------------------------------ init and export

    def check_init(self, models: dict[str, ModelIR], train: TrainIR | None) -> list[InitIR]:
        block = self.spec.block("init")
        if block is None:
            return []
        out = []
        model = models.get(train.model) if train else (next(iter(models.values())) if models else None)
        for key, s in self.settings(block, None).items():
            try:
                if len(s.target) < 2 or s.target[-1] not in ("weight", "bias"):
                    self.report.error(f"an init target is LAYER.weight or LAYER.bias, not '{key}'", s.span,
                                      "e.g. linear.weight = uniform(-0.1, 0.1), or linear_2.bias = zeros")
                    continue
                target = ".".join(s.target[:-1])
                dist = self.catalog_call(s, INITIALIZERS, "initialiser", None)
                if INITIALIZERS[dist.name].needs_matrix and s.target[-1] == "bias":
                    self.report.error(f"{dist.name} fills weight matrices; a bias has one axis", s.value.span,
                                      "use zeros, constant(...), normal(...) or uniform(...) for biases")
                    continue
                if model is not None and model.name not in self.broken_models:
                    names = {l.name for l in model.layers} | {f"{b.name}.{l.name}" for b in model.blocks.values() for l in b.layers}
                    kinds = {l.layer for l in model.layers} | {l.layer for b in model.blocks.values() for l in b.layers}
                    if target not in names and target not in kinds:
                        self.report.error(f"model {model.name} has no layer '{target}'", s.span,
                                          did_you_mean(target, names | kinds))
                        continue
                out.append(InitIR(target, s.target[-1], dist))
            except _Bail:
                pass
        return out

    def check_export(self) -> ExportIR | None:
        block = self.spec.block("export")
        if block is None:
            return None
        s = self.settings(block, EXPORT_KEYS)
        try:
            export = ExportIR(format=self.typed(s.get("format"), "str", "onnx", choices=("onnx",)),
                              opset=self.typed(s.get("opset"), "int", 18,
                                               lambda v: None if 13 <= v <= 23 else "must be between 13 and 23"),
                              file=self.typed(s.get("file"), "str", None, inside_run_dir),
                              auto=self.typed(s.get("auto"), "bool", True))
        except _Bail:
            return None
        clash = run_file_clash(export.file) if export.file is not None else None
        if clash is not None:
            what = ("is the run directory itself" if clash == "." else
                    f"would write into the run's own {clash}/ folder" if clash in RUN_DIR_FOLDERS else
                    f"would overwrite the run's own {clash}")
            self.report.error(f"export file '{export.file}' {what}", s["file"].value.span,
                              'name a file of its own, e.g. file = "model.onnx" or "onnx/net.onnx"')
            return None
        return export


# What `dslc train` writes into a run directory (checkpoints/, variants/ and plots/ are folders). export.file
# may name any other file there; runtime/training/run_dir.py uses the same list to replace a run (--force).
RUN_DIR_ENTRIES = ("run.json", "spec.dlspec", "spec.yaml", "resolved.yaml", "metrics.jsonl", "summary.json",
                   "checkpoints", "variants", "plots", "report.html", "samples.npz", "plot_inputs.npz", ".dslc-run")
RUN_DIR_FOLDERS = ("checkpoints", "variants", "plots")


def run_file_clash(path: str) -> str | None:
    """The run's own entry that a path inside the run directory would overwrite ('.' for the directory itself).

    Compared without regard to case (a case-insensitive file system maps Summary.json onto summary.json).
    """
    parts = [p for p in path.replace("\\", "/").split("/") if p.strip() not in ("", ".")]
    if not parts:
        return "."
    first = parts[0].strip().casefold()
    return next((name for name in RUN_DIR_ENTRIES if name.casefold() == first), None)


def inside_run_dir(path: str) -> str | None:
    """export.file names a file inside the run directory: relative, no `..`, no drive (the CLI's --out goes elsewhere)."""
    parts = path.replace("\\", "/").split("/")
    if path.startswith(("/", "\\", "~")) or (len(path) > 1 and path[1] == ":") or ".." in parts or not parts[-1].strip():
        return "must be a relative path inside the run directory (no '..', no absolute path)"
    return None


_EARLY = type("EarlyStopping", (), {"args": [Arg("patience", "int", 5, check=positive),
                                             Arg("metric", "str", "val_loss"),
                                             Arg("mode", "str", "min", choices=("min", "max")),
                                             Arg("min_delta", "float", 0.0)]})()


# ---------------------------------------------------------------- entry points


def check(spec: ast.Spec, source: Source, overrides=(), variant: str | None = None) -> CheckedSpec:
    """Check one configuration of the spec (the base, or one variant), with --set overrides applied."""
    report = Report(source)
    if variant is not None:
        v = next((v for v in spec.variants if v.name == variant), None)
        if v is None:
            raise SpecError([Diagnostic(f"there is no variant '{variant}'", hint=did_you_mean(variant, [x.name for x in spec.variants]),
                                        source=source)])
        spec = apply_overrides(spec, [(s.target, s.value) for s in v.settings], report, where=f"variant {variant}")
        for d in report.diagnostics:
            d.span = next((s.span for s in v.settings if s.value.span == d.span), d.span)
    spec = apply_overrides(spec, list(overrides), report)
    if report.errors:
        raise SpecError(report.errors)
    return SpecChecker(spec, source, variant).run()


def check_all(spec: ast.Spec, source: Source, overrides=()) -> list[CheckedSpec]:
    """Every configuration: the base spec when it has no variants, else each variant."""
    names = [v.name for v in spec.variants]
    if not names:
        return [check(spec, source, overrides)]
    results, errors, seen = [], [], set()
    for name in names:
        try:
            results.append(check(spec, source, overrides, name))
        except SpecError as err:
            for d in err.diagnostics:              # the same mistake in every variant is shown once
                key = d.render()
                if key not in seen:
                    seen.add(key)
                    errors.append(d)
    if errors:
        raise SpecError(errors)
    return results


def check_file(path: str, overrides=(), variant: str | None = None) -> CheckedSpec:
    """Parse and check one spec file with `--set` style overrides ("NAME=VALUE"); raises SpecError."""
    spec, source = read_spec(path)
    return check(spec, source, [parse_override(o) for o in overrides], variant)
