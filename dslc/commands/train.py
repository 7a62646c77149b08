"""The `dslc train` and `dslc eval` commands.

    dslc train SPEC [--set NAME=VALUE]... [--variant NAME] [--epochs N] [--steps N] [--out DIR]
               [--seed S] [--device D] [--data-root DIR] [--resume RUN_DIR] [--force]
               [--quiet] [--jsonl] [--no-export] [--no-plots] [--nproc N] [--nan stop|skip]
    dslc eval RUN_DIR [--split test|validation|train] [--variant V] [--checkpoint best|last]

`--epochs`, `--steps` and `--seed` are shorthands for `--set train.epochs=N`
(replacing the spec's `steps`), `--set train.steps=N` (replacing `epochs`) and
`--set train.seed=S`; like every override they are part of the spec hash.
`--device` is not: it chooses where to run, not what is trained. A spec with
variants trains every variant (or only `--variant NAME`) and prints their
results side by side. `--nproc N` trains on N local processes through
torch.distributed (see distributed.py); a `dslc train` started by `torchrun`
joins its workers by itself. `--nan` says what a NaN or infinite loss does:
stop the run (the default; the checkpoint on disk stays the last good one) or
skip that step's update. Nothing here imports torch at module level.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dslc.errors import UserError

EXIT_INTERRUPTED = {2: 130, 15: 143}       # SIGINT, SIGTERM


def add_commands(add, overrides) -> None:
    sp = add("train", cmd_train, "train a spec's model into a run directory (runs/<spec>/<time>/)")
    sp.add_argument("spec", metavar="SPEC")
    overrides(sp)
    sp.add_argument("--variant", metavar="NAME", help="train only this variant")
    sp.add_argument("--epochs", type=_positive, metavar="N", help="train for N epochs (same as --set train.epochs=N)")
    sp.add_argument("--steps", type=_positive, metavar="N", help="train for N steps (same as --set train.steps=N)")
    sp.add_argument("--seed", type=int, metavar="S", help="random seed (same as --set train.seed=S)")
    sp.add_argument("--out", metavar="DIR", help="write the run here instead of runs/<spec>/<time>/")
    sp.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to train (default: the spec's device)")
    sp.add_argument("--data-root", metavar="DIR", help="where the data lives (default: $DSLC_DATA_ROOT, then the spec)")
    sp.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    sp.add_argument("--force", action="store_true",
                    help="resume from a checkpoint of a different spec, or replace the run in --out")
    out = sp.add_mutually_exclusive_group()
    out.add_argument("--quiet", action="store_true", help="print nothing while training")
    out.add_argument("--jsonl", action="store_true", help="print one JSON object per log/eval event")
    sp.add_argument("--no-export", action="store_true", help="skip the automatic ONNX export after training")
    sp.add_argument("--no-plots", action="store_true", help="skip drawing the plots into RUN/plots/ after training (or set DSLC_NO_PLOTS=1)")
    sp.add_argument("--nproc", type=_positive, metavar="N",
                    help="train on N processes of this machine with torch.distributed (gloo on the CPU, nccl on "
                         "GPUs); the spec's batch stays the global batch. Several machines: see `torchrun`")
    sp.add_argument("--nan", choices=("stop", "skip"), default="stop",
                    help="on a NaN or infinite loss: stop the run, keeping the last good checkpoint (default), "
                         "or skip that step's update")

    sp = add("eval", cmd_eval, "evaluate a trained run on one of its data splits")
    sp.add_argument("run_dir", metavar="RUN_DIR")
    sp.add_argument("--split", choices=("test", "validation", "train"),
                    help="which split (default: test, else validation, else train)")
    sp.add_argument("--variant", metavar="NAME", help="which variant of a run that trained several")
    sp.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which weights (default: best)")
    sp.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    sp.add_argument("--data-root", metavar="DIR", help="where the data lives")
    sp.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _positive(text: str) -> int:
    import argparse
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


# ---------------------------------------------------------------- dslc train


def cmd_train(args) -> int:
    from dslc.compiler.data_files import data_root
    with data_root(args.data_root):          # the checker reads a table's header where the loader will
        return _cmd_train(args)


def _cmd_train(args) -> int:
    from dslc.runtime.training.distributed import World
    world = World.from_env()
    if world.size > 1:
        if args.nproc not in (None, world.size):
            raise UserError(f"--nproc {args.nproc} asks dslc to start workers, but this is already worker "
                            f"{world.rank} of {world.size} started by torchrun; leave --nproc out")
        return _train_as_worker(args, world)
    if args.nproc and args.nproc > 1:
        return _launch_workers(args)
    return _train(args, world)


def _configurations(args):
    """The spec, its source, the overrides and one checked configuration per variant to train (errors first)."""
    from dslc.dsl.parse import read_spec

    from dslc.runtime.training.run_dir import check_configuration

    spec, source = read_spec(args.spec)
    overrides = list(args.set or [])
    overrides += [f"train.epochs={args.epochs}"] if args.epochs else []
    overrides += [f"train.steps={args.steps}"] if args.steps else []
    overrides += [f"train.seed={args.seed}"] if args.seed is not None else []
    names = [args.variant] if args.variant else [v.name for v in spec.variants] or [None]
    configs = {name: check_configuration(spec, source, overrides, name) for name in names}   # every error first
    for checked in configs.values():
        if checked.train is None:
            raise UserError(f"{args.spec} has no train block, so there is nothing to train")
    return source, overrides, configs


def _resume_dir(path: str) -> Path:
    run = Path(path)
    if not run.is_dir():
        raise UserError(f"cannot resume: {run} is not a directory")
    return run


def _train(args, world) -> int:
    from dslc.runtime.training.distributed import from_main, join
    from dslc.runtime.training.run_dir import new_run_dir, write_json

    source, overrides, configs = _configurations(args)
    several = len(configs) > 1
    if world.size > 1:
        from dslc.runtime.training.loop import pick_device
        first = next(iter(configs.values()))
        join(world, pick_device(args.device or first.train.device).type == "cuda")
    if args.resume:
        run = from_main(world, lambda: _resume_dir(args.resume))
    else:
        made = not (args.out and Path(args.out).exists())
        run = from_main(world, lambda: new_run_dir(args.spec, args.out, args.force))
    mode = "quiet" if args.quiet or not world.main else "jsonl" if args.jsonl else "auto"

    summaries: dict = {}
    status = 0
    try:
        for name, checked in configs.items():
            path = run / "variants" / name if several else run
            summary, code = train_configuration(args, checked, source.text, overrides, path, run, mode, several,
                                                world)
            summaries[name] = summary
            status = status or code
            if code in EXIT_INTERRUPTED.values():
                break
    except UserError:
        if not args.resume and made and world.main:
            _remove_if_empty(run)           # the data was refused before anything was written: leave nothing
            if args.out is None:            # runs/<spec>/ and runs/, when this run made them
                for parent in (run.parent, run.parent.parent):
                    _remove_if_empty(parent)
        raise
    if not world.main:
        return status
    if several:
        from dslc.runtime.training.run_dir import spec_hash, spec_file_name, write_text
        write_text(run / spec_file_name(args.spec), source.text)
        first = next(iter(summaries.values()))
        write_json(run / "summary.json", {
            "spec": args.spec, "spec_path": str(Path(args.spec).resolve()),
            "spec_hash": spec_hash(source.text, overrides, None), "seed": first["seed"], "device": first["device"],
            "epochs": {k: s["epochs"] for k, s in summaries.items()},
            "steps": {k: s["steps"] for k, s in summaries.items()},
            "wall_seconds": round(sum(s["wall_seconds"] for s in summaries.values()), 3),
            "metrics": {k: s["metrics"] for k, s in summaries.items()},
            "params": {k: s["params"] for k, s in summaries.items()},
            "checkpoint": None, "data": None, "overrides": overrides, "variant": None,
            "variants": summaries,
        })
        if mode == "auto":
            print(side_by_side(summaries))
    elif mode == "auto" and status == 0:
        print(f"run: {run}")
    if status == 0 and not args.no_plots:
        from dslc.commands.pictures import make_plots_after_training
        make_plots_after_training(run, args.data_root, quiet=mode != "auto")
    return status


def _remove_if_empty(folder: Path) -> None:
    """Remove `folder` when it holds no file at all (only empty folders)."""
    if not folder.is_dir() or any(p.is_file() or p.is_symlink() for p in folder.rglob("*")):
        return
    for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        sub.rmdir()
    folder.rmdir()


def _read_resume(path: Path, digest: str, force: bool, several: bool) -> dict | None:
    """The checkpoint to continue from (None for a variant that had not started)."""
    from dslc.runtime.training.checkpoint import load_checkpoint
    last = path / "checkpoints" / "last.pt"
    if last.exists():
        return load_checkpoint(last, digest, force)
    if not several:
        raise UserError(f"cannot resume: {path} has no checkpoints/last.pt")
    return None


def train_configuration(args, checked, text: str, overrides: list[str], path: Path, run: Path, mode: str,
                        several: bool, world=None) -> tuple[dict, int]:
    """Train (or resume) one configuration into `path`; returns its summary and an exit status.

    With several ranks every rank trains and rank 0 alone writes (the others return an empty summary).
    """
    import time

    from dslc import __version__

    from dslc.runtime.training.distributed import SINGLE, from_main
    from dslc.runtime.training.progress import Progress
    from dslc.runtime.training.run_dir import MetricsLog, spec_hash, write_json, write_spec_files
    from dslc.runtime.training.loop import StopRequest, fit, pick_device

    world = world or SINGLE
    variant = checked.variant
    digest = spec_hash(text, overrides, variant)
    resume = None
    if args.resume:
        resume = from_main(world, lambda: _read_resume(path, digest, args.force, several))
    if world.main:
        path.mkdir(parents=True, exist_ok=True)
    title = variant or Path(args.spec).stem
    progress = Progress(mode, title, variant=variant if several else None)
    device = pick_device(args.device or checked.train.device)
    if world.size > 1 and device.type == "cuda":
        import torch
        device = torch.device("cuda", world.local_rank)
    data = _load_data_in_turn(checked, args.data_root, world)
    log = None
    if world.main:
        write_spec_files(path, args.spec, text, checked, overrides)
        log = MetricsLog(path / "metrics.jsonl", keep=resume["loop"]["events"] if resume else 0)
    try:
        result = fit(data.checked or checked, data, path, spec_hash=digest, device=device, progress=progress, resume=resume,
                     stop=StopRequest(), log_events=log, world=world, nan=args.nan)
        end = {"event": "end", "status": result["status"], "epoch": result["epochs"], "step": result["steps"],
               "metrics": result["metrics"], "wall_seconds": result["wall_seconds"]}
        if log is not None:
            log(end)
    finally:
        if log is not None:
            log.close()
    if not world.main:
        return {}, EXIT_INTERRUPTED.get(result.get("signal"), 130) if result["status"] == "interrupted" else 0
    summary = {
        "spec": args.spec, "spec_path": str(Path(args.spec).resolve()), "spec_hash": digest,
        "model": checked.model.name, "variant": variant, "overrides": overrides, "seed": checked.train.seed,
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
        return summary, 1
    if result["status"] == "interrupted":
        if not _parent_reports():
            how = f"torchrun ... -m dslc train {args.spec}" if world.size > 1 else f"dslc train {args.spec}"
            progress.message(f"interrupted; continue with: {how} --resume {run}", always=True)
        return summary, EXIT_INTERRUPTED.get(result.get("signal"), 130)
    if checked.export is not None and checked.export.auto and not args.no_export:
        try:
            from dslc.runtime.export.onnx_export import export_run
            onnx = export_run(path, log=progress.message)
        except UserError as err:
            progress.message(f"export failed: {err}", always=True)
            return summary, 1
        summary["onnx"] = str(onnx)
        write_json(path / "summary.json", summary)
        progress.message(f"exported {onnx}")
    return summary, 0


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


def _load_data_in_turn(checked, data_root, world):
    """load_data; with several ranks, each node's local rank 0 first (it may download or unpack into a
    cache the others then read), and the other ranks' notices are not repeated."""
    from dslc.runtime.data.dataset import load_data
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


