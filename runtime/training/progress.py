"""How a run reports itself while it trains: a live bar, plain lines, JSON lines, or nothing.

    bar     a rich progress bar with the live loss and metrics (the default on a terminal)
    lines   one plain line per log or evaluation event (the default when output is redirected)
    jsonl   one JSON object per event on stdout, for scripts (`--jsonl`); notices go to stderr
    quiet   nothing (`--quiet`); errors still reach stderr

The loop calls `event(record)` for log and eval events, `advance(step, epoch)`
a few times a second when `ticking` is true, and `message(text)` for notices.
"""

from __future__ import annotations

import json
import math
import sys


def _fmt(value) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.6g}"
    return str(value)


def describe(record: dict) -> str:
    """`epoch 3 step 240  train_loss 0.123  val_accuracy 0.981` for an event record."""
    skip = {"event", "epoch", "step", "variant"}
    parts = [f"epoch {record['epoch']}", f"step {record['step']}"]
    parts += [f"{k} {_fmt(v)}" for k, v in record.items() if k not in skip and v is not None]
    return "  ".join(parts)


class Progress:
    """One reporter per run (or per variant: `title` says which)."""

    def __init__(self, mode: str = "auto", title: str = "train", stream=None, variant: str | None = None):
        self.stream = stream or sys.stdout
        self.variant = variant            # added to JSON records when several variants train
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.mode = mode
        self.title = title
        self.ticking = mode == "bar"
        self._bar = None
        self._task = None
        self._latest: dict = {}

    def begin(self, total_steps: int, done: int = 0) -> None:
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self._bar = Bar(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[epoch]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            TextColumn("{task.fields[metrics]}"), console=Console(file=self.stream),
                            refresh_per_second=4)
            self._bar.start()
            self._task = self._bar.add_task(self.title, total=total_steps, completed=done, epoch="", metrics="")
        elif self.mode == "lines":
            self._print(f"{self.title}: {total_steps} steps" + (f", resuming at step {done}" if done else ""))

    def advance(self, step: int, epoch: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, epoch=f"epoch {epoch + 1}", metrics=self._metrics_text())

    def event(self, record: dict) -> None:
        if self.mode == "jsonl":
            self._json(record)
            return
        if self.mode == "quiet":
            return
        self._latest.update({k: v for k, v in record.items() if k not in ("event", "epoch", "step") and v is not None})
        if self._bar is not None:
            self._bar.update(self._task, completed=record["step"], metrics=self._metrics_text())
            if record["event"] == "eval":
                self._bar.console.print(f"{self.title}: {describe(record)}")
        else:
            self._print(f"{self.title}: {describe(record)}")

    def message(self, text: str, always: bool = False) -> None:
        """A notice; `always` shows it even with --quiet (on stderr)."""
        if self.mode == "quiet":
            if always:
                print(text, file=sys.stderr)
            return
        if self.mode == "jsonl":
            print(text, file=sys.stderr)
        elif self._bar is not None:
            self._bar.console.print(f"{self.title}: {text}")
        else:
            self._print(f"{self.title}: {text}")

    def end(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def finish(self, summary: dict) -> None:
        """The run's outcome: a JSON `end` record, or one line with the figures of the run's chosen checkpoint
        (the one eval and export use)."""
        selection = summary.get("selection") or {}
        if self.mode == "jsonl":
            self._json({"event": "end", "status": summary["status"], "epoch": summary["epochs"],
                        "step": summary["steps"], "checkpoint": selection.get("checkpoint"),
                        "selection": selection, "metrics": summary["metrics"], "params": summary["params"],
                        "wall_seconds": summary["wall_seconds"],
                        "run": str(summary["checkpoint"]).rsplit("/checkpoints", 1)[0]})
        elif self.mode != "quiet":
            values = "  ".join(f"{k} {_fmt(v)}" for k, v in summary["metrics"].items() if v is not None)
            self._print(f"{self.title}: {summary['status']} after {summary['steps']} steps in "
                        f"{summary['wall_seconds']:.1f}s; {chosen(selection)}: {values}")

    def _json(self, record: dict) -> None:
        self._print(json.dumps({"variant": self.variant, **record} if self.variant else record, allow_nan=True))

    def _metrics_text(self) -> str:
        return "  ".join(f"{k} {_fmt(v)}" for k, v in self._latest.items() if k != "lr")

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def chosen(selection: dict) -> str:
    """`best.pt (step 320, lowest val_loss)` or `last.pt (step 400)`: which checkpoint a run's figures are of."""
    if selection.get("rule") == "best":
        extreme = "lowest" if selection.get("mode") == "min" else "highest"
        return f"best.pt (step {selection.get('step')}, {extreme} {selection.get('metric')})"
    return f"{selection.get('checkpoint', 'last.pt')} (step {selection.get('step')})"
