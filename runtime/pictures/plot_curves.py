"""Training curves: a run's metrics.jsonl read into series, drawn against steps (and epochs).

`read_history(path)` turns the log / eval / end events of one trained
configuration into a `History`: named series of (step, value) points plus
the steps per epoch. `draw_curves(fig, histories)` draws one panel for the
loss, one per metric (accuracy, top5, ...) and one for the learning rate when
it changes; several histories (variants, or runs being compared) share the
panels, one colour each. matplotlib only, no torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from dslc.errors import UserError

SPLITS = ("train", "val", "test")
SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
SPLIT_STYLES = {"train": "-", "val": "--", "test": ":"}


@dataclass
class History:
    label: str | None                                  # variant or run name; None for a lone run
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)   # "train_loss" -> [(step, v)]
    lr: list[tuple[int, float]] = field(default_factory=list)
    steps_per_epoch: float | None = None

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
            if split in SPLITS and name != "loss" and name not in names:
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
    # the train loss: log lines (means since the previous line); evaluation events only when logs are sparse
    for e in logs if len(logs) >= 2 or not evals else evals:
        history.add("train_loss", e["step"], e.get("train_loss"))
    for e in logs:
        if isinstance(e.get("lr"), (int, float)):
            history.lr.append((e["step"], float(e["lr"])))
    for e in evals:
        for key, value in e.items():
            if key.startswith(("val_", "test_")):
                history.add(key, e["step"], value)
    ends = [e for e in events if e.get("event") == "end"]
    if ends:                    # the final metrics, where the periodic events stopped short of the end
        end = ends[-1]
        for key, value in (end.get("metrics") or {}).items():
            points = history.series.get(key)
            if key.split("_", 1)[0] in SPLITS and (not points or points[-1][0] < end["step"]):
                history.add(key, end["step"], value)
    summary = summary if summary is not None else _summary(Path(path))
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
                points = h.series.get(f"{split}_{panel}")
                if not points:
                    continue
                colour = f"C{SPLITS.index(split)}" if lone else f"C{k % 10}"
                name = SPLIT_NAMES[split] if lone else f"{h.label} {SPLIT_NAMES[split]}"
                drew |= _line(ax, points, colour, SPLIT_STYLES[split], name)
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


def _line(ax, points, colour: str, style: str, label: str) -> bool:
    if not points:
        return False
    xs, ys = zip(*points)
    marker = "o" if len(points) <= 30 else None
    ax.plot(xs, ys, color=colour, linestyle=style, marker=marker, markersize=3.5, label=label)
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