# ---------------------------------------------------------------- several processes


def _parent_reports() -> bool:
    """True in a worker that `dslc train --nproc` started: the parent prints the outcome."""
    import os

    from dslc.runtime.training.distributed import ENV_PARENT
    return os.environ.get(ENV_PARENT) == "1"


def _train_as_worker(args, world) -> int:
    """One rank of a torch.distributed job; rank 0 reports spec mistakes, every rank its own failures."""
    from dslc.errors import SpecError

    from dslc.runtime.training.distributed import QuietExit, leave
    try:
        return _train(args, world)
    except SpecError:
        if world.main:
            raise
        raise SystemExit(2) from None          # the same mistake on every rank: rank 0 shows it
    except UserError as err:
        if world.main:
            raise
        raise UserError(f"rank {world.rank}: {err}") from None
    except RuntimeError as err:
        if not _lost_peer(err):
            raise
        if _parent_reports():                  # `dslc train --nproc` names the worker that failed first
            raise QuietExit() from None
        raise UserError(f"rank {world.rank} lost contact with the other workers ({_first_line(err)}); "
                        f"training stopped") from None
    finally:
        leave()


def _lost_peer(err: RuntimeError) -> bool:
    import torch.distributed as dist
    text = str(err).lower()
    return isinstance(err, dist.DistError) or any(
        k in text for k in ("gloo", "nccl", "connection closed", "connection reset", "broken pipe", "peer"))


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _launch_workers(args) -> int:
    """`dslc train --nproc N`: check once, make the run directory, start N workers, report their outcome."""
    from dslc.runtime.training.checkpoint import load_checkpoint
    from dslc.runtime.training.distributed import launch
    from dslc.runtime.training.run_dir import new_run_dir, spec_hash

    source, overrides, configs = _configurations(args)
    several = len(configs) > 1
    device = args.device or next(iter(configs.values())).train.device
    if device != "cpu":
        import torch

        from dslc.runtime.training.loop import pick_device
        pick_device(device)                    # device cuda without CUDA: the usual message
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if args.nproc > gpus > 0:
            raise UserError(f"--nproc {args.nproc} needs one GPU per process and this machine has {gpus}; "
                            f"use --nproc {gpus}, or --device cpu to train on CPU processes")
    if args.resume:
        run = _resume_dir(args.resume)
        for name, checked in configs.items():          # refuse a wrong checkpoint here, once
            path = run / "variants" / name if several else run
            if (path / "checkpoints" / "last.pt").exists() or not several:
                _read_resume(path, spec_hash(source.text, overrides, checked.variant), args.force, several)
    else:
        run = new_run_dir(args.spec, args.out, args.force)
    outcome = launch(worker_argv(args, run), args.nproc)
    if outcome.ok:
        return 0
    kept = _kept_checkpoint(run, load_checkpoint)
    again = f"; continue with: dslc train {args.spec} --resume {run} --nproc {args.nproc}" if kept[1] else ""
    if outcome.signal is not None:
        print(f"interrupted; {kept[0]}{again}", file=sys.stderr)
        return EXIT_INTERRUPTED.get(outcome.signal, 130)
    if outcome.failure is None:           # a worker reported its own error (exit status 1 or 2): that is the message
        return 1
    raise UserError(f"training stopped: {outcome.failure}; {kept[0]}{again}")


