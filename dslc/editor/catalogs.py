"""The catalogs as an editor shows them: every name a spec can choose, its arguments and its one-line doc.

One `Entry` per layer, loss, optimizer, schedule, metric, data source, initialiser
and expression function, read from the catalogs in dslc.compiler (so a new layer
completes and hovers without an edit here), plus the setting keys of each block and
the named choices some settings take. Plain data: nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from . import spec_facts

# Which catalog a setting's value comes from: (block, key) -> catalog name.
SETTING_CATALOGS = {
    ("train", "loss"): "loss", ("train", "optimizer"): "optimizer", ("train", "schedule"): "schedule",
    ("train", "metrics"): "metric", ("train", "evaluate"): "interval", ("train", "log"): "interval",
    ("train", "checkpoint"): "interval", ("train", "early_stopping"): "early stopping",
    ("data", "source"): "data source", ("data", "validation"): "data source", ("data", "test"): "data source",
}

# Settings whose value is one of a few names (as the checker accepts them).
SETTING_CHOICES = {
    ("train", "device"): ("auto", "cpu", "cuda"),
    ("train", "precision"): ("fp32", "amp", "bf16"),
    ("train", "deterministic"): ("true", "false"),
    ("data", "batch"): ("all",),
    ("data", "shuffle"): ("true", "false"),
    ("export", "format"): ("onnx",),
    ("export", "auto"): ("true", "false"),
}

BLOCKS = ("data", "train", "export", "init", "variants")
KEYWORDS = ("let", "model")


@dataclass(frozen=True)
class ArgInfo:
    """One argument of a catalog entry, as a signature shows it."""

    name: str
    kind: str                 # in words: "a whole number", "true or false", ...
    default: str | None       # as a spec would write it; None when required or variadic
    variadic: bool = False
    choices: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is None and not self.variadic

    def __str__(self) -> str:
        if self.variadic:
            return f"{self.name}..."
        return self.name if self.default is None else f"{self.name}={self.default}"


@dataclass(frozen=True)
class Entry:
    name: str
    catalog: str              # layer, loss, optimizer, schedule, metric, data source, initialiser, function, ...
    doc: str
    args: tuple[ArgInfo, ...] = ()
    columns: bool = False     # takes extra `name=...` columns (table, generate, sequence)

    @property
    def signature(self) -> str:
        parts = [str(a) for a in self.args] + (["name=..."] if self.columns else [])
        return f"{self.name}({', '.join(parts)})" if parts else self.name

    def arg(self, name: str) -> ArgInfo | None:
        return next((a for a in self.args if a.name == name), None)

    def markdown(self) -> str:
        return f"```dlspec\n{self.signature}\n```\n{self.catalog}: {self.doc}"


def spec_value(v: Any) -> str:
    """A Python default written as in a spec."""
    if v is True or v is False:
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(spec_value(x) for x in v) + "]"
    return str(v)


def _args(args) -> tuple[ArgInfo, ...]:
    from dslc.compiler.values import KIND_NAMES
    out = []
    for a in args:
        default = None if a.default is ... or a.variadic else spec_value(a.default)
        out.append(ArgInfo(a.name, KIND_NAMES.get(a.kind, "a value"), default, a.variadic,
                           tuple(str(c) for c in a.choices)))
    return tuple(out)


@cache
def catalogs() -> dict[str, dict[str, Entry]]:
    """catalog name -> entry name -> Entry."""
    from dslc.compiler.data_sources import DATA_SOURCES
    from dslc.compiler.functions import FUNCTIONS
    from dslc.compiler.initializers import INITIALIZERS
    from dslc.compiler.layers import LAYERS
    from dslc.compiler.losses import LOSSES
    from dslc.compiler.metrics import METRICS
    from dslc.compiler.optimizers import OPTIMIZERS
    from dslc.compiler.schedules import SCHEDULES

    def table(kind: str, entries, doc=lambda e: e.doc, columns=lambda e: False):
        return {e.name: Entry(e.name, kind, doc(e), _args(getattr(e, "args", ())), columns(e)) for e in entries}

    return {
        "layer": table("layer", LAYERS.values()),
        "loss": table("loss", LOSSES.values()),
        "optimizer": table("optimizer", OPTIMIZERS.values(), doc=lambda e: f"torch.optim.{e.torch_class}."),
        "schedule": table("schedule", SCHEDULES.values()),
        "metric": table("metric", METRICS.values()),
        "data source": table("data source", DATA_SOURCES.values(), columns=lambda e: bool(e.column_args)),
        "initialiser": table("initialiser", INITIALIZERS.values()),
        "function": {f.name: Entry(f.name, "function", f"{f.kind}: {f.doc}.", (ArgInfo("x", "a value", None),))
                     for f in FUNCTIONS.values()},
        "interval": {"every": Entry("every", "interval", "How often: every(epochs=N) or every(steps=N), one of the two.",
                                    (ArgInfo("epochs", "a whole number", "N"), ArgInfo("steps", "a whole number", "N")))},
        "early stopping": {"early_stopping": Entry(
            "early_stopping", "early stopping", "Stop when the watched metric stops improving for `patience` evaluations.",
            _args(spec_facts.early_stopping_args()))},
    }


@cache
def setting_keys() -> dict[str, tuple[str, ...]]:
    """The settings each block accepts (`init` takes LAYER.weight / LAYER.bias instead)."""
    return spec_facts.setting_keys()


def entries(catalog: str) -> list[Entry]:
    return list(catalogs().get(catalog, {}).values())


def lookup(name: str, prefer: tuple[str, ...] = ()) -> Entry | None:
    """The entry called `name`, from the preferred catalogs first, then any."""
    tables = catalogs()
    for catalog in tuple(prefer) + tuple(tables):
        entry = tables.get(catalog, {}).get(name)
        if entry is not None:
            return entry
    return None
