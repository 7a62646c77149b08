"""Splits of tensors, the rows held out of the training data, and one epoch's batches.

A `Split` holds one tensor per model input and per target, samples first.
`split_rows` holds out fractions of the rows with a seeded permutation;
`batches` slices an epoch's batches from the tensors (shuffled by a generator
when asked), with no DataLoader and no per-sample Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Split:
    inputs: list[torch.Tensor]        # one per model input, [N, *declared dims]
    targets: list[torch.Tensor]       # one per target, [N, ...]

    @property
    def n(self) -> int:
        tensors = self.inputs or self.targets
        return int(tensors[0].shape[0]) if tensors else 0

    def to(self, device) -> Split:
        return Split([t.to(device) for t in self.inputs], [t.to(device) for t in self.targets])

    def take(self, rows) -> Split:
        """The samples `rows` (indices), in that order."""
        index = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        return Split([t[index] for t in self.inputs], [t[index] for t in self.targets])

    @classmethod
    def of(cls, inputs: list, targets: list) -> Split:
        """A split from numpy arrays (or tensors), sharing their memory where it can."""
        def tensor(a):
            return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
        return cls([tensor(a) for a in inputs], [tensor(a) for a in targets])


def split_rows(n: int, fractions: dict[str, float], seed: int, keep_order: bool) -> dict[str, np.ndarray]:
    """The rows of each split: a permutation seeded by `seed`, the first `fraction * n` rows (at least one) held
    out for each role in turn, the rest trains; each in the data's own order when `keep_order`."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    parts, start = {}, 0
    for role, fraction in fractions.items():
        k = max(1, int(fraction * n))
        parts[role] = order[start:start + k]
        start += k
    parts["train"] = order[start:]
    if keep_order:
        parts = {role: np.sort(rows) for role, rows in parts.items()}
    return parts


def num_batches(n: int, batch_size: int | None) -> int:
    """Batches per epoch over n samples (the last one may be smaller)."""
    return 0 if n == 0 else (1 if batch_size is None else math.ceil(n / batch_size))


def batches(split, batch_size: int | None, shuffle: bool, generator: torch.Generator | None = None, start: int = 0):
    """One epoch of (inputs, targets) batches sliced from the split's tensors.

    With `shuffle`, the epoch's permutation is drawn from `generator` now (before the first batch), so
    saving the generator's state before calling and restoring it gives the same epoch again; `start`
    then skips the batches already seen. `batch_size=None` gives the whole split as one batch.
    """
    n = split.n
    size = n if batch_size is None else int(batch_size)
    if size <= 0 and n > 0:
        raise ValueError(f"batch size must be positive, not {batch_size}")
    order = torch.randperm(n, generator=generator) if shuffle else None
    if getattr(split, "streamed", False):        # rows read from prepared shards: the same batches, streamed
        return split.batches(size, order, start)
    return _slices(split, size, order, start)


def _slices(split, size: int, order, start: int):
    n = split.n
    tensors = split.inputs + split.targets
    if order is not None and tensors:
        order = order.to(tensors[0].device)
    k = len(split.inputs)
    for lo in range(start * size, n, size):
        hi = min(n, lo + size)
        if order is None:
            chosen = [t[lo:hi] for t in tensors]
        else:
            idx = order[lo:hi]
            chosen = [t[idx] for t in tensors]
        yield chosen[:k], chosen[k:]
