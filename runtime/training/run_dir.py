"""Run directories: where a training run keeps its spec, settings, metrics, summary and checkpoints.

    runs/<spec-stem>/<YYYYmmdd-HHMMSS>/      (or --out DIR)
        run.json             spec, overrides, variant, data root, ... as the run started (manifest.py)
        spec.dlspec          the spec text as given (spec.yaml when it was YAML)
        resolved.yaml        the configuration that ran, as a YAML spec (see `resolved_yaml`)
        metrics.jsonl        one JSON object per log / eval / end event
        summary.json         spec, spec_hash, seed, device, epochs, steps, wall_seconds, metrics,
                             params, checkpoint, data, overrides, variant, variants, ...
        checkpoints/last.pt  and best.pt (with a validation split; see loop.py's checkpoint selection)
        model.onnx, plots/   the exported model and the pictures, after training
        variants/<name>/     a spec with variants trains each here (same layout)
        .dslc-run            marks the folder as dslc's; locked while a process trains it (run_claim.py)

`load_run(run_dir)` reads one back: the spec re-checked with the stored
overrides and variant, and the model built with the checkpoint's weights.
Nothing here imports torch except `load_run`.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dslc import files
from dslc.errors import UserError
from dslc.files import fs_error, make_folder
from dslc.compiler.check import RUN_DIR_ENTRIES, check, parse_override
from dslc.compiler.data_sources import DATA_SOURCES
from dslc.compiler.ir import CallIR, CheckedSpec, Node, Ref, SourceIR, expr_text, walk
from dslc.compiler.values import CallValue, Facts, Symbol
from dslc.dsl import ast
from dslc.dsl.diagnostics import Source
from dslc.dsl.format import format_expr
from dslc.dsl.yaml_face import to_yaml

from dslc.runtime.training.run_claim import clear_run, is_dslc_run, lock_run

# A folder that holds any of these holds a run (--out refuses it without --force)
RUN_FILES = tuple(e for e in RUN_DIR_ENTRIES if e != ".dslc-run") + ("model.onnx",)


# ---------------------------------------------------------------- configuration


def spec_hash(text: str, overrides=(), variant: str | None = None) -> str:
    """sha256 over the spec text, the --set overrides and the variant: what a checkpoint belongs to."""
    payload = json.dumps({"spec": text, "overrides": list(overrides), "variant": variant}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def check_configuration(spec: ast.Spec, source: Source, overrides=(), variant: str | None = None) -> CheckedSpec:
    """`check` with --set strings; `train.steps=N` replaces the spec's `epochs` (and `train.epochs=N` its `steps`)."""
    parsed = [parse_override(o) for o in overrides]
    keys = {".".join(target) for target, _ in parsed}
    drop = {other for key, other in (("train.steps", "epochs"), ("train.epochs", "steps")) if key in keys}
    if drop:
        spec = _without_train_settings(spec, drop)
    return check(spec, source, parsed, variant)


def _without_train_settings(spec: ast.Spec, names: set[str]) -> ast.Spec:
    items = []
    for item in spec.items:
        if isinstance(item, ast.Block) and item.block == "train":
            item = ast.Block(block="train", settings=[s for s in item.settings if s.key not in names], span=item.span)
        elif isinstance(item, ast.Variants):
            item = ast.Variants(variants=[ast.Variant(name=v.name, span=v.span, settings=[
                s for s in v.settings if s.key not in {f"train.{n}" for n in names}]) for v in item.variants],
                span=item.span)
        items.append(item)
    return ast.Spec(items=items, span=spec.span)


def read_spec_text(text: str, path: str) -> tuple[ast.Spec, Source]:
    """Parse spec text reported under `path` (YAML when the path ends in .yaml/.yml)."""
    from dslc.dsl.parse import parse
    if path.endswith((".yaml", ".yml")):
        from dslc.dsl.yaml_face import from_yaml
        return from_yaml(text, path), Source(path, text)
    return parse(text, path), Source(path, text)


# ---------------------------------------------------------------- creating a run directory


