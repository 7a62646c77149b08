"""The `dslc train` and `dslc eval` commands: argument handling only (the work is in runtime/session/).

    dslc train SPEC [--set NAME=VALUE]... [--variant NAME] [--epochs N] [--steps N] [--out DIR]
               [--seed S] [--device D] [--data-root DIR] [--force] [--quiet] [--jsonl]
               [--no-export] [--no-plots] [--nproc N] [--nan stop|skip] [--prepared DIR] [--print-config]
    dslc train --resume RUN_DIR [SPEC] [--epochs N] [--set NAME=VALUE]... [--force] ...
    dslc eval RUN_DIR [--split test|validation|train] [--variant V] [--checkpoint best|last]

`--epochs`, `--steps` and `--seed` are shorthands for `--set train.epochs=N`
(replacing the spec's `steps`), `--set train.steps=N` (replacing `epochs`) and
`--set train.seed=S`; like every override they are part of the spec hash.
`--device` is not: it chooses where to run, not what is trained. A spec with
variants trains every variant (or only `--variant NAME`) and prints their
results side by side. `--resume RUN` continues a run with the spec and
overrides it stored (runtime/session/plan.py); `--epochs N` there extends it.
`--print-config` prints the resolved configuration and exits. `--nproc N`
trains on N local processes through torch.distributed (see distributed.py); a
`dslc train` started by `torchrun` joins its workers by itself. `--nan` says
what a NaN or infinite loss does: stop the run (the default; the checkpoint on
disk stays the last good one) or skip that step's update. Nothing here imports
torch at module level.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dslc.errors import UserError

EXIT_INTERRUPTED = {2: 130, 15: 143}       # SIGINT, SIGTERM


def add_commands(add, overrides) -> None:
    sp = add("train", cmd_train, "train a spec's model into a run directory (runs/<spec>/<time>/)")
    sp.add_argument("spec", metavar="SPEC", nargs="?",
                    help="the spec to train (with --resume: optional, the run keeps its own copy)")
    overrides(sp)
    sp.add_argument("--variant", metavar="NAME", help="train only this variant")
    sp.add_argument("--epochs", type=positive_int, metavar="N", help="train for N epochs (same as --set train.epochs=N)")
    sp.add_argument("--steps", type=positive_int, metavar="N", help="train for N steps (same as --set train.steps=N)")
    sp.add_argument("--seed", type=int, metavar="S", help="random seed (same as --set train.seed=S)")
    sp.add_argument("--out", metavar="DIR", help="write the run here instead of runs/<spec>/<time>/")
    sp.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where to train (default: the spec's device)")
    sp.add_argument("--data-root", metavar="DIR", help="where the data lives (default: $DSLC_DATA_ROOT, then the spec)")
    sp.add_argument("--prepared", metavar="DIR",
                    help="stream the data from shards `dslc data prepare` wrote into DIR (without it, from the "
                         "default place when the spec's data is prepared there; else the data is loaded into memory)")
    sp.add_argument("--resume", metavar="RUN_DIR",
                    help="continue the run in RUN_DIR from its last checkpoint, with the spec and overrides it "
                         "stored; --epochs/--steps extend it, other --set changes need --force")
    sp.add_argument("--force", action="store_true",
                    help="resume with another spec or other settings, or replace the run in --out")
    sp.add_argument("--print-config", action="store_true",
                    help="print the resolved configuration (variables substituted, defaults filled) and exit")
    out = sp.add_mutually_exclusive_group()
    out.add_argument("--quiet", action="store_true", help="print nothing while training")
    out.add_argument("--jsonl", action="store_true", help="print one JSON object per log/eval event")
    sp.add_argument("--no-export", action="store_true", help="skip the automatic ONNX export after training")
    sp.add_argument("--no-plots", action="store_true", help="skip drawing the plots into RUN/plots/ after training (or set DSLC_NO_PLOTS=1)")
    sp.add_argument("--nproc", type=positive_int, metavar="N",
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


def positive_int(text: str) -> int:
    """argparse type: a whole number above zero (--epochs, --steps, --nproc, --shard-mb)."""
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
    from dslc.runtime.training.run_claim import release_runs
    status = None
    try:
        with data_root(args.data_root):          # the checker reads a table's header where the loader will
            if args.print_config:
                from dslc.runtime.session.plan import resolved_config
                sys.stdout.write(resolved_config(plan_from_args(args)))
                return 0
            status = _cmd_train(args)
        return status
    finally:                                       # a new run that failed before it started training goes
        release_runs(discard_unstarted=status not in (0, *EXIT_INTERRUPTED.values()))


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


def plan_from_args(args):
    """The TrainPlan the arguments describe: a new run of SPEC, or the run in --resume continued."""
    from dslc.runtime.session.plan import plan_new, plan_resume, shorthand_overrides
    overrides = shorthand_overrides(args.set, args.epochs, args.steps, args.seed)
    if args.resume:
        return plan_resume(args.resume, args.spec, overrides, args.variant, args.force,
                           data_root=args.data_root, device=args.device, nan=args.nan, prepared=args.prepared)
    if args.spec is None:
        raise UserError("which spec? give SPEC, or --resume RUN_DIR to continue a run")
    return plan_new(args.spec, overrides, args.variant, data_root=args.data_root, device=args.device, nan=args.nan,
                    prepared=args.prepared)


def _train(args, world) -> int:
    from dslc.runtime.session.train import TrainOptions, train_plan
    plan = plan_from_args(args)
    options = TrainOptions(out=args.out, force=args.force, export=not args.no_export, plots=not args.no_plots,
                           mode="quiet" if args.quiet else "jsonl" if args.jsonl else "auto")
    return train_plan(plan, options, world).status


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
    from dslc.runtime.session.train import read_resume
    from dslc.runtime.training.checkpoint import load_checkpoint
    from dslc.runtime.training.distributed import launch
    from dslc.runtime.training.run_claim import lock_run
    from dslc.runtime.training.run_dir import new_run_dir

    plan = plan_from_args(args)
    device = plan.device or next(iter(plan.configs.values())).train.device
    if device != "cpu":
        import torch

        from dslc.runtime.training.loop import pick_device
        pick_device(device)                    # device cuda without CUDA: the usual message
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if args.nproc > gpus > 0:
            raise UserError(f"--nproc {args.nproc} needs one GPU per process and this machine has {gpus}; "
                            f"use --nproc {gpus}, or --device cpu to train on CPU processes")
    if plan.resume is not None:
        run = plan.resume
        lock_run(run)                          # the workers train it; this process holds it meanwhile
        for name, checked in plan.configs.items():          # refuse a wrong checkpoint here, once
            path = run / "variants" / name if plan.several else run
            if (path / "checkpoints" / "last.pt").exists() or not plan.several:
                read_resume(path, plan.stored_digest(checked.variant), plan.force, plan.several, plan.spec)
    else:
        run = new_run_dir(plan.spec, args.out, args.force)
    outcome = launch(worker_argv(args, run), args.nproc)
    if outcome.ok:
        return 0
    kept = _kept_checkpoint(run, load_checkpoint)
    again = f"; continue with: dslc train --resume {run} --nproc {args.nproc}" if kept[1] else ""
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
    argv = [args.spec] if args.spec is not None else []
    for value in args.set or []:
        argv += ["--set", value]
    for flag, value in (("--variant", args.variant), ("--epochs", args.epochs), ("--steps", args.steps),
                        ("--seed", args.seed), ("--device", args.device), ("--data-root", args.data_root),
                        ("--nan", args.nan), ("--prepared", args.prepared)):
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


# ---------------------------------------------------------------- dslc eval


def cmd_eval(args) -> int:
    import json

    from dslc.runtime.session.evaluate import evaluate_run
    record = evaluate_run(args.run_dir, args.split, args.variant, args.checkpoint, args.device, args.data_root)
    if args.json:
        print(json.dumps(record))
    else:
        print(f"{record['run']} ({Path(record['checkpoint']).name}), {record['split']} split, "
              f"{record['samples']} samples")
        for k, v in record.items():
            if k not in ("run", "checkpoint", "split", "samples"):
                print(f"  {k:<16} {v:.6g}")
    return 0


if __name__ == "__main__":          # pragma: no cover
    sys.exit("use: dslc train / dslc eval")