def _kept_checkpoint(run: Path, load) -> tuple[str, bool]:
    """(a description of the newest last.pt under `run`, whether there is one that loads)."""
    found = sorted(run.glob("checkpoints/last.pt")) + sorted(run.glob("variants/*/checkpoints/last.pt"))
    if not found:
        return "no checkpoint was written", False
    last = max(found, key=lambda p: p.stat().st_mtime)
    try:
        step = load(last)["step"]
    except UserError as err:
        return f"the last checkpoint is not usable ({err})", False
    return f"the last checkpoint, {last} (step {step}), is intact", True


def worker_argv(args, run: Path) -> list[str]:
    """The `dslc train` arguments of each worker: the parent's, with the run directory it made (no --nproc)."""
    argv = [args.spec]
    for value in args.set or []:
        argv += ["--set", value]
    for flag, value in (("--variant", args.variant), ("--epochs", args.epochs), ("--steps", args.steps),
                        ("--seed", args.seed), ("--device", args.device), ("--data-root", args.data_root),
                        ("--nan", args.nan)):
        if value is not None:
            argv += [flag, str(value)]
    if args.resume:
        argv += ["--resume", str(run)] + (["--force"] if args.force else [])
    else:
        argv += ["--out", str(run)]            # made (and emptied, with --force) by the parent
    for flag, on in (("--quiet", args.quiet), ("--jsonl", args.jsonl), ("--no-export", args.no_export),
                     ("--no-plots", args.no_plots)):
        if on:
            argv.append(flag)
    return argv