def new_run_dir(spec_path: str | Path, out: str | Path | None = None, force: bool = False,
                lock: bool = True) -> Path:
    """A fresh run directory: `out`, or runs/<spec-stem>/<timestamp>[-k] under the current directory.

    With `lock` (every caller but a worker whose `dslc train --nproc` parent holds it) the directory is
    locked for this process (`lock_run`) before anything in it is looked at or removed. `force` replaces
    the run in `out`: only the files dslc writes in a run directory are removed (`clear_run`).
    """
    if out is not None:
        path = Path(out)
        created = not path.exists()
        existing = [name for name in RUN_FILES if (path / name).exists()]
        if existing and not force:
            raise UserError(f"{path} already holds a run; continue it with --resume {path}, "
                            f"choose another --out, or pass --force to replace it")
        if existing and not is_dslc_run(path):          # before the lock file marks the folder as dslc's
            raise UserError(f"{path} holds {', '.join(existing)} but is not a run directory dslc wrote; "
                            f"--force replaces only a dslc run, so choose another --out")
        make_folder(path, "create run directory")
        if lock:
            lock_run(path, created)                     # a run another process trains is never cleared
        if existing:
            clear_run(path)
        return path
    base = Path("runs") / Path(spec_path).stem / time.strftime("%Y%m%d-%H%M%S")
    make_folder(base.parent, "create run directory")
    path, k = base, 1
    while True:                             # mkdir is the claim: two runs started in the same second differ
        try:
            path.mkdir()
            break
        except FileExistsError:
            k += 1
            path = base.with_name(f"{base.name}-{k}")
        except OSError as err:
            raise fs_error(err, path, "create run directory") from None
    if lock:
        lock_run(path, created=True)
    return path


def write_text(path: Path, text: str) -> None:
    """Write a file atomically (temporary file in the same folder, then rename); UserError when it cannot."""
    files.write_text(path, text)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, allow_nan=True, default=str) + "\n")


def spec_file_name(spec_path: str | Path) -> str:
    return "spec.yaml" if str(spec_path).endswith((".yaml", ".yml")) else "spec.dlspec"


def write_spec_files(run: Path, spec_path: str | Path, text: str, checked: CheckedSpec, overrides=()) -> None:
    """spec.dlspec (or spec.yaml) as given, and resolved.yaml for this configuration."""
    write_text(run / spec_file_name(spec_path), text)
    write_text(run / "resolved.yaml", resolved_yaml(checked, overrides))


class MetricsLog:
    """metrics.jsonl: appends one JSON line per event, flushed so a killed run keeps its history."""

    def __init__(self, path: Path, keep: int | None = None):
        self.path = path
        if keep is not None and path.exists():            # resuming: drop events after the checkpoint
            try:
                lines = path.read_text(encoding="utf-8").splitlines(keepends=True)[:keep]
            except (OSError, UnicodeDecodeError) as err:
                raise UserError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
            write_text(path, "".join(lines))
        try:
            self.file = open(path, "a", encoding="utf-8")
        except OSError as err:
            raise fs_error(err, path) from None

    def __call__(self, record: dict) -> None:
        try:
            self.file.write(json.dumps(record, allow_nan=True) + "\n")
            self.file.flush()
        except OSError as err:
            raise fs_error(err, self.path) from None

    def close(self) -> None:
        try:
            self.file.close()
        except OSError:             # the failed write already said why
            pass


# ---------------------------------------------------------------- resolved.yaml


def resolved_yaml(checked: CheckedSpec, overrides=()) -> str:
    """The configuration that ran, as a YAML spec that `dslc check` reads back.

    Every `let` variable (and each `data.*` fact) is replaced by its value,
    variants and --set overrides are already applied, and every setting of the
    data, train, init and export blocks is written out with catalog defaults
    filled in (optimizer, schedule, loss and source arguments included), so
    nothing depends on defaults that a later dslc might change.
    """
    values = {k: v for k, v in checked.lets.items() if not isinstance(v, Facts)}
    facts = checked.lets["data"].facts if isinstance(checked.lets.get("data"), Facts) else {}
    sub = _Substitute(values, facts)
    models = [sub.model(m) for m in checked.spec.models]
    doc: dict[str, Any] = {}
    if checked.data is not None:
        doc["data"] = _data_section(checked, sub)
    doc["models"] = yaml.safe_load(to_yaml(ast.Spec(items=models)))["models"]
    if checked.train is not None:
        doc["train"] = _train_section(checked, sub)
    if checked.init:
        doc["init"] = {f"{r.target}.{r.param}": _call_text(r.dist) for r in checked.init}
    if checked.export is not None:
        e = checked.export
        doc["export"] = {"format": e.format, "opset": e.opset, "auto": e.auto}
        if e.file is not None:
            doc["export"]["file"] = _text(e.file)
    header = [f"# resolved from {checked.source.path}"]
    if checked.variant:
        header.append(f"# variant: {checked.variant}")
    if overrides:
        header.append("# --set " + " --set ".join(overrides))
    header.append("# let variables are substituted and defaults filled in; this file is itself a spec")
    return "\n".join(header) + "\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100,
                                                      allow_unicode=True)


