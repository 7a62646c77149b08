"""`dslc plot RUN_DIR`: the pictures of a trained run, as PNGs in RUN_DIR/plots/.

`make_plots(run_dir)` reads the run's summary, re-checks its spec, asks the
plot catalog which kinds apply (`plot_catalog.plots_for`) and draws each one
into a fixed-size matplotlib Figure (no pyplot, so no global state and no
display; the Agg canvas writes the PNG). A spec with variants gets one figure
per kind where the variants overlay (curves, fits, losses) and one per variant
otherwise (`confusion-dropout.png`). The trained weights and the data are
loaded once, and only when a picture needs them (`dslc train` hands over the
ones it has in memory: `preloaded`); a picture that cannot be drawn (data
gone, say) is skipped with its reason, and the others are made.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from dslc.errors import UserError

from dslc.runtime.pictures.plot_catalog import DPI, PLOTS, SpecFacts, plots_for, spec_facts
from dslc.runtime.training.run_dir import read_summary, recheck

PLOTS_DIR = "plots"
PNG_COMPRESSION = 1        # zlib level: 1 writes these flat-coloured figures ~5x faster than 6, ~1.3x larger
PLOT_INPUTS = "plot_inputs.npz"     # beside a configuration's checkpoints: what its drawings computed
PLOT_INPUTS_FORMAT = 1


@dataclass
class Picture:
    kind: str
    title: str
    variant: str | None
    path: Path


@dataclass
class PlotResult:
    pictures: list[Picture] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)      # (file name, why)

    def to_json(self) -> str:
        return json.dumps({"pictures": [[p.kind, p.title, p.variant, str(p.path)] for p in self.pictures],
                           "skipped": [list(s) for s in self.skipped]})

    @classmethod
    def from_json(cls, text: str) -> "PlotResult":
        data = json.loads(text)
        return cls([Picture(k, t, v, Path(p)) for k, t, v, p in data["pictures"]],
                   [tuple(s) for s in data["skipped"]])

    def merged(self, other: "PlotResult") -> "PlotResult":
        """Both results, pictures in catalog order."""
        order = list(PLOTS)
        pictures = sorted(self.pictures + other.pictures, key=lambda p: (order.index(p.kind), p.path.name))
        return PlotResult(pictures, self.skipped + other.skipped)


class RunContext:
    """What the configurations of one run share: where the data lives, and data already loaded."""

    def __init__(self, root: Path, summary: dict, data_root=None, log=None, preloaded: dict | None = None):
        self.root = root
        self.summary = summary
        self.data_root = data_root
        self.log = log or (lambda text: None)
        self._data: dict = {}
        self.preloaded = preloaded or {}      # configuration name -> (trained module, loaded data)

    def load_data(self, checked, summary: dict):
        """The configuration's data, loaded once per data fingerprint (variants usually share it)."""
        info = summary.get("data") or {}
        key = info.get("fingerprint") or id(checked)
        if key not in self._data:
            from dslc.runtime.data.prepared import load_recorded
            root = self.data_root
            recorded = info.get("root")
            if root is None and recorded and Path(recorded).exists():
                root = recorded                 # where training found it (a folder, or a file for CSV sources)
            data = load_recorded(checked, info, root)        # prepared shards it streamed from, else memory
            if info.get("fingerprint") and data.info.get("fingerprint") != info["fingerprint"]:
                self.log(f"note: the data read now ({data.info.get('root') or data.info.get('source')}) differ from "
                         "the data this run trained on; the pictures show the data read now")
            self._data[key] = data
        return self._data[key]


