"""Training on several processes with torch.distributed: ranks, the process group, shards, agreement, launching.

A worker is a `dslc train` process whose environment holds RANK, WORLD_SIZE and
LOCAL_RANK, as `torchrun` sets them (several nodes: `torchrun --nnodes ...
--rdzv-endpoint HOST:PORT -m dslc train SPEC`). `dslc train SPEC --nproc N` is
`torchrun --standalone --nproc-per-node N` run from inside dslc: `launch` hands
`python -m dslc train SPEC --out RUN ...` to PyTorch's elastic launcher (what
`torchrun` runs) and turns its outcome into one line.

Conventions (docs/reliability.md has the reasons):
- Every rank holds the whole data set and takes its slice of every global
  batch (`Shards`), so the spec's `batch` stays the batch one optimizer step
  sees. A batch of b samples on W ranks is cut into W contiguous slices of
  floor(b/W) or ceil(b/W) samples; each rank's loss is scaled by
  W * slice / b, so DDP's gradient average is the gradient of the batch mean
  exactly, whatever b is. A rank whose slice is empty (a last batch smaller
  than W) runs one sample with weight 0.
- The model is wrapped in DistributedDataParallel (gloo on the CPU, nccl for
  CUDA tensors); checkpoints hold the unwrapped module's state_dict.
- Rank 0 alone writes: run directory, metrics, checkpoints, plots, export.
  Decisions that depend on one process (a signal, a clock, a NaN in one
  rank's slice) are agreed with one small all_reduce at steps every rank
  knows in advance, never on the fly.
- A worker ends with `end_process`: once it has left the process group and
  flushed its output it exits without finalizing the interpreter. Gloo's
  worker threads outlive `destroy_process_group` (DDP's reducer keeps the
  group alive) and release each finished collective's tensors a moment after
  Python has moved on; when that moment falls while Python finalizes, taking
  the GIL ends the thread by unwinding through C++ code that may not throw,
  so the process dies with SIGABRT ("terminate called without an active
  exception"; a core dump shows `ProcessGroupGloo::runLoop` ->
  `~AsyncAllreduceWork` -> `TensorImpl::decref_pyobject` -> `take_gil` ->
  `pthread_exit` while the main thread is in `Py_FinalizeEx`). Everything a
  worker writes is closed and fsynced before it returns, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import uuid
from dataclasses import dataclass

from dslc.errors import UserError

ENV_PARENT = "DSLC_NPROC_PARENT"      # set for workers that `dslc train --nproc` started: it reports for them
EXIT_CONSEQUENCE = 75                 # a worker that stops because another one failed (EX_TEMPFAIL)


class QuietExit(SystemExit):
    """A rank stops because another failed, which reports why: exit EXIT_CONSEQUENCE, printing nothing."""

    def __init__(self):
        super().__init__(EXIT_CONSEQUENCE)


# ---------------------------------------------------------------- who is who


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> World:
        """This process's place, from torchrun's variables (a single process when WORLD_SIZE is unset)."""
        if not os.environ.get("WORLD_SIZE"):
            return cls()
        try:
            size = int(os.environ["WORLD_SIZE"])
            rank = int(os.environ["RANK"])
            local = int(os.environ.get("LOCAL_RANK", rank))
        except (KeyError, ValueError):
            raise UserError("WORLD_SIZE is set but RANK is missing or not a number; start workers with "
                            "`torchrun ... -m dslc train SPEC` or `dslc train SPEC --nproc N`") from None
        if not 0 <= rank < size:
            raise UserError(f"RANK {rank} is outside WORLD_SIZE {size}")
        return cls(rank, size, local)

    # ------------------------------------------------------------ collectives (size > 1 only)

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over the ranks (float64, on the CPU)."""
        import torch
        import torch.distributed as dist
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def max(self, values: list[int]) -> list[int]:
        """Each value's maximum over the ranks."""
        import torch
        import torch.distributed as dist
        t = torch.tensor(values, dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def decide(self, flag: bool) -> bool:
        """Rank 0's `flag`, on every rank."""
        return bool(self.max([int(flag) if self.main else 0])[0])

    def broadcast(self, obj):
        """Rank 0's `obj`, on every rank (pickled between the ranks of this job, which trust each other)."""
        import torch.distributed as dist
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order, on every rank."""
        import torch.distributed as dist
        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        import torch.distributed as dist
        dist.barrier()


SINGLE = World()


def from_main(world: World, make):
    """`make()` run on rank 0 and its result shared; a UserError there stops every rank (reported once)."""
    if world.size == 1:
        return make()
    if world.main:
        try:
            value = make()
        except UserError as err:
            world.broadcast(("error", str(err)))
            raise
        world.broadcast(("ok", value))
        return value
    kind, value = world.broadcast(None)
    if kind == "error":
        raise QuietExit()
    return value


_joined = False                       # this process joined a process group (it is a worker)


def join(world: World, use_cuda: bool) -> None:
    """Join the process group torchrun described in the environment (gloo, plus nccl for CUDA tensors)."""
    global _joined
    import torch
    import torch.distributed as dist
    if use_cuda:
        count = torch.cuda.device_count()
        if world.local_rank >= count:
            raise UserError(f"LOCAL_RANK {world.local_rank} has no GPU: this node has {count}; start at most "
                            f"{count} workers per node, or train on the CPU with --device cpu")
        torch.cuda.set_device(world.local_rank)
    try:
        dist.init_process_group("cpu:gloo,cuda:nccl" if use_cuda else "gloo")
    except (RuntimeError, ValueError) as err:
        raise UserError(f"rank {world.rank} cannot join the other workers: {_first_line(err)}") from None
    _joined = True


def leave() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def end_process(status: int) -> None:
    """In a process that joined a process group: flush stdout, stderr and the log handlers, then end with
    `status` without finalizing the interpreter (see the module docstring: gloo's threads may still take
    the GIL). Elsewhere it returns and the process ends as usual."""
    if not _joined:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(status)


def wrap(module, device):
    """`module` in DistributedDataParallel (static graph: the same parameters take part in every step)."""
    from torch.nn.parallel import DistributedDataParallel
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, static_graph=True)


# ---------------------------------------------------------------- each rank's share


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rank `rank`'s contiguous slice [lo, hi) of n items cut into `size` nearly equal parts."""
    return rank * n // size, (rank + 1) * n // size


class Shards:
    """Cuts each global batch to this rank's slice; `scale` is the slice's loss weight for the current batch."""

    def __init__(self, world: World):
        self.rank, self.size = world.rank, world.size
        self.scale = 1.0

    def cut(self, n: int) -> tuple[int, int]:
        """This rank's [lo, hi) of a batch of n samples; sets `scale` for it."""
        lo, hi = shard_bounds(n, self.rank, self.size)
        if hi > lo:
            self.scale = (hi - lo) * self.size / n
        else:                                # fewer samples than ranks: a stand-in sample with weight 0
            lo, hi, self.scale = 0, 1, 0.0
        return lo, hi

    def __call__(self, batches):
        sliced = getattr(batches, "sliced", None)
        if sliced is not None:               # streamed from prepared shards: read this rank's rows only
            for n, take in sliced():
                yield take(*self.cut(n))
            return
        for inputs, targets in batches:
            lo, hi = self.cut((inputs or targets)[0].shape[0])
            yield [t[lo:hi] for t in inputs], [t[lo:hi] for t in targets]


def shard_split(split, world: World):
    """This rank's contiguous share of an evaluation split (possibly empty)."""
    from dslc.runtime.data.dataset import Split
    lo, hi = shard_bounds(split.n, world.rank, world.size)
    if getattr(split, "streamed", False):    # prepared shards: a view of those rows, nothing read
        return split.part(lo, hi)
    return Split([t[lo:hi] for t in split.inputs], [t[lo:hi] for t in split.targets])


# ---------------------------------------------------------------- starting the workers


@dataclass
class Outcome:
    """How the workers ended: ok, interrupted by `signal`, or failed (`failure` says which rank and how)."""
    ok: bool
    signal: int | None = None
    failure: str | None = None


INTERRUPTED_EXITS = {130: signal.SIGINT, 143: signal.SIGTERM}


def launch(argv: list[str], nproc: int) -> Outcome:
    """Run `python -m dslc train ARGV` as `nproc` workers on this machine and wait for them.

    The elastic launcher forwards SIGINT/SIGTERM to the workers (which save a
    checkpoint and stop) and, when one worker fails, stops the others.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"dslc-{uuid.uuid4().hex}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          monitor_interval=0.1, signals_to_handle="SIGTERM,SIGINT,SIGHUP")
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nproc))
    with _environment({ENV_PARENT: "1", "OMP_NUM_THREADS": threads}), _quiet_launcher(), _kept_signal_handlers():
        try:
            elastic_launch(config, sys.executable)("-m", "dslc", "train", *argv)
        except SignalException as err:
            return Outcome(False, signal=int(err.sigval))
        except ChildFailedError as err:
            return failure_outcome(err.failures)
    return Outcome(True)


def failure_outcome(failures: dict) -> Outcome:
    """The root cause among the failed workers, earliest first, passing over the consequences: workers
    that lost their peers (EXIT_CONSEQUENCE) and those the launcher stopped with SIGTERM afterwards.

    `failure` is None when the root cause is a worker that reported its own error (exit status 1 or 2).
    """
    if failures and all(f.exitcode in INTERRUPTED_EXITS for f in failures.values()):
        return Outcome(False, signal=int(INTERRUPTED_EXITS[next(iter(failures.values())).exitcode]))
    consequences = (EXIT_CONSEQUENCE, -int(signal.SIGTERM))
    rank = min(failures, key=lambda r: (failures[r].exitcode in consequences, failures[r].timestamp, r))
    f = failures[rank]
    if f.exitcode in (1, 2):
        return Outcome(False)
    if f.exitcode < 0:
        how = f"was killed by {f.signal_name()}"
    elif f.exitcode == EXIT_CONSEQUENCE:
        how = "lost contact with the other workers"
    else:
        how = f"exited with status {f.exitcode}"
    return Outcome(False, failure=f"worker rank {rank} (pid {f.pid}) {how}")


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _quiet_launcher():
    """The launcher's own log lines (closing signals, failure reports) are replaced by dslc's one line."""
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.startswith(("torch.distributed.elastic", "torch.distributed.launcher"))]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def _kept_signal_handlers():
    """The launcher installs its own handlers; put the caller's back afterwards."""
    names = ("SIGTERM", "SIGINT", "SIGHUP")
    saved = {s: signal.getsignal(getattr(signal, s)) for s in names if hasattr(signal, s)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(getattr(signal, s), handler)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__