def _text(v) -> str:
    """A Python value written as spec expression text."""
    return format_expr(_to_ast(v))


value_text = _text


def _yaml_value(v):
    """Numbers, booleans and lists of them stay YAML values; everything else is expression text."""
    if isinstance(v, (bool, int, float)) or (isinstance(v, list) and all(isinstance(x, (bool, int, float)) for x in v)):
        return v
    return _text(v)


def _to_ast(v):
    if isinstance(v, bool):
        return ast.Bool(value=v)
    if isinstance(v, (int, float)):
        return ast.Neg(operand=ast.Number(value=-v)) if v < 0 else ast.Number(value=v)
    if isinstance(v, str):
        return ast.String(value=v)
    if isinstance(v, (list, tuple)):
        return ast.ListExpr(items=[_to_ast(x) for x in v])
    if isinstance(v, Symbol):
        return ast.Var(name=v.name)
    if isinstance(v, CallValue):
        return ast.Call(func=ast.Var(name=v.name), args=[ast.Argument(name=a.name, value=_to_ast(a.value))
                                                          for a in v.args])
    if isinstance(v, ast.Node):
        return v
    raise TypeError(f"cannot write {v!r} in a spec")


def _call_text(call: CallIR | None, skip_none: bool = True) -> str:
    args = ", ".join(f"{k}={_text(v)}" for k, v in call.args.items()
                     if not k.startswith("__") and not (skip_none and v is None))
    return f"{call.name}({args})" if args else call.name


class _Substitute:
    """Replaces `let` variables and `data.*` facts in syntax trees by their values."""

    def __init__(self, values: dict, facts: dict):
        self.values = values
        self.facts = facts

    def expr(self, e, local: set[str] = frozenset()):
        if isinstance(e, ast.Var) and e.name in self.values and e.name not in local:
            return _to_ast(self.values[e.name])
        if (isinstance(e, ast.Attr) and isinstance(e.value, ast.Var) and e.value.name == "data"
                and e.name in self.facts):
            return _to_ast(self.facts[e.name])
        if not isinstance(e, ast.Node):
            return e
        update = {}
        for name in ast.fields_of(e):
            value = getattr(e, name)
            if isinstance(value, ast.Node):
                update[name] = self.expr(value, local)
            elif isinstance(value, list) and value and isinstance(value[0], ast.Node):
                update[name] = [self.expr(x, local) for x in value]
        return ast.replace(e, **update) if update else e

    def model(self, m: ast.Model) -> ast.Model:
        local = {i.name for i in m.inputs} | {s.name for s in m.body if isinstance(s, (ast.Param, ast.Binding, ast.BlockDef))}
        return self.expr(m, local)


def _source_text(src: SourceIR, sub: _Substitute) -> str:
    entry = DATA_SOURCES[src.name]
    columns_written = entry.column_args in ("values", "expressions")      # table(x=[...]), generate(x=...)
    parts = [f"{k}={_text(v)}" for k, v in src.args.items()
             if v is not None and not (columns_written and k == "columns") and k != "kinds"]
    parts += [f"{name}={kind.text()}" for name, kind in (src.args.get("kinds") or {}).items()]   # csv's declarations
    if columns_written:
        for name, col in (src.args.get("columns") or {}).items():
            parts.append(f"{name}={expr_text(col) if isinstance(col, Node) else _text(col)}")
    return f"{src.name}({', '.join(parts)})"


def _data_section(checked: CheckedSpec, sub: _Substitute) -> dict:
    d = checked.data
    out: dict[str, Any] = {"source": _source_text(d.source, sub)}
    out["inputs"] = [expr_text(e) for e in d.inputs]
    if d.targets:
        out["targets"] = [expr_text(e) for e in d.targets]
    out["batch"] = d.batch if d.batch is not None else "all"
    out["shuffle"] = d.shuffle
    for key in ("validation", "test"):
        v = getattr(d, key)
        if v is not None:
            out[key] = v if isinstance(v, float) else _source_text(v, sub)
    out["seed"] = d.split_seed
    return out


def _every(pair) -> str:
    return f"every({pair[0]}={pair[1]})"


