"""`dslc runs [DIR]` and `dslc compare RUN_A RUN_B`: the runs on disk as a table, and their curves overlaid.

`find_runs(root)` walks DIR for run directories (a folder with summary.json;
a spec with variants is one run, its variants listed under it), newest first.
`runs_table(rows)` prints spec, date, status, steps, the key metrics and the
wall time. `compare_runs(dirs, out)` draws every run's (and variant's) curves
into one PNG. No torch.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from dslc.errors import UserError

from dslc.runtime.training.run_dir import read_summary


@dataclass
class RunRow:
    path: Path
    spec: str
    finished: str                          # YYYY-mm-dd HH:MM:SS
    status: str
    steps: int | None
    wall_seconds: float | None
    metrics: dict
    variant: str | None = None
    variants: list["RunRow"] = field(default_factory=list)
    sort_key: float = 0.0

    def as_json(self) -> dict:
        out = {"path": str(self.path), "spec": self.spec, "finished": self.finished, "status": self.status,
               "steps": self.steps, "wall_seconds": self.wall_seconds, "metrics": self.metrics}
        if self.variant:
            out["variant"] = self.variant
        if self.variants:
            out["variants"] = {v.variant: v.as_json() for v in self.variants}
        return out


def _finished(summary: dict, path: Path) -> tuple[str, float]:
    """(display text, sort key): summary's `finished`, else the summary file's modification time."""
    text = summary.get("finished")
    if isinstance(text, str):
        try:
            stamp = time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
            return text.replace("T", " "), stamp
        except ValueError:
            pass
    stamp = (path / "summary.json").stat().st_mtime
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)), stamp


def _row(path: Path, summary: dict, variant: str | None = None) -> RunRow:
    finished, key = _finished(summary, path)
    steps = summary.get("steps")
    return RunRow(path=path, spec=Path(summary.get("spec") or path.name).stem, finished=finished,
                  status=str(summary.get("status") or "-"), steps=steps if isinstance(steps, int) else None,
                  wall_seconds=summary.get("wall_seconds"), metrics=summary.get("metrics") or {}, variant=variant,
                  sort_key=key)


def read_run_row(path: Path) -> RunRow:
    summary = read_summary(path)
    variants = summary.get("variants") or {}
    if not variants:
        return _row(path, summary, summary.get("variant"))
    rows = [_row(path / "variants" / name, s, name) for name, s in variants.items()]
    top = _row(path, summary)
    top.metrics = {}
    top.steps = sum(r.steps or 0 for r in rows) or None
    statuses = {r.status for r in rows}
    top.status = statuses.pop() if len(statuses) == 1 else "mixed"
    top.finished, top.sort_key = max(((r.finished, r.sort_key) for r in rows), key=lambda t: t[1])
    top.variants = rows
    return top


def find_runs(root: str | Path = "runs") -> list[RunRow]:
    """Every run directory under root (root itself may be one), newest first."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory" + (" (no runs yet: dslc train SPEC writes them there)"
                                                        if str(root) == "runs" else ""))
    rows = []
    for folder, dirs, files in os.walk(root):
        if "summary.json" in files:
            dirs[:] = []                       # a run's own folders (variants, checkpoints) are not runs
            try:
                rows.append(read_run_row(Path(folder)))
            except UserError:
                continue                       # a half-written or foreign summary.json: not a run to list
        else:
            dirs.sort()
    rows.sort(key=lambda r: r.sort_key, reverse=True)
    return rows


# ---------------------------------------------------------------- the table


def _num(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else "-" if v is None else str(v)


def _key_metrics(metrics: dict) -> tuple[str, str, str]:
    """(train loss, held-out loss with its split, other metrics of the held-out split)."""
    train = _num(metrics.get("train_loss"))
    for split in ("test", "val"):
        if f"{split}_loss" in metrics:
            others = [f"{k[len(split) + 1:]} {_num(v)}" for k, v in metrics.items()
                      if k.startswith(split + "_") and k != f"{split}_loss"]
            return train, f"{_num(metrics[f'{split}_loss'])} ({split})", ", ".join(others) or "-"
    return train, "-", "-"


def _wall(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes}m{s:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def runs_table(rows: list[RunRow], root: Path | None = None) -> str:
    headers = ("run", "spec", "finished", "status", "steps", "train loss", "held-out loss", "metrics", "wall")
    lines = []
    for r in rows:
        name = str(r.path.relative_to(root)) if root is not None and r.path.is_relative_to(root) else str(r.path)
        name = "." if name == "" else name
        lines.append((name, r.spec, r.finished, r.status, _num(r.steps), *_key_metrics(r.metrics), _wall(r.wall_seconds)))
        for v in r.variants:
            lines.append((f"  - {v.variant}", "", "", v.status, _num(v.steps), *_key_metrics(v.metrics),
                          _wall(v.wall_seconds)))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    numeric = {4, 8}
    fmt = lambda row: "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                                for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    return "\n".join([fmt(headers), fmt(tuple("-" * w for w in widths))] + [fmt(line) for line in lines])


# ---------------------------------------------------------------- dslc compare


def _labels(dirs: list[Path]) -> list[str]:
    """Short unique names: the folder name, with parents added until they differ."""
    depth = 1
    while depth < 6:
        names = ["/".join(d.resolve().parts[-depth:]) for d in dirs]
        if len(set(names)) == len(names):
            return names
        depth += 1
    return [str(d) for d in dirs]


def compare_runs(run_dirs: list[str | Path], out: str | Path) -> Path:
    """Every run's curves (each variant its own line) overlaid in one PNG at `out`."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from dslc.runtime.pictures.plot_catalog import DPI, PLOTS
    from dslc.runtime.pictures.plot_curves import draw_curves, read_history

    out = Path(out)
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise UserError(f"cannot write {out}: the file name must end in .png, .svg or .pdf")
    if not out.parent.is_dir():
        raise UserError(f"cannot write {out}: the folder {out.parent} does not exist")
    dirs = [Path(d) for d in run_dirs]
    histories = []
    for d, label in zip(dirs, _labels(dirs)):
        summary = read_summary(d)
        variants = summary.get("variants") or {}
        if variants:
            histories += [read_history(d / "variants" / name, f"{label}:{name}", s) for name, s in variants.items()]
        else:
            histories.append(read_history(d, label, summary))
    fig = Figure(figsize=PLOTS["curves"].size, dpi=DPI, layout="constrained")
    draw_curves(fig, histories, "compare: " + " vs ".join(_labels(dirs)))
    fig.savefig(out, dpi=DPI, format=out.suffix[1:].lower(), facecolor="white")
    return out


def rows_json(rows: list[RunRow]) -> str:
    return json.dumps([r.as_json() for r in rows], indent=2)