class Config:
    """One trained configuration of a run (the run itself, or one variant) as the pictures see it."""

    def __init__(self, context: RunContext, name: str | None, path: Path, summary: dict):
        self.context, self.name, self.path, self.summary = context, name, path, summary
        self.checked = recheck(path, summary)
        self.facts: SpecFacts = spec_facts(self.checked, list(context.summary.get("variants") or {}))
        self._module = None
        self.cache: dict = {}             # results that several drawings of this configuration share
        self._arrays: dict = {}           # key -> {name: array}, see `arrays`
        self._kept: dict | None = None    # what PLOT_INPUTS holds for this checkpoint and data
        self._new = False

    # names and settings the drawings label things with
    @property
    def spec_name(self) -> str:
        return Path(self.context.summary.get("spec") or self.context.root.name).stem

    @property
    def title(self) -> str:
        return f"{self.spec_name} [{self.name}]" if self.name else self.spec_name

    @property
    def checkpoint_name(self) -> str:
        """The checkpoint the pictures show: the run's chosen one (best.pt, else last.pt)."""
        return (self.summary.get("selection") or {}).get("checkpoint") or (
            "best.pt" if (self.path / "checkpoints" / "best.pt").is_file() else "last.pt")

    @property
    def preprocessing(self) -> dict:
        return (self.summary.get("data") or {}).get("preprocessing") or {}

    @property
    def input_name(self) -> str:
        return next(iter(self.checked.model.inputs))

    @property
    def input_dims(self) -> tuple:
        return tuple(next(iter(self.checked.model.inputs.values())).dims)

    @property
    def target_name(self) -> str:
        names = self.checked.data.target_names
        return names[0] if names else "target"

    @property
    def source_args(self) -> dict:
        return self.checked.data.source.args

    @property
    def carries_state(self) -> bool:
        layers = list(self.checked.model.layers) + [l for b in self.checked.model.blocks.values() for l in b.layers]
        return any(l.args.get("carry_state") for l in layers)

    # the trained model and its data, loaded on first use
    def module(self):
        if self._module is None and self.name in self.context.preloaded:
            self._module = self.context.preloaded[self.name][0]
        if self._module is None:
            from dslc.runtime.training.run_dir import load_run
            self._module = load_run(self.context.root, self.name if self.context.summary.get("variants") else None
                                    ).module
        return self._module

    # what the drawings compute from the model and the data, kept for the next time
    def arrays(self, key: str, compute) -> dict:
        """Named numpy arrays that drawings need from the trained model and the data (`compute()` makes
        them): computed once, and kept in <configuration>/plot_inputs.npz, so drawing the run again
        imports neither torch nor the data while the checkpoint and the data are the ones they came from."""
        if key not in self._arrays:
            kept = self._read_kept()
            if key in kept:
                self._arrays[key] = kept[key]
            else:
                import numpy as np
                self._arrays[key] = {k: np.asarray(v) for k, v in compute().items()}
                self._new = True
        return self._arrays[key]

    def _stamp(self) -> str:
        """What the kept arrays depend on: the chosen checkpoint (name, size, time), the data, the data root."""
        ckpt = self.path / "checkpoints" / self.checkpoint_name
        try:
            info = ckpt.stat()
            where = [ckpt.name, info.st_size, info.st_mtime_ns]
        except OSError:
            where = None
        return json.dumps({"format": PLOT_INPUTS_FORMAT, "checkpoint": where,
                           "data": (self.summary.get("data") or {}).get("fingerprint"),
                           "data_root": str(self.context.data_root) if self.context.data_root else None})

    def _read_kept(self) -> dict:
        if self._kept is None:
            self._kept = {}
            path = self.path / PLOT_INPUTS
            if path.is_file():
                import numpy as np
                try:
                    with np.load(path, allow_pickle=False) as archive:
                        if str(archive["__stamp__"]) == self._stamp():
                            for name in archive.files:
                                key, _, field_ = name.partition("/")
                                if field_:
                                    self._kept.setdefault(key, {})[field_] = archive[name]
                except (OSError, ValueError, KeyError, EOFError):
                    self._kept = {}
        return self._kept

    def keep_arrays(self) -> None:
        """Write what was computed (with what was kept) to plot_inputs.npz, atomically; a folder that cannot
        be written is left alone (the arrays are a convenience)."""
        if not self._new:
            return
        import numpy as np
        merged = {**self._read_kept(), **self._arrays}
        flat = {f"{key}/{name}": value for key, arrays in merged.items() for name, value in arrays.items()}
        path = self.path / PLOT_INPUTS
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, __stamp__=np.asarray(self._stamp()), **flat)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
        self._new = False

    def data(self):
        if self.name in self.context.preloaded:
            return self.context.preloaded[self.name][1]
        return self.context.load_data(self.checked, self.summary)

    @staticmethod
    def held_out(data):
        """("test", split), else ("validation", split), else (None, None)."""
        if data.test is not None and data.test.n:
            return "test", data.test
        if data.validation is not None and data.validation.n:
            return "validation", data.validation
        return None, None

    @staticmethod
    def held_out_or_train(data):
        """The held-out split as held_out gives it, else ("train", the training split)."""
        name, split = Config.held_out(data)
        return (name, split) if split is not None else ("train", data.train)


