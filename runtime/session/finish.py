"""What follows training: the verified ONNX export beside the plots, each announced and reported in one line.

The trained configurations arrive in memory (checked spec, loaded data,
summary), so nothing is parsed, checked or loaded again: the module is built
once per configuration with the weights of the run's chosen checkpoint (what
`dslc eval` and `dslc export` use too), the export verifies on rows of the
data already loaded (and keeps them in RUN/samples.npz for a later `dslc
export`), and the plots reuse the same module and data. The plots that run the
model are drawn in a forked child process while this one exports and verifies,
then draws the plots that need only the run's metrics (the curves): two jobs
for two cores. The libraries both need (onnx, onnxruntime, matplotlib: ~1 s of
imports) are imported by a thread while the model trains (`start_warmup`), so
neither job imports them afterwards and the child inherits them. Where forking
is not safe (no fork on this platform, CUDA initialised, other threads
running) the two run one after the other. A failure of the plots is reported
and never fatal (the run is saved by then); a failed export is an error (exit
status 1).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from dslc.errors import UserError

NO_PLOTS_ENV = "DSLC_NO_PLOTS"        # set (the test suite does) to skip the plots after training


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def chosen_module(path: Path, checked, summary: dict):
    """(module in eval mode with the weights of the run's chosen checkpoint, that checkpoint's path)."""
    from dslc.compiler.build import build_model

    from dslc.runtime.training.checkpoint import load_checkpoint
    name = (summary.get("selection") or {}).get("checkpoint") or "last.pt"
    ckpt = path / "checkpoints" / name
    module = build_model(checked.model, checked.init)
    module.load_state_dict(load_checkpoint(ckpt)["model"])
    module.eval()
    return module, ckpt


def plots_wanted(plots: bool) -> bool:
    return plots and os.environ.get(NO_PLOTS_ENV, "") in ("", "0")


WARM_EXPORT = ("onnx", "onnx.reference", "onnxruntime", "torch.onnx", "torch.onnx.utils",
               "dslc.runtime.export.onnx_verify")
WARM_PLOTS = ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.patches",
              "dslc.runtime.pictures.plot_draw")


def start_warmup(export: bool, plots: bool):
    """A daemon thread importing what the export and the plots will need, started before training (so the
    imports overlap it); None when there is nothing to import. `finish_run` waits for it."""
    import importlib
    import threading
    names = (WARM_EXPORT if export else ()) + (WARM_PLOTS if plots_wanted(plots) else ())
    if not names:
        return None

    def run():
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:           # the job itself reports a missing or broken library
                return
        if plots_wanted(plots):
            import matplotlib
            matplotlib.use("Agg", force=False)

    thread = threading.Thread(target=run, name="dslc-warmup", daemon=True)
    thread.start()
    return thread


def finish_run(run: Path, trained: list, *, export: bool = True, plots: bool = True, quiet: bool = False,
               data_root=None, parallel: bool = True, warmup=None) -> int:
    """Export each trained configuration whose spec asks for it, and draw the run's plots; returns 0, or 1
    when an export failed. `quiet` prints only failures. `warmup`: the start_warmup thread, joined first."""
    if warmup is not None:
        warmup.join()
    say = (lambda text: None) if quiet else (lambda text: print(text, flush=True))
    exports = [t for t in trained if export and t.checked.export is not None and t.checked.export.auto]
    draw = plots_wanted(plots)
    if not exports and not draw:
        return 0
    start = time.perf_counter()
    modules = {t.name: chosen_module(t.path, t.checked, t.summary) for t in trained}
    jobs = ([f"exporting and verifying {_onnx_name(exports[0])}"] if len(exports) == 1 else
            [f"exporting and verifying {len(exports)} models (one a variant)"] if exports else [])
    jobs += ["drawing plots"] if draw else []
    say(f"{_title(run, trained)}: {', '.join(jobs)} ...")
    child = None
    plots_start = time.perf_counter()
    if draw and parallel and can_fork():
        child = _Child(lambda: _draw(run, trained, modules, data_root, part=lambda kind: kind.needs_model))
    status = 0
    for t in exports:
        status = _export(t, *modules[t.name], say) or status
    if draw:
        if child is None:
            result = _draw(run, trained, modules, data_root)
        else:
            result = _draw(run, trained, modules, data_root, part=lambda kind: not kind.needs_model)
            result = _plots_of_child(child, result)
        if result is not None:
            from dslc.runtime.pictures.plots import write_index
            if result.pictures or result.skipped:
                write_index(result_folder(run), result)
            if result.pictures and not quiet:
                print(f"plots: {result_folder(run)} ({len(result.pictures)} pictures in "
                      f"{time.perf_counter() - plots_start:.1f}s)", flush=True)
    if exports and draw:
        say(f"{_title(run, trained)}: export and plots done in {time.perf_counter() - start:.1f}s")
    return status


def _title(run: Path, trained: list) -> str:
    if len(trained) == 1:
        return trained[0].name or Path(trained[0].summary.get("spec") or run.name).stem
    return Path(trained[0].summary.get("spec") or run.name).stem


def _onnx_name(t) -> str:
    e = t.checked.export
    return e.file if e is not None and e.file else "model.onnx"


def _death(exitcode: int) -> str:
    if exitcode < 0:
        import signal
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"


# ---------------------------------------------------------------- export


def _export(t, module, ckpt: Path, say) -> int:
    """Export one configuration (its chosen checkpoint), verified on rows of its data; 1 when it failed."""
    from dslc.runtime.export.onnx_export import export_loaded, keep_samples, verification_rows
    from dslc.runtime.training.run_dir import Run, write_json
    title = t.name or Path(t.summary.get("spec") or t.path.name).stem
    start = time.perf_counter()
    report: list[str] = []
    try:
        samples = verification_rows(t.data)
        if samples is not None:
            keep_samples(t.path, samples)
        path = export_loaded(Run(t.path, t.summary, t.checked, module, ckpt), samples, log=report.append)
    except UserError as err:
        _err(f"{title}: export failed: {err}")
        return 1
    for text in report:
        say(f"{title}: {text}")
    say(f"{title}: exported {path} ({ckpt.name}) in {time.perf_counter() - start:.1f}s")
    t.summary["onnx"] = str(path)
    write_json(t.path / "summary.json", t.summary)
    return 0


# ---------------------------------------------------------------- plots


def result_folder(run: Path) -> Path:
    from dslc.runtime.pictures.plots import PLOTS_DIR
    return run / PLOTS_DIR


def _draw(run: Path, trained: list, modules: dict, data_root, part=None):
    """Draw (some of) the run's plots with the trained modules and data in memory; returns the PlotResult, or
    None when drawing failed (said in one line on stderr: never fatal, the run is saved)."""
    from dslc.runtime.pictures.plots import make_plots
    preloaded = {t.name: (modules[t.name][0], t.data) for t in trained}
    try:
        return make_plots(run, data_root=data_root, log=_err, preloaded=preloaded, part=part, index=False)
    except UserError as err:
        _err(f"plots not drawn: {err}")
    except Exception as err:            # a drawing bug must not hide that training succeeded
        if os.environ.get("DSLC_DEBUG"):
            raise
        _err(f"plots not drawn (a bug in dslc; the run itself is saved): {type(err).__name__}: {err}")
    return None


def _plots_of_child(child, mine):
    """The child's PlotResult merged with this process's (None when neither drew anything)."""
    from dslc.runtime.pictures.plots import PlotResult
    theirs = child.result()
    if theirs is None:
        return mine
    theirs = PlotResult.from_json(theirs)
    return theirs if mine is None else mine.merged(theirs)


def can_fork() -> bool:
    """Forking this process is safe: Linux, no other thread running, CUDA not initialised."""
    import multiprocessing
    import threading
    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return False
    if threading.active_count() > 1:
        return False
    torch = sys.modules.get("torch")
    return torch is None or not torch.cuda.is_initialized()


class _Child:
    """`job()` in a forked child process (it shares this process's memory: nothing is pickled); its
    PlotResult comes back as JSON text over a pipe."""

    def __init__(self, job):
        import multiprocessing
        sys.stdout.flush()
        sys.stderr.flush()
        context = multiprocessing.get_context("fork")
        self._read, write = context.Pipe(duplex=False)
        self.process = context.Process(target=_child, args=(job, write), daemon=True)
        self.process.start()
        write.close()

    def result(self) -> str | None:
        """The child's result (None when it drew nothing or died, said on stderr), once it has ended."""
        text = None
        try:
            text = self._read.recv_bytes().decode("utf-8")
        except (EOFError, OSError):
            pass
        self.process.join()
        if self.process.exitcode:
            _err(f"plots not drawn: the drawing process ended with {_death(self.process.exitcode)} "
                 f"(the run itself is saved)")
        return text or None


def _child(job, write) -> None:
    try:
        import torch
        torch.set_num_threads(1)          # one core for the drawing; the parent keeps the other
    except ImportError:
        pass
    try:
        result = job()
        write.send_bytes(result.to_json().encode("utf-8") if result is not None else b"")
    finally:
        write.close()
        sys.stdout.flush()
        sys.stderr.flush()
