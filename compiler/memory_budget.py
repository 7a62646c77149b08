"""How much memory training a checked model needs, and the budget it must fit: refused at check, not at run.

Training holds, for every parameter, its weight and its gradient (float32) and the
optimizer's state (Adam: two moments; SGD with momentum: one; the optimizer
catalog says how many), and, for every sample of a batch, the outputs of the
layers that backward needs. `training_memory` adds these up from the shapes the
checker inferred; a dimension the checker does not know (a sequence's length T)
counts as 1, so the figure is a lower bound and never refuses a spec that fits.

The budget is `train.memory_budget` ("24 GB", "512 MiB"), else the memory of the
machine that checks: its RAM, or the container's limit when that is lower.
Standard library only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

FLOAT = 4                       # bytes of a float32 weight, gradient or optimizer state

_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")


@dataclass(frozen=True)
class TrainingMemory:
    params: int
    state_copies: int           # float32 copies kept per parameter: weight, gradient, optimizer state
    activations: int            # bytes of the layer outputs kept for backward, for one batch

    @property
    def state(self) -> int:
        return self.params * self.state_copies * FLOAT

    @property
    def total(self) -> int:
        return self.state + self.activations


def parse_size(text: str) -> int | None:
    """Bytes in "24 GB", "512MiB", "1.5 TB"; None when the text is not a size."""
    m = _SIZE.match(text)
    if m is None or m.group(2).lower() not in _UNITS:
        return None
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def describe(n: int) -> str:
    """A byte count for people: 25.8 GB, 310 MB, 12 kB."""
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            value = n / size
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n} bytes"


def machine_memory() -> int | None:
    """This machine's memory for training: physical RAM, or the cgroup's limit when lower (None: unknown)."""
    sizes = []
    try:
        sizes.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    for limit in (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")):
        try:
            text = limit.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:
            sizes.append(int(text))
    return min(sizes) if sizes else None


def training_memory(model, state_copies: int, batch: int, activation_bytes: int = FLOAT) -> TrainingMemory:
    """The memory to train `model` (a ModelIR): its parameters with `state_copies` float32 copies each, and
    the layer outputs of a batch of `batch` samples (`activation_bytes` each: 2 under bf16/amp)."""
    per_sample = 0
    for _, layer in model.all_layers:
        per_sample += _known_numel(layer.output)
    return TrainingMemory(model.param_count, state_copies, per_sample * max(1, batch) * activation_bytes)


def _known_numel(shape) -> int:
    n = 1
    for d in shape.dims:
        n *= d if isinstance(d, int) else 1          # a length only known at run time: counted as 1
    return n
