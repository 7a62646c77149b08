"""The `dslc plot`, `dslc report`, `dslc runs` and `dslc compare` commands.

    dslc plot RUN_DIR [--only KIND]... [--out DIR] [--data-root DIR]
    dslc report RUN_DIR [--out FILE] [--replot] [--data-root DIR]
    dslc runs [DIR] [--json] [--limit N]
    dslc compare RUN_A RUN_B [RUN...] [--out FILE]

Which plots a run gets follows from its spec (runtime/plot_catalog.py).
Nothing here imports torch or matplotlib at module level.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dslc.errors import UserError


def add_commands(add, overrides) -> None:
    sp = add("plot", cmd_plot, "draw a trained run's pictures (curves, fits, confusion, ...) into RUN_DIR/plots/")
    sp.add_argument("run_dir", metavar="RUN_DIR")
    sp.add_argument("--only", action="append", metavar="KIND",
                    help="draw only this kind (repeatable): curves, confusion, predictions, ... (a wrong name lists them)")
    sp.add_argument("--out", metavar="DIR", help="write the PNGs here instead of RUN_DIR/plots/")
    sp.add_argument("--data-root", metavar="DIR", help="where the data lives (default: where training found it)")

    sp = add("report", cmd_report, "write a self-contained HTML report of a trained run (RUN_DIR/report.html)")
    sp.add_argument("run_dir", metavar="RUN_DIR")
    sp.add_argument("--out", metavar="FILE", help="write the report here instead of RUN_DIR/report.html")
    sp.add_argument("--replot", action="store_true", help="draw the plots again even when they are up to date")
    sp.add_argument("--data-root", metavar="DIR", help="where the data lives (default: where training found it)")

    sp = add("runs", cmd_runs, "list the runs under DIR (default runs/), newest first")
    sp.add_argument("dir", nargs="?", default="runs", metavar="DIR")
    sp.add_argument("--json", action="store_true", help="print the runs as JSON")
    sp.add_argument("--limit", type=int, metavar="N", help="show only the newest N runs")

    sp = add("compare", cmd_compare, "overlay the training curves of two or more runs in one PNG")
    sp.add_argument("runs", nargs="+", metavar="RUN_DIR")
    sp.add_argument("--out", metavar="FILE", default="compare.png", help="the picture to write (default compare.png)")


def make_plots_after_training(run_dir: Path, data_root=None, quiet: bool = False) -> None:
    """What `dslc train` calls at the end: draw the run's plots (unless $DSLC_NO_PLOTS is set, as the
    test suite does). A failure is reported on stderr, never fatal (the run is saved by then); with
    `quiet`, success prints nothing."""
    import os

    def failed(text: str) -> None:
        print(text, file=sys.stderr)

    if os.environ.get("DSLC_NO_PLOTS", "") not in ("", "0"):
        return
    try:
        from dslc.runtime.pictures.plots import make_plots
        result = make_plots(run_dir, data_root=data_root, log=failed)
    except UserError as err:
        failed(f"plots not drawn: {err}")
        return
    except OSError as err:              # a full disk or a read-only folder: the run is saved, the pictures not
        failed(f"plots not drawn: cannot write {err.filename or run_dir}: {err.strerror or err}")
        return
    except Exception as err:            # a drawing bug must not hide that training succeeded
        if os.environ.get("DSLC_DEBUG"):
            raise
        failed(f"plots not drawn (a bug in dslc; the run itself is saved): {type(err).__name__}: {err}")
        return
    if result.pictures and not quiet:
        print(f"plots: {result.pictures[0].path.parent} ({len(result.pictures)} pictures)")


def cmd_plot(args) -> int:
    from dslc.runtime.pictures.plot_catalog import PLOTS
    for kind in args.only or ():
        if kind not in PLOTS:
            import difflib
            near = difflib.get_close_matches(kind, list(PLOTS), n=1)
            raise UserError(f"--only {kind}: no such kind of plot{f' (did you mean {near[0]!r}?)' if near else ''}; "
                            f"the kinds: {', '.join(PLOTS)}")
    from dslc.runtime.pictures.plots import make_plots
    result = make_plots(args.run_dir, data_root=args.data_root, only=args.only, out=args.out,
                        log=lambda text: print(text, file=sys.stderr))
    for p in result.pictures:
        print(p.path)
    if not result.pictures and not result.skipped:
        print("no plots apply to this run", file=sys.stderr)
    return 1 if result.skipped and not result.pictures else 0


def cmd_report(args) -> int:
    from dslc.runtime.pictures.report import write_report
    path = write_report(args.run_dir, out=args.out, data_root=args.data_root, replot=args.replot,
                        log=lambda text: print(text, file=sys.stderr))
    print(path)
    return 0


def cmd_runs(args) -> int:
    from dslc.runtime.pictures.runs_table import find_runs, rows_json, runs_table
    if args.limit is not None and args.limit <= 0:
        raise UserError("--limit must be positive")
    rows = find_runs(args.dir)[:args.limit]
    if args.json:
        print(rows_json(rows))
    elif not rows:
        print(f"no runs under {args.dir}")
    else:
        print(runs_table(rows, Path(args.dir)))
    return 0


def cmd_compare(args) -> int:
    from dslc.runtime.pictures.runs_table import compare_runs
    if len(args.runs) < 2:
        raise UserError("compare needs at least two run directories")
    print(compare_runs(args.runs, args.out))
    return 0
