"""`dslc runs [DIR]` and `dslc compare RUN_A RUN_B`: the runs on disk as a table, and their curves overlaid.

`find_runs(root)` walks DIR for run directories (a folder with summary.json
or run.json; a spec with variants is one run, its variants listed under it),
newest first. Every run is listed, whatever became of it: completed, stopped
early, interrupted (Ctrl-C), diverged, failed (an error, named), running (its
process is alive) or unfinished (it ended without a summary: killed,
out of memory; `dslc train --resume RUN` continues it). `runs_table(rows)`
prints spec, date, status, steps, the key metrics, the wall time and the
overrides. `compare_runs(dirs, out)` draws every run's (and variant's)
curves into one PNG, each labelled with the settings that differ between
the runs (`lr=0.0005` against `lr=0.001`). No torch.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from dslc.errors import UserError

from dslc.runtime.training.manifest import is_alive, read_manifest
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
    overrides: list[str] = field(default_factory=list)
    error: str | None = None

    def as_json(self) -> dict:
        out = {"path": str(self.path), "spec": self.spec, "finished": self.finished, "status": self.status,
               "steps": self.steps, "wall_seconds": self.wall_seconds, "metrics": self.metrics,
               "overrides": self.overrides}
        if self.error:
            out["error"] = self.error
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
                  sort_key=key, overrides=list(summary.get("overrides") or []), error=summary.get("error"))


def _last_step(path: Path) -> int | None:
    """The step of the last event in metrics.jsonl (a torn last line is skipped)."""
    try:
        lines = (path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            continue
        if isinstance(step, int):
            return step
    return None


def _unfinished_row(path: Path, record: dict) -> RunRow:
    """A run with run.json but no summary.json: still running, or ended without a word."""
    folders = [path / "variants" / v for v in record.get("configurations") or [] if v] or [path]
    steps = [s for s in (_last_step(f) for f in folders) if s is not None]
    stamp = max([(f / "metrics.jsonl").stat().st_mtime for f in folders if (f / "metrics.jsonl").is_file()]
                + [(path / "run.json").stat().st_mtime])
    return RunRow(path=path, spec=Path(record.get("spec") or path.name).stem,
                  finished=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)),
                  status="running" if is_alive(record) else "unfinished", steps=sum(steps) if steps else None,
                  wall_seconds=None, metrics={}, variant=record.get("variant"), sort_key=stamp,
                  overrides=list(record.get("overrides") or []))


def read_run_row(path: Path) -> RunRow:
    if not (path / "summary.json").is_file():
        record = read_manifest(path)
        if record is None:
            raise UserError(f"{path} is not a dslc run directory (no summary.json or run.json)")
        return _unfinished_row(path, record)
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
        if "summary.json" in files or "run.json" in files:
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


def _overrides(overrides: list[str]) -> str:
    return " ".join(overrides) if overrides else "-"


def _status(row: RunRow) -> str:
    return f"{row.status}: {row.error}" if row.error and row.status == "failed" else row.status


def runs_table(rows: list[RunRow], root: Path | None = None) -> str:
    headers = ("run", "spec", "finished", "status", "steps", "train_loss", "held-out loss", "metrics", "wall",
               "overrides")
    lines = []
    for r in rows:
        name = str(r.path.relative_to(root)) if root is not None and r.path.is_relative_to(root) else str(r.path)
        name = "." if name == "" else name
        spec = f"{r.spec} [{r.variant}]" if r.variant and not r.variants else r.spec
        lines.append((name, spec, r.finished, _status(r), _num(r.steps), *_key_metrics(r.metrics),
                      _wall(r.wall_seconds), _overrides(r.overrides)))
        for v in r.variants:
            lines.append((f"  - {v.variant}", "", "", _status(v), _num(v.steps), *_key_metrics(v.metrics),
                          _wall(v.wall_seconds), ""))
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    numeric = {4, 8}
    fmt = lambda row: "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                                for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    text = "\n".join([fmt(headers), fmt(tuple("-" * w for w in widths))] + [fmt(line) for line in lines])
    if any(r.status in ("unfinished", "interrupted") for r in rows):
        text += "\n(continue an unfinished or interrupted run with: dslc train --resume RUN)"
    return text


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


MAX_LABEL_SETTINGS = 3


def settings(path: Path, summary: dict) -> dict[str, str]:
    """What one trained configuration was, flattened to `name -> value text` for comparing runs: the spec,
    the variant, each `let` value, and the train and data settings (optimizer and schedule arguments each
    on its own: `optimizer.lr`). Empty when the spec cannot be checked again."""
    from dslc.compiler.values import Facts
    from dslc.runtime.training.run_dir import recheck, value_text
    try:
        checked = recheck(path, summary)
    except Exception:                      # a run whose spec no longer checks: compare by folder names
        return {}
    out = {"spec": Path(summary.get("spec") or checked.source.path).stem}
    if checked.variant:
        out["variant"] = checked.variant
    for name, value in checked.lets.items():
        if not isinstance(value, Facts):
            out[name] = _short_text(value, value_text)
    tr = checked.train
    if tr is not None:
        for kind, call in (("optimizer", tr.optimizer), ("schedule", tr.schedule)):
            if call is not None:
                out[kind] = call.name
                out.update({f"{kind}.{k}": _short_text(v, value_text) for k, v in call.args.items()
                            if not k.startswith("__") and v is not None})
        for key in ("epochs", "steps", "seed", "warmup_steps", "clip_grad_norm", "precision"):
            value = getattr(tr, key)
            if value is not None:
                out[f"train.{key}"] = _short_text(value, value_text)
    if checked.data is not None:
        out["data.batch"] = str(checked.data.batch or "all")
        for key in ("validation", "test"):
            value = getattr(checked.data, key)
            if isinstance(value, float):
                out[f"data.{key}"] = _short_text(value, value_text)
    return out


def _short_text(value, text) -> str:
    try:
        return text(value)
    except TypeError:
        return str(value)


def differing_labels(configs: list[dict[str, str]]) -> list[str] | None:
    """Per configuration, `key=value` of the settings that differ between them (at most three; a setting
    that differs exactly as an earlier one does is left out: `lr` says what `optimizer.lr` would).
    None when nothing differs, or a configuration's settings are unknown."""
    if len(configs) < 2 or not all(configs):
        return None
    keys = list(dict.fromkeys(k for c in configs for k in c))
    seen: set[tuple] = set()
    differ = []
    for key in keys:
        values = tuple(c.get(key, "-") for c in configs)
        pattern = tuple(values.index(v) for v in values)         # which configurations agree, not the values
        if len(set(values)) > 1 and pattern not in seen:
            seen.add(pattern)
            differ.append(key)
    if not differ:
        return None
    shown = differ[:MAX_LABEL_SETTINGS]
    return [", ".join(f"{k}={c.get(k, '-')}" for k in shown) + (", ..." if len(differ) > len(shown) else "")
            for c in configs]


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
    configs = []                                   # (folder, folder label, summary) per trained configuration
    for d, label in zip(dirs, _labels(dirs)):
        summary = read_summary(d)
        variants = summary.get("variants") or {}
        if variants:
            configs += [(d / "variants" / name, f"{label}:{name}", s) for name, s in variants.items()]
        else:
            configs.append((d, label, summary))
    labels = differing_labels([settings(path, summary) for path, _, summary in configs])
    histories = [read_history(path, labels[i] if labels else label, summary)
                 for i, (path, label, summary) in enumerate(configs)]
    fig = Figure(figsize=PLOTS["curves"].size, dpi=DPI, layout="constrained")
    title = " vs ".join(_labels(dirs))
    if labels:
        title += " (labelled by the settings that differ)"
    draw_curves(fig, histories, "compare: " + title)
    fig.savefig(out, dpi=DPI, format=out.suffix[1:].lower(), facecolor="white")
    return out


def rows_json(rows: list[RunRow]) -> str:
    return json.dumps([r.as_json() for r in rows], indent=2)