def configurations(run_dir: Path, context: RunContext) -> list[Config]:
    summary = context.summary
    variants = summary.get("variants") or {}
    if variants:
        configs = []
        for name in variants:
            path = run_dir / "variants" / name
            if (path / "summary.json").is_file():
                configs.append(Config(context, name, path, read_summary(path)))
        if not configs:
            raise UserError(f"{run_dir} lists variants {', '.join(variants)} but holds none of their folders")
        return configs
    return [Config(context, summary.get("variant"), run_dir, summary)]


def make_plots(run_dir: str | Path, data_root=None, only: list[str] | None = None, out: str | Path | None = None,
               log=None, preloaded: dict | None = None, part=None, index: bool = True) -> PlotResult:
    """Draw every picture that applies to the run into RUN_DIR/plots/ (or `out`); returns what was made.

    `preloaded` maps a configuration's name (its variant, None for a run without variants) to its trained
    module (the run's chosen checkpoint) and loaded data, so nothing is read again. `part(kind)` draws only
    the kinds it accepts, and `index=False` leaves plots/index.json to the caller (`write_index`): how
    `dslc train` shares the drawing between two processes."""
    import matplotlib
    matplotlib.use("Agg", force=False)           # never open a window, even if pyplot is imported later
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    context = RunContext(run_dir, summary, data_root, log, preloaded)
    configs = configurations(run_dir, context)
    kinds = plots_for(configs[0].checked, summary)
    if only:
        unknown = [k for k in only if k not in PLOTS]
        if unknown:
            raise UserError(f"unknown plot kind {', '.join(unknown)}; the kinds are: {', '.join(PLOTS)}")
        skipped = [k for k in only if k not in kinds]
        if skipped and log:
            log(f"not for this run: {', '.join(skipped)} (it gets: {', '.join(kinds)})")
        kinds = [k for k in kinds if k in only]
    if part is not None:
        kinds = [k for k in kinds if part(PLOTS[k])]
    folder = Path(out) if out is not None else run_dir / PLOTS_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create {folder}: {err.strerror}") from None
    result = PlotResult()
    for name in kinds:
        kind = PLOTS[name]
        groups = [configs] if kind.scope == "run" else [[c] for c in configs]
        for group in groups:
            variant = group[0].name if kind.scope == "config" and len(configs) > 1 else None
            path = folder / kind.file_name(variant)
            try:
                draw_one(kind, group, path)
            except UserError as err:
                result.skipped.append((path.name, str(err)))
                if log:
                    log(f"skipped {path.name}: {err}")
                continue
            result.pictures.append(Picture(name, kind.title + (f" [{variant}]" if variant else ""), variant, path))
    for config in configs:
        config.keep_arrays()
    if index:
        write_index(folder, result, keep_others=bool(only))
    return result


def draw_one(kind, configs: list[Config], path: Path) -> None:
    """One figure of the kind's fixed size, drawn and written as PNG."""
    from matplotlib.figure import Figure

    from dslc.runtime.pictures import plot_draw
    fig = Figure(figsize=kind.size, dpi=DPI, layout="constrained")
    getattr(plot_draw, kind.draw)(fig, configs)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=DPI, format="png", facecolor="white", pil_kwargs={"compress_level": PNG_COMPRESSION})
    tmp.replace(path)


def write_index(folder: Path, result: PlotResult, keep_others: bool = False) -> None:
    """plots/index.json: which file shows what (the report reads it for captions and order).

    With `keep_others` (a `--only` run), entries of pictures drawn earlier that still exist are kept.
    """
    pictures = [{"kind": p.kind, "title": p.title, "variant": p.variant, "file": p.path.name}
                for p in result.pictures]
    skipped = [{"file": f, "why": why} for f, why in result.skipped]
    path = folder / "index.json"
    if keep_others and path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            old = {}
        now = {p["file"] for p in pictures} | {s["file"] for s in skipped}
        pictures += [p for p in old.get("pictures", []) if p.get("file") not in now and (folder / p["file"]).is_file()]
        skipped += [s for s in old.get("skipped", []) if s.get("file") not in now]
        order = list(PLOTS)
        pictures.sort(key=lambda p: (order.index(p["kind"]) if p.get("kind") in order else len(order), p["file"]))
    path.write_text(json.dumps({"pictures": pictures, "skipped": skipped}, indent=2) + "\n", encoding="utf-8")
