"""Which configurations a run trains: from a spec and overrides, or from a run directory being resumed.

`plan_new(spec, overrides, variant)` reads and checks a spec: one checked
configuration per variant to train (every error first). `plan_resume(run,
...)` reads what the run stored — its spec text (RUN/spec.dlspec), its
overrides and variant (RUN/run.json, else summary.json) — and merges what the
command line adds: `--set` replaces a stored setting of the same name, and
`--epochs`/`--steps` replace the stored length (either one). A change of
length alone continues the run (extending a finished run needs no --force);
any other change of what is trained, or another spec text, needs `--force`.
`resolved_config(plan)` is the resolved configuration as YAML, what
`dslc train --print-config` and `dslc show --resolved` print.

No torch here: planning and --print-config stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dslc.errors import UserError

from dslc.runtime.training.manifest import read_manifest
from dslc.runtime.training.run_dir import (check_configuration, read_spec_text, read_summary, resolved_yaml,
                                           spec_hash)

LENGTH_KEYS = ("train.epochs", "train.steps")


@dataclass
class TrainPlan:
    spec: str                                  # the spec path as the user gave it (or as the run recorded it)
    spec_path: str                             # where it is (absolute): relative data paths start there
    text: str                                  # the spec text that trains
    overrides: list[str]                       # --set strings, shorthands included, in order
    variant: str | None                        # --variant: the one variant to train (None: all, or none)
    configs: dict                              # configuration name (variant or None) -> CheckedSpec
    resume: Path | None = None                 # the run being continued
    stored_overrides: list[str] = field(default_factory=list)    # what the resumed run was trained with
    stored_text: str | None = None
    force: bool = False
    data_root: str | None = None               # from the command line, else the resumed run's
    prepared: str | None = None                # prepared shards to stream from (--prepared), else the resumed run's
    device: str | None = None
    nan: str | None = None

    @property
    def lengthened(self) -> bool:
        """True when a resumed run's length (train.epochs / train.steps) was changed."""
        return bool(changed_keys(self.stored_overrides, self.overrides) & set(LENGTH_KEYS)) if self.resume else False

    @property
    def several(self) -> bool:
        return len(self.configs) > 1

    def digest(self, variant: str | None) -> str:
        """The hash this plan's checkpoints carry for one configuration."""
        return spec_hash(self.text, self.overrides, variant)

    def stored_digest(self, variant: str | None) -> str:
        """The hash the resumed run's checkpoints carry (the same as `digest` unless something changed)."""
        return spec_hash(self.stored_text if self.stored_text is not None else self.text,
                         self.stored_overrides, variant)


def shorthand_overrides(sets=(), epochs: int | None = None, steps: int | None = None,
                        seed: int | None = None) -> list[str]:
    """--set strings followed by what --epochs, --steps and --seed stand for."""
    out = list(sets or [])
    out += [f"train.epochs={epochs}"] if epochs else []
    out += [f"train.steps={steps}"] if steps else []
    out += [f"train.seed={seed}"] if seed is not None else []
    return out


def override_key(text: str) -> str:
    return text.partition("=")[0].strip()


def merge_overrides(stored: list[str], new: list[str]) -> list[str]:
    """Stored overrides with new ones applied: a new setting replaces the stored one of the same name (and a new
    train.epochs a stored train.steps, and the other way round); one that is already in force changes nothing."""
    merged = list(stored)
    for text in new:
        key = override_key(text)
        drop = {key} | ({k for k in LENGTH_KEYS if k != key} if key in LENGTH_KEYS else set())
        in_force = [o for o in merged if override_key(o) == key]
        conflicting = [o for o in merged if override_key(o) in drop - {key}]
        if in_force and in_force[-1] == text and not conflicting:
            continue
        merged = [o for o in merged if override_key(o) not in drop] + [text]
    return merged


def _check_all(spec, source, overrides: list[str], variant: str | None, label: str, root=None) -> dict:
    """One checked configuration per variant to train (every error first); tables are read where `root`, the
    data root, says (as the loader will)."""
    from dslc.compiler.data_files import data_root
    names = [variant] if variant else [v.name for v in spec.variants] or [None]
    with data_root(str(root) if root is not None else None):
        configs = {name: check_configuration(spec, source, overrides, name) for name in names}
    for checked in configs.values():
        if checked.train is None:
            raise UserError(f"{label} has no train block, so there is nothing to train")
    return configs


def plan_new(spec: str, overrides: list[str], variant: str | None = None, **options) -> TrainPlan:
    """A fresh run of the spec file `spec` with these overrides (raises SpecError or UserError)."""
    from dslc.dsl.read import read_spec
    parsed, source = read_spec(spec)
    configs = _check_all(parsed, source, overrides, variant, spec, options.get("data_root"))
    return TrainPlan(spec=str(spec), spec_path=str(Path(spec).resolve()), text=source.text,
                     overrides=list(overrides), variant=variant, configs=configs, **options)


