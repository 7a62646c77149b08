"""Training curves: a run's metrics.jsonl read into series, drawn against steps (and epochs).

`read_history(path)` turns the log / eval / end events of one trained
configuration into a `History`: named series of (step, value) points, keyed
and labelled by the names metrics.jsonl uses (`train_loss_recent`: the mean
since the previous log line; `train_loss`: the epoch's mean; `val_loss`,
`test_accuracy`, ...), the steps per epoch and the step of the run's chosen
checkpoint. `draw_curves(fig, histories)` draws one panel for the loss, one
per metric (accuracy, top5, ...) and one for the learning rate when it
changes, and marks the chosen checkpoint (best.pt); several histories
(variants, or runs being compared) share the panels, one colour each.
matplotlib only, no torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from dslc.errors import UserError

SPLITS = ("train", "val", "test")
SPLIT_STYLES = {"train": "-", "val": "--", "test": ":"}


@dataclass
class History:
    label: str | None                                  # variant or run name; None for a lone run
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)   # "train_loss" -> [(step, v)]
    lr: list[tuple[int, float]] = field(default_factory=list)
    steps_per_epoch: float | None = None
    chosen_step: int | None = None                     # the step of best.pt (None: the run's checkpoint is last.pt)

    def add(self, key: str, step: int, value) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            points = self.series.setdefault(key, [])
            if points and points[-1][0] == step:
                points[-1] = (step, float(value))
            else:
                points.append((step, float(value)))

    @property
    def metrics(self) -> list[str]:
        """Metric names other than the loss, in first-seen order: accuracy, top5, ..."""
        names: list[str] = []
        for key in self.series:
            split, _, name = key.partition("_")
            if split in SPLITS and name not in ("loss", "loss_recent") and name not in names:
                names.append(name)
        return names


def read_events(path: Path) -> list[dict]:
    """The JSON objects of a metrics.jsonl; a torn last line (a killed run) is ignored."""
    if not path.is_file():
        raise UserError(f"{path.parent} has no metrics.jsonl")
    events = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            if i == len(lines) - 1:
                break
            raise UserError(f"{path}:{i + 1} is not a JSON line") from None
    return events


def read_history(path: Path, label: str | None = None, summary: dict | None = None) -> History:
    """The curves of one trained configuration (a run directory, or one of its variants)."""
    events = read_events(Path(path) / "metrics.jsonl")
    history = History(label)
    logs = [e for e in events if e.get("event") == "log"]
    evals = [e for e in events if e.get("event") == "eval"]
    renamed = any("train_loss_recent" in e for e in logs)         # runs before dslc named the log window
    for e in logs:
        history.add("train_loss_recent", e["step"], e.get("train_loss_recent" if renamed else "train_loss"))
        if renamed:
            history.add("train_loss", e["step"], e.get("train_loss"))
        if isinstance(e.get("lr"), (int, float)):
            history.lr.append((e["step"], float(e["lr"])))
    for e in evals:
        for key, value in e.items():
            if key.startswith(("val_", "test_")) or (renamed and key == "train_loss"):
                history.add(key, e["step"], value)
    ends = [e for e in events if e.get("event") == "end"]
    if ends:                    # the figures at the end, where the periodic events stopped short of it
        end = ends[-1]
        for key, value in (end.get("metrics") or {}).items():
            points = history.series.get(key)
            if key.split("_", 1)[0] in SPLITS and (not points or points[-1][0] < end["step"]):
                history.add(key, end["step"], value)
    for key, points in history.series.items():       # one point per step, in step order
        history.series[key] = sorted(dict(points).items())
    summary = summary if summary is not None else _summary(Path(path))
    selection = (summary or {}).get("selection") or {}
    if selection.get("rule") == "best" and isinstance(selection.get("step"), int):
        history.chosen_step = selection["step"]
    steps, epochs = (summary or {}).get("steps"), (summary or {}).get("epochs")
    if isinstance(steps, (int, float)) and isinstance(epochs, (int, float)) and steps > 0 and epochs > 0:
        history.steps_per_epoch = steps / epochs
    return history


def _summary(path: Path) -> dict | None:
    try:
        return json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- drawing


def panels_for(histories: list[History]) -> list[str]:
    """The panels the curves need: loss, each metric, and lr when the learning rate changes."""
    panels = ["loss"]
    for h in histories:
        panels += [m for m in h.metrics if m not in panels]
    if any(len({v for _, v in h.lr}) > 1 for h in histories):
        panels.append("lr")
    return panels


def draw_curves(fig, histories: list[History], title: str | None = None) -> None:
    """Loss, metrics and learning rate against steps; one colour per history (or per split for a lone one)."""
    panels = panels_for(histories)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    lone = len(histories) == 1
    for ax, panel in zip(axes, panels):
        drew = False
        for k, h in enumerate(histories):
            if panel == "lr":
                drew |= _line(ax, h.lr, f"C{k}", "-", h.label or "learning rate")
                continue
            for split in SPLITS:
                for key in ((f"{split}_loss_recent", f"{split}_loss") if panel == "loss" else (f"{split}_{panel}",)):
                    points = h.series.get(key)
                    if not points:
                        continue
                    colour = f"C{SPLITS.index(split)}" if lone else f"C{k % 10}"
                    name = key if lone else f"{h.label} {key}"
                    recent = key.endswith("_recent")
                    drew |= _line(ax, points, colour, SPLIT_STYLES[split], name, thin=recent,
                                  marker=not recent and h.series.get(f"{split}_loss_recent") is not None)
            if h.chosen_step is not None and panel != "lr":
                ax.axvline(h.chosen_step, color=f"C{k % 10}" if not lone else "0.4", linestyle=":", linewidth=1,
                           label="best.pt" if lone or k == 0 else None)
        ax.set_title("learning rate" if panel == "lr" else panel)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if not drew:
            ax.text(0.5, 0.5, "nothing logged", ha="center", va="center", transform=ax.transAxes, color="0.5")
            continue
        if panel in ("loss", "lr") and _spans_decades(ax):
            ax.set_yscale("log")
        if panel != "lr" or len(histories) > 1:
            ax.legend(fontsize="small")
        _epoch_axis(ax, histories)
    if title:
        fig.suptitle(title)


def _line(ax, points, colour: str, style: str, label: str, thin: bool = False, marker: bool = False) -> bool:
    """One series; `thin`: a faint line (the noisy recent-window loss), `marker`: dots on every point."""
    if not points:
        return False
    xs, ys = zip(*points)
    dots = "o" if marker or len(points) <= 30 else None
    ax.plot(xs, ys, color=colour, linestyle=style, marker=None if thin else dots, markersize=3.5, label=label,
            linewidth=0.9 if thin else 1.6, alpha=0.45 if thin else 1.0)
    return True


def _spans_decades(ax) -> bool:
    values = [y for line in ax.get_lines() for y in line.get_ydata()]
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) and len(values) > 1 and max(positive) / min(positive) > 100


def _epoch_axis(ax, histories: list[History]) -> None:
    """A second x axis in epochs on top, when every history has the same steps per epoch."""
    spe = {h.steps_per_epoch for h in histories}
    if len(spe) != 1 or None in spe:
        return
    k = spe.pop()
    if k <= 1:          # one step per epoch: the axes would say the same thing twice
        return
    top = ax.secondary_xaxis("top", functions=(lambda s: s / k, lambda e: e * k))
    top.set_xlabel("epoch", fontsize="small")
    top.tick_params(labelsize="small")
