"""Training a plan into its run directory: data, the loop, metrics.jsonl, summary.json and what is printed.

`train_plan(plan, options)` makes (or reopens, resuming) the run directory,
writes run.json, trains each configuration (`train_configuration`: load the
data, widen the default log/evaluate intervals, write the spec files, run the
loop, write summary.json), then hands the trained configurations to
finish.py for the ONNX export and the plots. It returns a `TrainOutcome`:
the run directory, each configuration's summary and an exit status (0, 1 for
a failure, 130/143 after SIGINT/SIGTERM). With several ranks every rank
trains and rank 0 alone writes. The command line and the Python API both
call this.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dslc.errors import UserError

from dslc.runtime.session.plan import TrainPlan
from dslc.runtime.training.distributed import ENV_PARENT, SINGLE, World, from_main, join
from dslc.runtime.training.manifest import write_manifest
from dslc.files import make_folder
from dslc.runtime.training.run_claim import lock_run, made_here
from dslc.runtime.training.run_dir import new_run_dir, read_summary, spec_file_name, write_json, write_text

EXIT_INTERRUPTED = {2: 130, 15: 143}       # SIGINT, SIGTERM


@dataclass
class TrainOptions:
    """How one `dslc train` (or `Spec.train()`) runs, beyond what the plan says is trained."""
    out: str | Path | None = None           # the run directory (default runs/<spec>/<time>/)
    force: bool = False                      # replace what `out` holds
    mode: str = "auto"                       # progress: auto (bar on a terminal, else lines), lines, jsonl, quiet
    export: bool = True                      # export to ONNX after training (when the spec's export.auto says so)
    plots: bool = True                       # draw the plots after training


@dataclass
class Trained:
    """One trained configuration, as finish.py needs it (everything in memory: nothing is read again)."""
    name: str | None                         # its variant (None for a spec without variants)
    path: Path
    checked: object
    data: object
    summary: dict


@dataclass
class TrainOutcome:
    run: Path
    summaries: dict                          # configuration name -> summary (rank 0; empty on other ranks)
    status: int
    trained: list[Trained] = field(default_factory=list)


def parent_reports() -> bool:
    """True in a worker that `dslc train --nproc` started: the parent prints the outcome."""
    import os
    return os.environ.get(ENV_PARENT) == "1"


def resume_command(plan: TrainPlan, run: Path, world: World = SINGLE) -> str:
    if world.size > 1:
        return f"torchrun ... -m dslc train --resume {run}"
    return f"dslc train --resume {run}"


def train_plan(plan: TrainPlan, options: TrainOptions | None = None, world: World = SINGLE,
               say=None) -> TrainOutcome:
    """Train every configuration of the plan; then export and draw (rank 0). `say` prints a line (stdout)."""
    options = options or TrainOptions()
    say = say or (lambda text: print(text, flush=True))
    if world.size > 1:
        from dslc.runtime.training.loop import pick_device
        first = next(iter(plan.configs.values()))
        join(world, pick_device(plan.device or first.train.device).type == "cuda")
    lock = not parent_reports()             # under `dslc train --nproc` the parent holds the run's lock
    if plan.resume is not None:
        run = plan.resume
        if lock:
            from_main(world, lambda: lock_run(run))         # one process at a time trains a run
    else:
        run = from_main(world, lambda: new_run_dir(plan.spec, options.out, options.force or
                                                   failed_before_training(options.out), lock))
    if world.main:
        write_manifest(run, spec=plan.spec, overrides=plan.overrides, variant=plan.variant,
                       configurations=list(plan.configs), data_root=plan.data_root, device=plan.device,
                       nan=plan.nan or "stop", resumed=plan.resume is not None, prepared=plan.prepared)
    mode = "quiet" if options.mode == "quiet" or not world.main else options.mode
    warmup = None
    if world.size == 1:
        from dslc.runtime.session.finish import start_warmup
        auto_export = options.export and any(c.export is not None and c.export.auto for c in plan.configs.values())
        warmup = start_warmup(auto_export, options.plots)

    outcome = TrainOutcome(run, {}, 0)
    for name, checked in plan.configs.items():
        path = run / "variants" / name if plan.several else run
        try:
            summary, code, trained = train_configuration(plan, checked, path, run, mode, world)
        except BaseException as err:
            if world.main and not _removed_on_failure(plan, run):
                record_failure(plan, checked, path, err)
                if plan.several:
                    outcome.summaries[name] = read_summary(path) if (path / "summary.json").is_file() else {}
                    _write_run_summary(plan, run, outcome.summaries)
            raise
        outcome.summaries[name] = summary
        outcome.status = outcome.status or code
        if trained is not None:
            outcome.trained.append(trained)
        if code in EXIT_INTERRUPTED.values():
            break
    if not world.main:
        return outcome
    if plan.several:
        _write_run_summary(plan, run, outcome.summaries)
        if mode in ("auto", "lines", "bar"):
            say(side_by_side(outcome.summaries))
    if outcome.trained and outcome.status == 0:
        from dslc.runtime.session.finish import finish_run
        outcome.status = finish_run(run, outcome.trained, export=options.export, plots=options.plots,
                                    quiet=mode not in ("auto", "lines", "bar"), data_root=plan.data_root,
                                    parallel=world.size == 1, warmup=warmup)
    if mode in ("auto", "lines", "bar") and outcome.status == 0:
        say(f"run: {run}")
    return outcome


def failed_before_training(out) -> bool:
    """True when `out` holds only a run that failed before its first checkpoint (missing data, say): trying
    again with the same --out replaces it without --force, since nothing of it is worth keeping."""
    if out is None:
        return False
    path = Path(out)
    try:
        summary = read_summary(path) if (path / "summary.json").is_file() else None
    except UserError:
        return False
    if summary is None or summary.get("status") != "failed":
        return False
    return not any(path.glob("checkpoints/*.pt")) and not any(path.glob("variants/*/checkpoints/*.pt"))


def _write_run_summary(plan: TrainPlan, run: Path, summaries: dict) -> None:
    """The top-level summary.json of a run that trained several variants."""
    from dslc.runtime.training.run_dir import spec_hash
    write_text(run / spec_file_name(plan.spec), plan.text)
    done = {k: s for k, s in summaries.items() if s}
    first = next(iter(done.values()))
    write_json(run / "summary.json", {
        "spec": plan.spec, "spec_path": plan.spec_path,
        "spec_hash": spec_hash(plan.text, plan.overrides, None), "seed": first.get("seed"),
        "device": first.get("device"), "status": _overall_status(done),
        "epochs": {k: s.get("epochs") for k, s in done.items()},
        "steps": {k: s.get("steps") for k, s in done.items()},
        "wall_seconds": round(sum(s.get("wall_seconds") or 0 for s in done.values()), 3),
        "metrics": {k: s.get("metrics") or {} for k, s in done.items()},
        "params": {k: s.get("params") or {} for k, s in done.items()},
        "checkpoint": None, "data": None, "overrides": plan.overrides, "variant": None,
        "variants": done, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })


def _removed_on_failure(plan: TrainPlan, run: Path) -> bool:
    """A new run this process made that has no checkpoint yet: its folder is removed again when the command
    fails (run_claim.release_runs), so the failure is not recorded in it."""
    return plan.resume is None and made_here(run) and not any(run.glob("**/checkpoints/last.pt"))


def record_failure(plan: TrainPlan, checked, path: Path, err: BaseException) -> None:
    """summary.json for a configuration that stopped on an error before writing one (so `dslc runs` lists
    it, with the error). A summary already there (a resumed run's) is kept. Never hides `err`."""
    from dslc.errors import DslcError
    if isinstance(err, SystemExit) or (path / "summary.json").is_file():
        return
    first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
    if isinstance(err, KeyboardInterrupt):
        status, text = "interrupted", None
    elif isinstance(err, DslcError):
        status, text = "failed", first
    else:
        status, text = "failed", f"internal error: {type(err).__name__}: {first}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / "summary.json", {
            "spec": plan.spec, "spec_path": plan.spec_path, "spec_hash": plan.digest(checked.variant),
            "variant": checked.variant, "overrides": plan.overrides, "status": status, "error": text,
            "steps": None, "epochs": None, "metrics": {}, "params": {}, "variants": {},
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
    except (OSError, UserError):
        pass                                  # a full disk, say: the error itself is what matters


def _overall_status(summaries: dict) -> str:
    statuses = {s.get("status") for s in summaries.values()}
    return statuses.pop() if len(statuses) == 1 else "mixed"


def read_resume(path: Path, digest: str, force: bool, several: bool, spec: str = "SPEC") -> dict | None:
    """The checkpoint to continue from (None for a variant that had not started)."""
    from dslc.runtime.training.checkpoint import load_checkpoint
    last = path / "checkpoints" / "last.pt"
    if last.exists():
        return load_checkpoint(last, digest, force)
    if several:
        return None
    raise UserError(f"cannot resume {path}: it stopped before its first checkpoint (it has no "
                    f"checkpoints/last.pt), so there is nothing to continue from; start it again with: "
                    f"dslc train {spec} --out {path} --force")


def _nothing_to_do(plan: TrainPlan, path: Path, resume: dict, total_steps: int) -> str | None:
    """Why a resumed configuration needs no training (it ended and its length did not grow), or None."""
    if not (path / "summary.json").is_file():
        return None
    try:
        status = read_summary(path).get("status")
    except UserError:
        return None
    step = int(resume["step"])
    if status == "completed" and step >= total_steps:
        if step > total_steps:
            return f"it has trained {step} steps already, more than the {total_steps} asked for"
        return f"it completed all {total_steps} steps; to train longer, add --epochs N or --steps N"
    if status == "stopped early" and not plan.lengthened:
        return f"early stopping ended it at step {step}; to train on, add --epochs N or --steps N"
    return None


def train_configuration(plan: TrainPlan, checked, path: Path, run: Path, mode: str,
                        world: World = SINGLE) -> tuple[dict, int, Trained | None]:
    """Train (or resume) one configuration into `path`; returns its summary, an exit status and, when it
    completed, what finish.py needs. With several ranks rank 0 alone writes (the others return {})."""
    from dslc import __version__

    from dslc.runtime.training.intervals import scaled_intervals
    from dslc.runtime.training.loop import StopRequest, fit, pick_device
    from dslc.runtime.training.progress import Progress
    from dslc.runtime.training.run_dir import MetricsLog, write_spec_files

    variant = checked.variant
    digest = plan.digest(variant)
    resume = None
    if plan.resume is not None:
        resume = from_main(world, lambda: read_resume(path, plan.stored_digest(variant), plan.force, plan.several,
                                                      plan.spec))
    if world.main:
        make_folder(path, "create run directory")
    title = variant or Path(plan.spec).stem
    progress = Progress(mode, title, variant=variant if plan.several else None)
    device = pick_device(plan.device or checked.train.device)
    if world.size > 1 and device.type == "cuda":
        import torch
        device = torch.device("cuda", world.local_rank)
    again = " ".join([f"--set {o}" for o in plan.overrides] + ([f"--variant {variant}"] if variant else [])
                     + ([f"--data-root {plan.data_root}"] if plan.data_root else []))
    data = load_data_in_turn(checked, plan.data_root, world, plan.prepared, again)
    checked = scaled_intervals(checked, data.train.n)
    if resume is not None:
        batch = checked.data.batch or data.train.n
        total = checked.train.steps or checked.train.epochs * math.ceil(data.train.n / batch)
        why = _nothing_to_do(plan, path, resume, total)
        if why is not None:
            if world.main:
                progress.message(f"nothing to do: {why}", always=True)
            return (read_summary(path) if world.main else {}), 0, None
    log = None
    if world.main:
        write_spec_files(path, plan.spec, plan.text, checked, plan.overrides)
        log = MetricsLog(path / "metrics.jsonl", keep=resume["loop"]["events"] if resume else 0)
    try:
        result = fit(checked, data, path, spec_hash=digest, device=device, progress=progress, resume=resume,
                     stop=StopRequest(), log_events=log, world=world, nan=plan.nan or "stop")
        end = {"event": "end", "status": result["status"], "epoch": result["epochs"], "step": result["steps"],
               "checkpoint": result["selection"]["checkpoint"], "metrics": result["metrics"],
               "wall_seconds": result["wall_seconds"]}
        if log is not None:
            log(end)
    finally:
        if log is not None:
            log.close()
    if not world.main:
        return {}, EXIT_INTERRUPTED.get(result.get("signal"), 130) if result["status"] == "interrupted" else 0, None
    summary = {
        "spec": plan.spec, "spec_path": plan.spec_path, "spec_hash": digest,
        "model": checked.model.name, "variant": variant, "overrides": plan.overrides, "seed": checked.train.seed,
        **result, "data": data.info, "variants": {}, "dslc_version": __version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(path / "summary.json", summary)
    progress.finish(summary)
    if result.get("skipped_steps"):
        progress.message(f"--nan skip left out the updates of {result['skipped_steps']} step(s) whose loss or "
                         f"gradients were NaN or infinite", always=True)
    if result["status"] == "diverged":
        print(f"error: {diverged_message(result, path)}", file=sys.stderr)
        return summary, 1, None
    if result["status"] == "interrupted":
        if not parent_reports():
            progress.message(f"interrupted; continue with: {resume_command(plan, run, world)}", always=True)
        return summary, EXIT_INTERRUPTED.get(result.get("signal"), 130), None
    return summary, 0, Trained(variant, path, checked, data, summary)


def diverged_message(result: dict, path: Path) -> str:
    """One line: where the loss (or the weights) stopped being finite, and which checkpoint is the good one."""
    d = result["diverged"]
    what = "training loss" if d["what"] == "loss" else "model's weights"
    last = path / "checkpoints" / "last.pt"
    kept = (f"the last good checkpoint, {last} (step {result['saved_step']}), is kept"
            if result.get("saved_step") is not None else "no checkpoint had been written yet")
    return (f"the {what} became NaN or infinite at step {d['step']} (epoch {d['epoch']}); training stopped and "
            f"{kept}; try a lower learning rate or clip_grad_norm in the train block, or --nan skip to skip "
            f"such steps")


def load_data_in_turn(checked, data_root, world: World = SINGLE, prepared=None, again: str = ""):
    """The data streamed from prepared shards (`prepared`, else the default place when the spec's data is
    prepared there: runtime/data/prepared.py), else load_data; with several ranks, each node's local rank 0
    first (it may download or unpack into a cache the others then read), and the other ranks' notices are
    not repeated."""
    from dslc.runtime.data.dataset import load_data
    from dslc.runtime.data.prepared import stream_if_prepared
    streamed = stream_if_prepared(checked, data_root, prepared, again=again)
    if streamed is not None:
        if world.main:
            counts = ", ".join(f"{streamed.info['counts'][k]:,} {k}" for k in ("train", "validation", "test")
                               if streamed.info["counts"].get(k))
            print(f"note: streaming the data from prepared shards in {streamed.info['prepared']} ({counts})",
                  file=sys.stderr)
        return streamed
    if world.size == 1:
        return load_data(checked, data_root=data_root)      # prints its own notices (bundled samples, ...)
    import contextlib
    import io
    first = world.local_rank == 0
    if not first:
        world.barrier()
    with contextlib.redirect_stderr(io.StringIO()) if not world.main else contextlib.nullcontext():
        data = load_data(checked, data_root=data_root)
    if first:
        world.barrier()
    return data


def side_by_side(summaries: dict) -> str:
    """A table of each variant's metrics (of its chosen checkpoint) and scalar params."""
    summaries = {k: s for k, s in summaries.items() if s}
    keys = []
    for s in summaries.values():
        keys += [k for k in s["metrics"] if k not in keys]
    params = []
    for s in summaries.values():
        params += [k for k in s["params"] if k not in params]
    rows = [("", *summaries)] + [(k, *(_cell(s["metrics"].get(k)) for s in summaries.values())) for k in keys]
    rows += [(k, *(_cell(s["params"].get(k)) for s in summaries.values())) for k in params]
    rows += [("steps", *(str(s["steps"]) for s in summaries.values()))]
    rows += [("checkpoint", *(_checkpoint_cell(s) for s in summaries.values()))]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def _checkpoint_cell(summary: dict) -> str:
    sel = summary.get("selection") or {}
    return f"{sel.get('checkpoint', '-')} (step {sel.get('step', '-')})"


def _cell(v) -> str:
    return "-" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)