def _train_section(checked: CheckedSpec, sub: _Substitute) -> dict:
    t = checked.train
    # a target named by its expression (`standardize(price)`) is `target` in a loss when it is the only one
    named = {n: "target" for n in walk(t.loss.node) if isinstance(n, Ref) and n.role == "target"
             and not n.name.isidentifier() and len(checked.data.targets) == 1}
    loss = expr_text(t.loss.node, named)
    out: dict[str, Any] = {"model": t.model, "loss": loss, "optimizer": _call_text(t.optimizer)}
    if t.schedule is not None:
        out["schedule"] = _call_text(t.schedule)
    out["warmup_steps"] = t.warmup_steps
    if t.steps is not None:
        out["steps"] = t.steps
    else:
        out["epochs"] = t.epochs
    out["metrics"] = [_call_text(CallIR(m.name, m.kwargs)) for m in t.metrics]
    out["evaluate"] = _every(t.evaluate)
    out["log"] = _every(t.log)
    out["checkpoint"] = _every(t.checkpoint_every)
    if t.early_stopping:
        out["early_stopping"] = _call_text(CallIR("early_stopping", t.early_stopping))
    if t.clip_grad_norm is not None:
        out["clip_grad_norm"] = t.clip_grad_norm
    out.update({"seed": t.seed, "device": t.device, "precision": t.precision,      # choices: bare names
                "deterministic": t.deterministic})
    return out


# ---------------------------------------------------------------- reading a run back


@dataclass
class Run:
    path: Path
    summary: dict
    checked: CheckedSpec
    module: Any                       # the SpecModule, in eval mode
    checkpoint: Path

    @property
    def preprocessing(self) -> dict | None:
        return (self.summary.get("data") or {}).get("preprocessing")


def read_summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a dslc run directory (no summary.json)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: {err}") from None


def run_path(run_dir: str | Path, variant: str | None = None) -> Path:
    """The directory of one trained configuration: the run itself, or its variant's folder."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    names = list(summary.get("variants") or {})
    if variant is None:
        if names and not (run_dir / "checkpoints" / "last.pt").exists():
            raise UserError(f"{run_dir} trained the variants {', '.join(names)}; choose one with --variant")
        return run_dir
    if summary.get("variant") == variant and not names:
        return run_dir
    if variant not in names:
        raise UserError(f"{run_dir} has no variant '{variant}'" + (f"; it has: {', '.join(names)}" if names else ""))
    return run_dir / "variants" / variant


def recheck(path: Path, summary: dict) -> CheckedSpec:
    """The run's configuration, checked again from its stored spec text, overrides and variant."""
    spec_file = next((path / n for n in ("spec.dlspec", "spec.yaml") if (path / n).is_file()), None)
    if spec_file is None:
        raise UserError(f"{path} has no spec.dlspec")
    text = spec_file.read_text(encoding="utf-8")
    # Report (and resolve relative data paths) under the original spec's path when it still exists.
    original = summary.get("spec_path")
    where = original if original and Path(original).parent.is_dir() else str(spec_file)
    if spec_file.suffix == ".yaml" and not where.endswith((".yaml", ".yml")):
        where = str(spec_file)
    spec, source = read_spec_text(text, where)
    from dslc.compiler.data_files import pinned
    with pinned((summary.get("data") or {}).get("scan")):     # the table as training saw it, wherever it is now
        return check_configuration(spec, source, summary.get("overrides") or [], summary.get("variant"))


def load_run(run_dir: str | Path, variant: str | None = None, which: str = "best") -> Run:
    """A trained run: re-checked spec, module with the `which` (best or last) checkpoint's weights, summary."""
    import torch  # noqa: F401  (the model needs it)

    from dslc.compiler.build import build_model

    from dslc.runtime.training.checkpoint import load_checkpoint
    path = run_path(run_dir, variant)
    summary = read_summary(path)
    checked = recheck(path, summary)
    folder = path / "checkpoints"
    ckpt = folder / f"{which}.pt"
    if not ckpt.is_file() and which == "best":
        ckpt = folder / "last.pt"
    state = load_checkpoint(ckpt)
    module = build_model(checked.model, checked.init)
    try:
        module.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as err:
        raise UserError(f"checkpoint {ckpt} does not fit the run's model ({str(err).splitlines()[0][:300]})") from None
    module.eval()
    return Run(path, summary, checked, module, ckpt)