def side_by_side(summaries: dict) -> str:
    """A table of each variant's final metrics and scalar params."""
    keys = []
    for s in summaries.values():
        keys += [k for k in s["metrics"] if k not in keys]
    params = []
    for s in summaries.values():
        params += [k for k in s["params"] if k not in params]
    rows = [("", *summaries)] + [(k, *(_cell(s["metrics"].get(k)) for s in summaries.values())) for k in keys]
    rows += [(k, *(_cell(s["params"].get(k)) for s in summaries.values())) for k in params]
    rows += [("steps", *(str(s["steps"]) for s in summaries.values()))]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def _cell(v) -> str:
    return "-" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------- dslc eval


def cmd_eval(args) -> int:
    import json

    from dslc.runtime.data.dataset import load_data
    from dslc.runtime.training.loss import make_loss, make_metrics
    from dslc.runtime.training.run_dir import load_run
    from dslc.runtime.training.loop import evaluate, pick_device

    run = load_run(args.run_dir, args.variant, args.checkpoint)
    data = load_data(run.checked, data_root=args.data_root)
    available = {"test": data.test, "validation": data.validation, "train": data.train}
    name = args.split or next(k for k in ("test", "validation", "train") if available[k] is not None)
    split = available[name]
    if split is None:
        have = ", ".join(k for k, v in available.items() if v is not None)
        raise UserError(f"this run's data has no {name} split; it has: {have}")
    device = pick_device(args.device)
    module = run.module.to(device)
    module.reset_state()
    checked = data.checked or run.checked          # with the statistics fitted on the training split
    result = evaluate(module, split.to(device) if device.type != "cpu" else split, make_loss(checked, module),
                      make_metrics(checked), checked.data.batch, device)
    record = {"run": str(run.path), "checkpoint": str(run.checkpoint), "split": name, "samples": split.n,
              **{f"{name}_{k}": v for k, v in result.items()}}
    if args.json:
        print(json.dumps(record))
    else:
        print(f"{run.path} ({run.checkpoint.name}), {name} split, {split.n} samples")
        for k, v in result.items():
            print(f"  {k:<10} {v:.6g}")
    return 0


if __name__ == "__main__":          # pragma: no cover
    sys.exit("use: dslc train / dslc eval")