def stored_run(run: Path) -> dict:
    """What a run directory says about itself: spec, spec_path, spec_file, overrides, variant, data_root, ...
    (run.json; a run made before run.json existed falls back to its summary.json)."""
    if not run.is_dir():
        raise UserError(f"cannot resume: {run} is not a directory")
    record = read_manifest(run)
    if record is None:
        if not (run / "summary.json").is_file():
            raise UserError(f"cannot resume: {run} is not a dslc run directory (no run.json or summary.json)")
        summary = read_summary(run)
        record = {"spec": summary.get("spec"), "spec_path": summary.get("spec_path"),
                  "overrides": summary.get("overrides") or [], "variant": summary.get("variant"),
                  "configurations": list(summary.get("variants") or {}) or [summary.get("variant")]}
    spec_file = next((run / n for n in (record.get("spec_file"), "spec.dlspec", "spec.yaml")
                      if n and (run / n).is_file()), None)
    if spec_file is None:
        raise UserError(f"cannot resume: {run} holds no copy of its spec (spec.dlspec)")
    record["stored_spec"] = spec_file
    return record


def plan_resume(run: str | Path, spec: str | None = None, new_overrides=(), variant: str | None = None,
                force: bool = False, data_root=None, device: str | None = None, nan: str | None = None,
                prepared=None) -> TrainPlan:
    """Continue the run in `run` with its stored spec and overrides, plus what the command line changes."""
    run = Path(run)
    record = stored_run(run)
    stored_file: Path = record["stored_spec"]
    stored_text = stored_file.read_text(encoding="utf-8")
    stored = list(record.get("overrides") or [])
    original = record.get("spec_path") or record.get("spec")
    if spec is not None:
        text = Path(spec).read_text(encoding="utf-8") if Path(spec).is_file() else None
        if text is None:
            from dslc.dsl.read import read_spec
            read_spec(spec)                       # the usual located error for a missing or unreadable file
        if text != stored_text and not force:
            raise UserError(f"{spec} is not the spec {run} was trained with (its copy is {stored_file}); leave "
                            f"SPEC out to continue with the stored spec, or pass --force to continue with {spec}")
        where = str(spec)
    else:
        text = stored_text
        # report (and resolve relative data paths) where the spec was, when that folder still exists
        where = original if original and Path(original).parent.is_dir() else str(stored_file)
        if stored_file.suffix == ".yaml" and not where.endswith((".yaml", ".yml")):
            where = str(stored_file)
    overrides = merge_overrides(stored, list(new_overrides))
    changed = changed_keys(stored, overrides)
    if changed - set(LENGTH_KEYS) and not force:
        what = ", ".join(sorted(changed - set(LENGTH_KEYS)))
        raise UserError(f"{run} was trained with {_listed(stored)}; changing {what} trains something else. "
                        f"Start a new run, or pass --force to continue this one with the change")
    variant = variant or record.get("variant")
    parsed, source = read_spec_text(text, where)
    root = data_root if data_root is not None else record.get("data_root")
    configs = _check_all(parsed, source, overrides, variant, where, root)
    if changed & set(LENGTH_KEYS) and not force:
        _refuse_length_bound_schedules(configs, run)
    spec_path = str(Path(spec).resolve()) if spec is not None else str(Path(where).resolve())
    return TrainPlan(spec=str(spec or record.get("spec") or stored_file), spec_path=spec_path, text=text,
                     overrides=overrides,
                     variant=variant, configs=configs, resume=run, stored_overrides=stored, stored_text=stored_text,
                     force=force, data_root=root,
                     device=device or record.get("device"), nan=nan or record.get("nan"),
                     prepared=str(prepared) if prepared is not None else record.get("prepared"))


def changed_keys(old: list[str], new: list[str]) -> set[str]:
    a = {override_key(o): o for o in old}
    b = {override_key(o): o for o in new}
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def _listed(overrides: list[str]) -> str:
    return " ".join(f"--set {o}" for o in overrides) if overrides else "no overrides"


def _refuse_length_bound_schedules(configs: dict, run: Path) -> None:
    """A schedule laid out over the whole run (cosine, onecycle) cannot stretch to a new length mid-way."""
    from dslc.compiler.schedules import SCHEDULES
    for checked in configs.values():
        schedule = checked.train.schedule
        if schedule is not None and SCHEDULES[schedule.name].unit == "step":
            raise UserError(f"{run} uses the {schedule.name} schedule, which is laid out over the run's whole "
                            f"length; it cannot be extended. Start a new run with the new length "
                            f"(or pass --force to continue with the schedule as it was)")


# ---------------------------------------------------------------- the resolved configuration


def resolved_config(plan: TrainPlan) -> str:
    """Each configuration's resolved YAML (variables substituted, defaults filled), one YAML document each."""
    from dslc.runtime.training.intervals import given_settings
    docs = []
    for checked in plan.configs.values():
        text = resolved_yaml(checked, plan.overrides)
        given = given_settings(checked)
        lines = []
        for line in text.splitlines():
            key = line.strip().split(":", 1)[0]
            if line.startswith("  ") and not line.startswith("   ") and key in ("log", "evaluate") \
                    and key not in given and _in_train(lines):
                line += "    # the default; a long run widens it to at most 50 events"
            lines.append(line)
        docs.append("\n".join(lines) + "\n")
    return "---\n".join(docs)


def _in_train(lines: list[str]) -> bool:
    """True when the last top-level key among `lines` is `train:`."""
    for line in reversed(lines):
        if line and not line.startswith((" ", "#", "-")):
            return line.startswith("train:")
    return False
