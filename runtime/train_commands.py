"""The `dslc train` and `dslc eval` commands.

    dslc train SPEC [--set NAME=VALUE]... [--variant NAME] [--epochs N] [--steps N] [--out DIR]
               [--seed S] [--device D] [--data-root DIR] [--resume RUN_DIR] [--force]
               [--quiet] [--jsonl] [--no-export] [--no-plots]
    dslc eval RUN_DIR [--split test|validation|train] [--variant V] [--checkpoint best|last]

`--epochs`, `--steps` and `--seed` are shorthands for `--set train.epochs=N`
(replacing the spec's `steps`), `--set train.steps=N` (replacing `epochs`) and
`--set train.seed=S`; like every override they are part of the spec hash.
`--device` is not: it chooses where to run, not what is trained. A spec with
variants trains every variant (or only `--variant NAME`) and prints their
results side by side. Nothing here imports torch at module level.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dslc.cli import UserError

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
    from dslc.dsl.parse import read_spec

    from .run_dir import check_configuration, new_run_dir, write_json

    spec, source = read_spec(args.spec)
    overrides = list(args.set or [])
    overrides += [f"train.epochs={args.epochs}"] if args.epochs else []
    overrides += [f"train.steps={args.steps}"] if args.steps else []
    overrides += [f"train.seed={args.seed}"] if args.seed is not None else []
    names = [args.variant] if args.variant else [v.name for v in spec.variants] or [None]
    several = len(names) > 1
    configs = {name: check_configuration(spec, source, overrides, name) for name in names}   # every error first
    for checked in configs.values():
        if checked.train is None:
            raise UserError(f"{args.spec} has no train block, so there is nothing to train")

    if args.resume:
        run = Path(args.resume)
        if not run.is_dir():
            raise UserError(f"cannot resume: {run} is not a directory")
    else:
        run = new_run_dir(args.spec, args.out, args.force)
    mode = "quiet" if args.quiet else "jsonl" if args.jsonl else "auto"

    summaries: dict = {}
    status = 0
    for name, checked in configs.items():
        path = run / "variants" / name if several else run
        summary, code = train_configuration(args, checked, source.text, overrides, path, run, mode, several)
        summaries[name] = summary
        status = status or code
        if code in EXIT_INTERRUPTED.values():
            break
    if several:
        from .run_dir import spec_hash, spec_file_name, write_text
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
        from .picture_commands import make_plots_after_training
        make_plots_after_training(run, args.data_root, quiet=mode != "auto")
    return status


def train_configuration(args, checked, text: str, overrides: list[str], path: Path, run: Path, mode: str,
                        several: bool) -> tuple[dict, int]:
    """Train (or resume) one configuration into `path`; returns its summary and an exit status."""
    import time

    from dslc import __version__

    from .checkpoint import load_checkpoint
    from .data import load_data
    from .progress import Progress
    from .run_dir import MetricsLog, spec_hash, write_json, write_spec_files
    from .train import StopRequest, fit, pick_device

    variant = checked.variant
    digest = spec_hash(text, overrides, variant)
    resume = None
    if args.resume:
        last = path / "checkpoints" / "last.pt"
        if last.exists():
            resume = load_checkpoint(last, digest, args.force)
        elif not several:
            raise UserError(f"cannot resume: {path} has no checkpoints/last.pt")
    path.mkdir(parents=True, exist_ok=True)
    title = variant or Path(args.spec).stem
    progress = Progress(mode, title, variant=variant if several else None)
    device = pick_device(args.device or checked.train.device)
    data = load_data(checked, data_root=args.data_root)      # prints its own notices (bundled samples, ...)
    write_spec_files(path, args.spec, text, checked, overrides)
    log = MetricsLog(path / "metrics.jsonl", keep=resume["loop"]["events"] if resume else 0)
    try:
        result = fit(checked, data, path, spec_hash=digest, device=device, progress=progress, resume=resume,
                     stop=StopRequest(), log_events=log)
        end = {"event": "end", "status": result["status"], "epoch": result["epochs"], "step": result["steps"],
               "metrics": result["metrics"], "wall_seconds": result["wall_seconds"]}
        log(end)
    finally:
        log.close()
    summary = {
        "spec": args.spec, "spec_path": str(Path(args.spec).resolve()), "spec_hash": digest,
        "model": checked.model.name, "variant": variant, "overrides": overrides, "seed": checked.train.seed,
        **result, "data": data.info, "variants": {}, "dslc_version": __version__,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json(path / "summary.json", summary)
    progress.finish(summary)
    if result["status"] == "interrupted":
        progress.message(f"interrupted; continue with: dslc train {args.spec} --resume {run}", always=True)
        return summary, EXIT_INTERRUPTED.get(result.get("signal"), 130)
    if checked.export is not None and checked.export.auto and not args.no_export:
        try:
            from .export import export_run
            onnx = export_run(path, log=progress.message)
        except UserError as err:
            progress.message(f"export failed: {err}", always=True)
            return summary, 1
        summary["onnx"] = str(onnx)
        write_json(path / "summary.json", summary)
        progress.message(f"exported {onnx}")
    return summary, 0


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

    from .data import load_data
    from .loss import make_loss
    from .run_dir import load_run
    from .train import evaluate, pick_device

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
    result = evaluate(module, split.to(device) if device.type != "cpu" else split, make_loss(run.checked, module),
                      run.checked.train.metrics, run.checked.data.batch, device)
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
