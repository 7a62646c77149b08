"""Prepared data read from disk: memory-mapped shards, batches gathered as in memory, a bounded footprint.

A prepared split (runtime/data/prepared.py writes it) holds each column — each
model input and each target — as .npy shards of `shard_rows` rows. `ShardSplit`
reads like the in-memory `Split` (runtime/data/dataset.py): `n`, `inputs`,
`targets`, and `batches(size, order, start)`, which gathers row `order[i]` of
every column where in memory `tensor[order[lo:hi]]` would, into a fresh tensor
of the same dtype, so training sees the same batches in the same order, bit for
bit. Slicing a column (`column[:k]`, `column[idx]`) gives a tensor too, so what
reads a few rows of a split after training (the export's sample rows, the
plots) works unchanged; `numpy()` and `reshape()` read the whole column.

Memory: a shard is mapped read-only, never copied, and every process (each
`--nproc` rank) shares the one copy in the page cache. The pages a process
touches count towards its resident memory until it lets go of them, so after
reading about `budget` bytes (DEFAULT_BUDGET, 64 MiB, counting a page span
around every row read) the mappings are told their pages are not needed
(MADV_DONTNEED: they stay cached, the process's own footprint drops). A data
set smaller than the budget is never released. What grows with the data is the
epoch's shuffle order: 8 bytes a sample.

Distributed training: `ShardEpoch.sliced()` hands each batch's bounds to
`distributed.Shards`, which gathers only its own rank's slice of it.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dslc.errors import UserError

_TORCH_DTYPES = {"f4": torch.float32, "f8": torch.float64, "i8": torch.int64, "i4": torch.int32, "u1": torch.uint8}
DEFAULT_BUDGET = 64 * 2**20      # bytes read between releases of the mapped pages
PAGE_SPAN = 128 * 2**10          # what one row read may map besides itself (the kernel maps pages around a fault)


class Residency:
    """Counts the bytes read through the mappings of one prepared data set and releases their pages when
    the count passes the budget (shared by every column of every split)."""

    def __init__(self, budget: int = DEFAULT_BUDGET):
        self.budget = budget
        self.shards: list[Shard] = []
        self.read = 0
        self.releases = 0

    @property
    def mapped(self) -> int:
        return sum(s.nbytes for s in self.shards)

    def touched(self, nbytes: int) -> None:
        self.read += nbytes
        if self.read > self.budget:
            self.release()

    def release(self) -> None:
        for s in self.shards:
            s.release()
        self.read = 0
        self.releases += 1


class Shard:
    """One .npy file mapped read-only: `array` is a view of its rows."""

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple, what: str, name: str | None = None):
        self.path, self.dtype, self.shape = path, np.dtype(dtype), tuple(shape)
        name = name or path.name
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self._map = None
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                found_shape, fortran, found_dtype = read_header(f)
                self.offset = f.tell()
                size = os.fstat(f.fileno()).st_size
                if found_dtype != self.dtype or tuple(found_shape) != self.shape or fortran:
                    raise UserError(f"{what}: the shard {name} holds {found_dtype}{list(found_shape)}, not "
                                    f"the {self.dtype}{list(self.shape)} its manifest records")
                if size != self.offset + self.nbytes:
                    raise UserError(f"{what}: the shard {name} is {size} bytes, not {self.offset + self.nbytes}"
                                    f" (truncated or overwritten)")
                if self.nbytes:
                    self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise UserError(f"{what}: the shard {name} is missing") from None
        except (OSError, ValueError) as err:
            raise UserError(f"{what}: the shard {name} cannot be read ({_reason(err)})") from None
        self.array = self._view()

    def _view(self) -> np.ndarray:
        if self._map is None:
            return np.empty(self.shape, self.dtype)
        return np.frombuffer(self._map, self.dtype, int(np.prod(self.shape)), self.offset).reshape(self.shape)

    def release(self) -> None:
        """Let go of the pages this process has touched (they stay in the page cache)."""
        if self._map is None:
            return
        if hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)
            return
        self.array = None                   # no madvise here: map the file afresh (the old view is gone)
        with open(self.path, "rb") as f:
            old, self._map = self._map, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        old.close()
        self.array = self._view()


@dataclass
class ShardColumn:
    """One column of a prepared split (rows lo..lo+n of its shards), read like a tensor [n, *dims]."""

    shards: list[Shard]
    shard_rows: int
    dims: tuple
    dtype_np: np.dtype
    residency: Residency
    lo: int = 0
    n: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.n, *self.dims))

    @property
    def dtype(self) -> torch.dtype:
        return _TORCH_DTYPES[self.dtype_np.str[1:]] if self.dtype_np.str[1:] in _TORCH_DTYPES else \
            torch.from_numpy(np.empty(0, self.dtype_np)).dtype

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.dims, dtype=np.int64)) * self.dtype_np.itemsize

    def __len__(self) -> int:
        return self.n

    def dim(self) -> int:
        return 1 + len(self.dims)

    def take(self, rows) -> torch.Tensor:
        """The rows `rows` (positions in this column, any order) gathered into a fresh tensor."""
        rows = np.asarray(rows.cpu() if isinstance(rows, torch.Tensor) else rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n):
            raise IndexError(f"row {int(rows.max() if rows.max() >= self.n else rows.min())} is outside 0..{self.n - 1}")
        at = rows + self.lo
        out = torch.empty((len(at), *self.dims), dtype=self.dtype)
        o = out.numpy()
        r = self.shard_rows
        first, last = (int(at.min()) // r, int(at.max()) // r) if at.size else (0, 0)
        if first == last:
            if at.size:
                np.take(self.shards[first].array, at - first * r, axis=0, out=o, mode="clip")
        else:
            which = at // r
            for k in np.unique(which):
                chosen = which == k
                o[chosen] = self.shards[k].array[at[chosen] - k * r]
        self.residency.touched(len(at) * (self.row_bytes + PAGE_SPAN))
        return out if self.device.type == "cpu" else out.to(self.device)

    def rows(self, lo: int, hi: int) -> torch.Tensor:
        """Rows lo..hi (in order) as a fresh tensor."""
        lo, hi = max(0, lo), min(self.n, hi)
        out = torch.empty((max(0, hi - lo), *self.dims), dtype=self.dtype)
        o = out.numpy()
        r, at, end, filled = self.shard_rows, self.lo + lo, self.lo + hi, 0
        while at < end:
            k, start = divmod(at, r)
            take = min(end - at, r - start)
            o[filled:filled + take] = self.shards[k].array[start:start + take]
            filled += take
            at += take
        self.residency.touched((hi - lo) * self.row_bytes + 2 * PAGE_SPAN)
        return out if self.device.type == "cpu" else out.to(self.device)

    def part(self, lo: int, hi: int) -> ShardColumn:
        """Rows lo..hi as a column of their own (no reading)."""
        lo, hi = max(0, min(lo, self.n)), max(0, min(hi, self.n))
        return ShardColumn(self.shards, self.shard_rows, self.dims, self.dtype_np, self.residency,
                           self.lo + lo, max(0, hi - lo), self.device)

    def on(self, device) -> ShardColumn:
        return ShardColumn(self.shards, self.shard_rows, self.dims, self.dtype_np, self.residency, self.lo,
                           self.n, torch.device(device))

    def __getitem__(self, key):
        if isinstance(key, slice):
            lo, hi, step = key.indices(self.n)
            return self.rows(lo, hi) if step == 1 else self.take(np.arange(lo, hi, step))
        if isinstance(key, (int, np.integer)):
            k = int(key) + (self.n if key < 0 else 0)
            return self.rows(k, k + 1)[0]
        mask = np.asarray(key.cpu() if isinstance(key, torch.Tensor) else key)
        return self.take(np.flatnonzero(mask) if mask.dtype == bool else mask)

    def read_all(self) -> torch.Tensor:
        return self.rows(0, self.n)

    def numpy(self) -> np.ndarray:
        return self.read_all().cpu().numpy()

    def reshape(self, *shape) -> torch.Tensor:
        return self.read_all().reshape(*shape)

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)


class ShardSplit:
    """A prepared split: `n`, `inputs` and `targets` (ShardColumns), `batches(...)` as dataset.batches gives
    them in memory."""

    streamed = True

    def __init__(self, inputs: list[ShardColumn], targets: list[ShardColumn]):
        self.inputs, self.targets = inputs, targets

    @property
    def n(self) -> int:
        columns = self.inputs or self.targets
        return columns[0].n if columns else 0

    def to(self, device) -> ShardSplit:
        """The same split, its batches moved to `device` as they are read."""
        return ShardSplit([c.on(device) for c in self.inputs], [c.on(device) for c in self.targets])

    def part(self, lo: int, hi: int) -> ShardSplit:
        """Rows lo..hi as a split of their own (a rank's share of an evaluation split): nothing is read."""
        return ShardSplit([c.part(lo, hi) for c in self.inputs], [c.part(lo, hi) for c in self.targets])

    def batches(self, size: int, order: torch.Tensor | None, start: int = 0) -> ShardEpoch:
        return ShardEpoch(self, size, None if order is None else order.cpu().numpy(), start)


class ShardEpoch:
    """One epoch of batches from a ShardSplit: [lo, hi) windows of `order` (or of the rows, unshuffled)."""

    def __init__(self, split: ShardSplit, size: int, order: np.ndarray | None, start: int):
        self.split, self.size, self.order, self.start = split, size, order, start

    def _bounds(self):
        n = self.split.n
        for lo in range(self.start * self.size, n, self.size):
            yield lo, min(n, lo + self.size)

    def take(self, lo: int, hi: int):
        """(inputs, targets) of the epoch's rows lo..hi."""
        columns = self.split.inputs + self.split.targets
        if self.order is None:
            chosen = [c.rows(lo, hi) for c in columns]
        else:
            rows = self.order[lo:hi]
            chosen = [c.take(rows) for c in columns]
        k = len(self.split.inputs)
        return chosen[:k], chosen[k:]

    def __iter__(self):
        for lo, hi in self._bounds():
            yield self.take(lo, hi)

    def sliced(self):
        """(batch size, take) per batch, where take(a, b) reads only samples a..b of that batch (one rank's
        slice): `distributed.Shards` cuts the batch without reading the other ranks' rows."""
        for lo, hi in self._bounds():
            yield hi - lo, (lambda a, b, lo=lo: self.take(lo + a, lo + b))


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
