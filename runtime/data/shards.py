"""Prepared data read from disk: .npy shards, batches gathered as in memory, a bounded footprint.

A prepared split (runtime/data/prepared.py writes it) holds each column — each
model input and each target — as .npy shards of `shard_rows` rows. `ShardSplit`
reads like the in-memory `Split` (runtime/data/dataset.py): `n`, `inputs`,
`targets`, and `batches(size, order, start)`, which gathers row `order[i]` of
every column where in memory `tensor[order[lo:hi]]` would, into a fresh tensor
of the same dtype, so training sees the same batches in the same order, bit for
bit. Slicing a column (`column[:k]`, `column[idx]`) gives a tensor too, so what
reads a few rows of a split after training (the export's sample rows, the
plots) works unchanged; `numpy()` and `reshape()` read the whole column.

Memory: rows are read by position (pread) straight into the batch's own
tensor; a run of consecutive rows is one read. Nothing of a shard is mapped
into the process, so its footprint is the batches in flight whatever the
size of the data and however the kernel pages: the file pages stay in the
page cache, which every process (each `--nproc` rank) shares and the kernel
gives back under pressure. The shards stay plain .npy files that
`np.load(path, mmap_mode="r")` maps. At most MAX_OPEN shard files are open at
once (the least recently read is closed first). What training frees between
steps goes back to the system as the batches stream (heap.py), so the
process does not keep an epoch's worth of freed heap either. What grows with
the data is the epoch's shuffle order: 8 bytes a sample.

Distributed training: `ShardEpoch.sliced()` hands each batch's bounds to
`distributed.Shards`, which gathers only its own rank's slice of it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dslc.errors import UserError
from dslc.runtime.data.heap import Trimmer

_TORCH_DTYPES = {"f4": torch.float32, "f8": torch.float64, "i8": torch.int64, "i4": torch.int32, "u1": torch.uint8}
MAX_OPEN = 64                     # shard files kept open (least recently used closed first)
_open: OrderedDict = OrderedDict()  # Shard -> file descriptor, least recently read first
trimmer = Trimmer()                # the heap given back as batches stream (heap.py)
_lock = threading.RLock()          # one reader at a time: a descriptor is never closed while read


class Shard:
    """One .npy file of `shape` rows of `dtype`; its header checked, its rows read by position."""

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple, what: str, name: str | None = None):
        self.path, self.dtype, self.shape, self.what = path, np.dtype(dtype), tuple(shape), what
        self.name = name = name or path.name
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        self.row_bytes = self.nbytes // self.shape[0] if self.shape and self.shape[0] else 0
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                found_shape, fortran, found_dtype = read_header(f)
                self.offset = f.tell()
                size = os.fstat(f.fileno()).st_size
        except FileNotFoundError:
            raise UserError(f"{what}: the shard {name} is missing") from None
        except (OSError, ValueError) as err:
            raise UserError(f"{what}: the shard {name} cannot be read ({_reason(err)})") from None
        if found_dtype != self.dtype or tuple(found_shape) != self.shape or fortran:
            raise UserError(f"{what}: the shard {name} holds {found_dtype}{list(found_shape)}, not the "
                            f"{self.dtype}{list(self.shape)} its manifest records")
        if size != self.offset + self.nbytes:
            raise UserError(f"{what}: the shard {name} is {size} bytes, not {self.offset + self.nbytes} "
                            f"(truncated or overwritten)")

    def _fd(self) -> int:
        fd = _open.pop(self, None)
        if fd is None:
            try:
                fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except FileNotFoundError:
                raise UserError(f"{self.what}: the shard {self.name} is missing") from None
            except OSError as err:
                raise UserError(f"{self.what}: the shard {self.name} cannot be read ({_reason(err)})") from None
            while len(_open) >= MAX_OPEN:
                os.close(_open.popitem(last=False)[1])
        _open[self] = fd
        return fd

    def read(self, first: int, into: memoryview) -> None:
        """Rows first, first + 1, ... into the bytes `into` (as many rows as it holds)."""
        if not len(into):
            return
        at = self.offset + first * self.row_bytes
        with _lock:
            fd, done = self._fd(), 0
            try:
                while done < len(into):
                    got = _pread(fd, into[done:], at + done)
                    if got <= 0:
                        raise UserError(f"{self.what}: the shard {self.name} ended early (it changed while "
                                        f"being read)")
                    done += got
            except OSError as err:
                raise UserError(f"{self.what}: the shard {self.name} cannot be read ({_reason(err)})") from None

    def close(self) -> None:
        with _lock:
            fd = _open.pop(self, None)
            if fd is not None:
                os.close(fd)

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other

    def __del__(self):
        if _open is not None and _lock is not None:       # not at interpreter exit
            self.close()


def open_files() -> int:
    """How many shard files are open now."""
    return len(_open)


def _pread(fd: int, into: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, [into], offset)
    if hasattr(os, "pread"):
        data = os.pread(fd, len(into), offset)
        into[:len(data)] = data
        return len(data)
    os.lseek(fd, offset, os.SEEK_SET)                   # Windows: no positioned reads
    data = os.read(fd, len(into))
    into[:len(data)] = data
    return len(data)


@dataclass
class ShardColumn:
    """One column of a prepared split (rows lo..lo+n of its shards), read like a tensor [n, *dims]."""

    shards: list[Shard]
    shard_rows: int
    dims: tuple
    dtype_np: np.dtype
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
        out = torch.empty((len(rows), *self.dims), dtype=self.dtype)
        at = rows + self.lo
        if at.size and self.row_bytes:
            # runs of consecutive rows within one shard: each run one read
            shard = at // self.shard_rows
            cut = np.flatnonzero((np.diff(at) != 1) | (np.diff(shard) != 0)) + 1
            starts = np.concatenate(([0], cut)).tolist()
            ends = starts[1:] + [len(at)]
            self._read_runs(out, starts, ends, at[starts].tolist())
        return out if self.device.type == "cpu" else out.to(self.device)

    def rows(self, lo: int, hi: int) -> torch.Tensor:
        """Rows lo..hi (in order) as a fresh tensor."""
        lo, hi = max(0, lo), max(max(0, lo), min(self.n, hi))
        out = torch.empty((hi - lo, *self.dims), dtype=self.dtype)
        if hi > lo and self.row_bytes:
            r, first = self.shard_rows, self.lo + lo
            starts = [0] + [k * r - first for k in range(first // r + 1, (self.lo + hi - 1) // r + 1)]
            ends = starts[1:] + [hi - lo]
            self._read_runs(out, starts, ends, [first + s for s in starts])
        return out if self.device.type == "cpu" else out.to(self.device)

    def _read_runs(self, out: torch.Tensor, starts, ends, first_rows) -> None:
        """Fill out[starts[i]:ends[i]] from the consecutive rows first_rows[i]... (each within one shard)."""
        raw = memoryview(out.numpy().reshape(-1).view(np.uint8))
        size, r = self.row_bytes, self.shard_rows
        for s, e, row in zip(starts, ends, first_rows):
            k, within = divmod(row, r)
            self.shards[k].read(within, raw[s * size:e * size])

    def part(self, lo: int, hi: int) -> ShardColumn:
        """Rows lo..hi as a column of their own (no reading)."""
        lo, hi = max(0, min(lo, self.n)), max(0, min(hi, self.n))
        return ShardColumn(self.shards, self.shard_rows, self.dims, self.dtype_np, self.lo + lo, max(0, hi - lo),
                           self.device)

    def on(self, device) -> ShardColumn:
        return ShardColumn(self.shards, self.shard_rows, self.dims, self.dtype_np, self.lo, self.n,
                           torch.device(device))

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
        trimmer.read(sum(t.numel() * t.element_size() for t in chosen))
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
