"""The training loop: one checked spec, its loaded data, a run directory; nanoGPT-plain.

`fit(checked, data, run_path, ...)` seeds every RNG, builds the model, its
loss, optimizer and schedule, and runs optimizer steps over in-memory batches.
A step does the forward pass, the loss, backward, optional clipping, the
optimizer and a step-unit schedule, and keeps the detached loss: nothing else.
Everything periodic (log lines, evaluation, checkpoints, progress ticks, the
end of a steps-limited run, a SIGINT/SIGTERM request) waits for the step
number to reach `next_event`, so the per-step cost is one comparison.

Conventions:
- `epoch` counts completed epochs; events report the 1-based epoch they fall in.
- Metric names say what they are. `train_loss` is the sample-weighted mean of
  the current epoch's batch losses so far (each measured before that batch's
  update, as in the classic loops): at an epoch's end, that epoch's mean. Eval
  events, log events at an epoch's end and the final figures carry it.
  `train_loss_recent` is the mean batch loss since the previous log line (log
  events only). `val_*` and `test_*` are exact over their split.
- Evaluation (`evaluate`) runs under `torch.no_grad()` in eval mode on the
  validation and test splits; its loss and metrics are exact over the split.
  Eval mode neither reads nor writes carried RNN state, so a mid-epoch
  evaluation does not disturb training; the state is reset at each epoch start
  and before a stand-alone evaluation.
- Checkpoint selection (`selection_rule`): with a validation split, `best.pt`
  holds the weights of the evaluation with the best monitored metric (the
  validation metric early stopping watches, else `val_loss`, lowest), kept in
  memory and written with `last.pt`; without one there is no `best.pt` and the
  run's checkpoint is `last.pt`. The result's `metrics` are the figures of
  that checkpoint (`final_metrics`: those at the end, when they differ), so
  what is printed, summarised, exported and evaluated agree. `last.pt` is written
  every `checkpoint_every` (at most once per MIN_CHECKPOINT_SECONDS, so tiny
  models do not spend their time in fsync), at the end, and when a stop is
  requested.
- Each epoch's shuffle order comes from a generator seeded with (seed, epoch),
  and checkpoints hold every RNG state, so `--resume` continues exactly, even
  from the middle of an epoch.
- A NaN or infinite loss stops the run (`nan="stop"`): the losses are checked
  at each event, before anything is logged or saved, so the run ends naming
  the first bad step and the checkpoint on disk is the last good one; weights
  are checked before every save too. `nan="skip"` instead checks each step's
  loss and gradients and skips the update of a step where one is not finite.
- Several processes (`world`, see distributed.py): DDP wraps the module, each
  rank trains on its slice of every global batch, losses and metrics are
  summed over the ranks, events fall on steps every rank knows, and rank 0
  alone writes.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch

from dslc.errors import UserError
from dslc.compiler.build import build_model, build_optimizer, build_schedule
from dslc.compiler.ir import CheckedSpec
from dslc.compiler.schedules import SCHEDULES

from dslc.runtime.training.checkpoint import rng_state, save_checkpoint, set_rng_state
from dslc.runtime.training.convolutions import speed_up
from dslc.runtime.training.distributed import SINGLE, Shards, World, shard_split
from dslc.runtime.training.distributed import wrap as _wrap
from dslc.runtime.training.loss import make_loss, make_metrics

MIN_CHECKPOINT_SECONDS = 5.0
PROGRESS_SECONDS = 0.25
SYNC_SECONDS = 0.5          # distributed: how often the ranks agree on stopping (and rank 0 redraws its bar)
NAN_POLICIES = ("stop", "skip")


# ---------------------------------------------------------------- set-up helpers


def pick_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else the CPU; asking for CUDA without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("the spec asks for device cuda, but CUDA is not available here; "
                        "use --device cpu or device = auto")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed torch (CPU and CUDA), numpy and Python; optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        torch.backends.cudnn.benchmark = False


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that shuffles epoch `epoch`: recomputable, so a resumed run sees the same order."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """Each rank's own seed for dropout and other random layers (the model's initial weights are shared)."""
    return (seed * 1_000_003 + 7_919 * (rank + 1) + 104_729 * step) % 2**63


def autocast_for(precision: str, device: torch.device):
    """A fresh autocast context for `amp` (float16) or `bf16` on CUDA; a no-op otherwise."""
    if device.type == "cuda" and precision in ("amp", "bf16"):
        dtype = torch.float16 if precision == "amp" else torch.bfloat16
        return lambda: torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext


def split_on_device(split, device: torch.device):
    """The split with its tensors moved to `device` (the same object on the CPU)."""
    if split is None or device.type == "cpu":
        return split
    return split.to(device)


def selection_rule(train, has_validation: bool) -> tuple[str, str] | None:
    """(metric, mode) that chooses `best.pt`: the validation metric early stopping watches, else `val_loss`
    (lowest). None without a validation split: the run's checkpoint is then `last.pt`."""
    if not has_validation:
        return None
    es = train.early_stopping
    if es and es["metric"].startswith("val_"):
        return es["metric"], es["mode"]
    return "val_loss", "min"


def _kept(loss: torch.Tensor) -> torch.Tensor:
    """The loss to keep for the epoch, in storage of its own: some losses (F.mse_loss) are a 0-d view of the whole
    per-element buffer, and keeping that for every step of an epoch would hold a batch's worth of memory each."""
    kept = loss.detach()
    return kept.clone() if kept.untyped_storage().nbytes() > kept.element_size() else kept


class _NoStop:
    """What a distributed rank's loop watches instead of its signals: those are agreed at events."""
    signum = None


class StopRequest:
    """SIGINT/SIGTERM during training: the loop saves `last.pt` at its next step and returns.

    A second signal interrupts at once (KeyboardInterrupt).
    """

    def __init__(self):
        self.signum: int | None = None

    @contextlib.contextmanager
    def installed(self):
        def handler(signum, frame):
            if self.signum is not None:
                raise KeyboardInterrupt
            self.signum = signum
        try:
            old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:                      # not the main thread: no signal handling
            yield self
            return
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(module, split, loss_fn, metrics, batch_size: int | None, device: torch.device,
             precision: str = "fp32", world: World = SINGLE) -> dict[str, float]:
    """Loss and metrics (runtime/training/loss.py `Metrics`) over a whole split, exact: sums over batches divided
    by what they count (samples for the loss, predictions for a metric).

    The split's loss is the sample-weighted mean of its batch losses. With several
    ranks, each evaluates its share of the split and the sums are added up.
    """
    from dslc.runtime.data.dataset import batches
    if world.size > 1:
        split = shard_split(split, world)
    count = split.n                                  # this rank's samples; the ranks' counts add up
    was_training = module.training
    module.eval()
    autocast = autocast_for(precision, device)
    size = split.n if batch_size is None else max(batch_size, 256)
    total = torch.zeros((), dtype=torch.float64, device=device)
    sums = [torch.zeros((), dtype=torch.float64, device=device) for _ in range(len(metrics))]
    counts = [0] * len(metrics)
    try:
        for inputs, targets in (batches(split, size, False, None) if split.n else ()):
            n = inputs[0].shape[0]
            with autocast():
                output = module(*inputs)
                loss = loss_fn(output, inputs, targets)
            total += loss.double() * n
            if len(metrics):
                for k, (value, n_counted) in enumerate(metrics(output.float(), targets)):
                    sums[k] += value.double()
                    counts[k] += n_counted
    finally:
        module.train(was_training)
    totals = torch.stack([total] + sums).tolist() + [count] + counts
    if world.size > 1:
        totals = world.sum(totals)
    k = len(sums) + 1
    values = [v / n if n else float("nan") for v, n in zip(totals[:k], totals[k:])]
    out = {"loss": values[0]}
    out.update(metrics.finish(values[1:]))
    return out


# ---------------------------------------------------------------- the loop


class Trainer:
    """Trains one configuration; `run()` returns the result for summary.json."""

    def __init__(self, checked: CheckedSpec, data, run_path: Path, *, spec_hash: str, device: torch.device,
                 progress, resume: dict | None = None, stop: StopRequest | None = None, log_events=None,
                 world: World = SINGLE, nan: str = "stop"):
        tr = checked.train
        self.checked, self.tr, self.run_path, self.spec_hash = checked, tr, Path(run_path), spec_hash
        self.device, self.progress, self.stop = device, progress, stop or StopRequest()
        self.log_events = log_events or (lambda record: None)
        if nan not in NAN_POLICIES:
            raise ValueError(f"nan policy must be one of {NAN_POLICIES}, not {nan!r}")
        self.world, self.nan = world, nan
        self.precision = tr.precision if device.type == "cuda" else "fp32"
        if tr.precision != "fp32" and device.type != "cuda":
            progress.message(f"precision {tr.precision} needs CUDA; training in fp32 on {device}")

        seed_everything(tr.seed, tr.deterministic)
        self.module = build_model(checked.model, checked.init).to(device)
        self.speedups = speed_up(self.module, checked.model, device, self.precision)   # same numbers, faster convs
        if world.size > 1:
            torch.manual_seed(rank_seed(tr.seed, world.rank))
        self.recurrent = [m for m in self.module.modules() if hasattr(m, "reset_state") and hasattr(m, "_state")]
        self.loss_fn = make_loss(checked, self.module)
        self.shards = Shards(world) if world.size > 1 else None
        self.train_loss_fn = self.loss_fn if self.shards is None else self._weighted_loss
        self.metrics = make_metrics(checked)
        self.optimizer = build_optimizer(tr.optimizer, self.module.parameters())

        self.train_split = split_on_device(data.train, device)
        self.val_split = split_on_device(data.validation, device)
        self.test_split = split_on_device(data.test, device)
        if self.train_split is None or self.train_split.n == 0:
            raise UserError("the training split is empty")
        n = self.train_split.n
        self.batch_size = checked.data.batch or n
        self.shuffle = checked.data.shuffle
        self.bpe = math.ceil(n / self.batch_size)                    # batches per epoch
        self.total_steps = tr.steps or tr.epochs * self.bpe
        self.total_epochs = tr.epochs or math.ceil(tr.steps / self.bpe)

        self.schedule = self.schedule_unit = None
        if tr.schedule is not None:
            self.schedule = build_schedule(tr.schedule, self.optimizer, self.total_steps, self.total_epochs)
            self.schedule_unit = SCHEDULES[tr.schedule.name].unit
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "amp" else None
        self.autocast = autocast_for(self.precision, device)

        self.evaluating = (self.val_split is not None or self.test_split is not None or bool(tr.early_stopping)
                           or self.schedule_unit == "metric")
        self.watch = self._watched_metric()
        self.selection = selection_rule(tr, self.val_split is not None)
        self.every_epochs = {name: n if unit == "epochs" else 0 for name, (unit, n) in
                             (("log", tr.log), ("evaluate", tr.evaluate), ("checkpoint", tr.checkpoint_every))}

        # loop position and history (all of it goes into last.pt)
        self.epoch = 0                     # completed epochs
        self.batch = 0                     # batches done in the current epoch
        self.step = 0                      # optimizer steps done
        self.losses: list[torch.Tensor] = []
        self.marks = {"epoch": 0, "log": 0}
        self.best: float | None = None           # the selection metric's best value so far
        self.best_at = {"epoch": 0, "step": 0}
        self.best_metrics: dict | None = None    # every figure of that evaluation
        self.bad_evals = 0
        self.es_best: float | None = None    # early stopping's best value so far
        self.events = 0
        self.elapsed = 0.0
        self.epoch_loss: float | None = None
        self.last_eval: dict | None = None
        self.status = "running"
        self.best_state: dict | None = None
        self.best_dirty = False
        self.last_write = -math.inf
        self.saved_step: int | None = None       # the step of the last checkpoint written (or resumed from)
        self.checked_step = 0                    # losses up to this step are known to be finite
        self.diverged: dict | None = None        # where a NaN/inf stopped the run
        self.skipped = 0                         # steps whose update --nan skip left out
        self.nan_loss = torch.tensor(float("nan"), device=device)    # what a skipped step records, on every rank
        if resume is not None:
            self._restore(resume)
            self.saved_step = self.checked_step = self.step
        # the module that trains: the DDP wrapper with several ranks (it syncs rank 0's weights at creation)
        self.model = self.module if world.size == 1 else _wrap(self.module, device)
        self.next_event = 0
        self.next_tick = 0
        self.next_sync = 0
        self.tick_step = self.step
        self.tick_time = self.t0 = time.perf_counter()

    # ------------------------------------------------------------ set-up checks

    def _watched_metric(self) -> tuple[str, str] | None:
        """(metric key, mode) that early stopping watches, checked against what evaluation reports."""
        es = self.tr.early_stopping
        if not es:
            return None
        names = {"train_loss"}
        for prefix, split in (("val", self.val_split), ("test", self.test_split)):
            if split is not None:
                names |= {f"{prefix}_loss"} | {f"{prefix}_{key}" for key in self.metrics.keys}
        if es["metric"] not in names:
            hint = (" (there is no validation split: add `validation = 0.2` to the data block)"
                    if es["metric"].startswith("val_") and self.val_split is None else "")
            raise UserError(f"early_stopping watches '{es['metric']}', which this run does not report{hint}; "
                            f"it reports: {', '.join(sorted(names))}")
        return es["metric"], es["mode"]

    # ------------------------------------------------------------ running

    def run(self) -> dict:
        self.t0 = time.perf_counter() - self.elapsed
        self.progress.begin(self.total_steps, self.step)
        with self.stop.installed():
            self._plan()
            while self.status == "running" and self.step < self.total_steps:
                self._epoch()
            if self.status == "running":
                self.status = "completed" if self.step >= self.total_steps else self.status
        self.elapsed = time.perf_counter() - self.t0
        self.progress.end()
        if self.status != "diverged":
            self._agree(handle_stop=False)        # no loss since the last event escapes the check
        if self.status == "diverged":
            self._save_best()
            return self._result(final={})
        if self.status == "interrupted":
            self._save_last()
            return self._result(final={})
        final = self._final_eval()
        self._save_last()
        return self._result(final if self.status != "diverged" else {})

    def _epoch(self) -> None:
        module, optimizer, loss_fn, losses = self.model, self.optimizer, self.train_loss_fn, self.losses
        scaler, autocast, mixed, clip = self.scaler, self.autocast, self.precision != "fp32", self.tr.clip_grad_norm
        step_schedule = self.schedule if self.schedule_unit == "step" else None
        warmup, skip_nan = self.tr.warmup_steps, self.nan == "skip"
        stop = self.stop if self.world.size == 1 else _NoStop
        if self.batch == 0:
            self._reset_state()
        if not module.training:
            module.train()
        for inputs, targets in self._batches():
            if mixed:
                with autocast():
                    output = module(*inputs)
                    loss = loss_fn(output, inputs, targets)
            else:
                output = module(*inputs)
                loss = loss_fn(output, inputs, targets)
            optimizer.zero_grad(set_to_none=True)
            skipped = False
            if scaler is None:
                loss.backward()
                skipped = skip_nan and self._skip_step(loss)
                if not skipped:
                    if clip:
                        torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
                    if self.step < warmup:
                        self._warmup_step()
                    else:
                        optimizer.step()
            else:
                scaler.scale(loss).backward()
                if clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
                if self.step < warmup:
                    self._warmup_step(lambda: scaler.step(optimizer))
                else:
                    scaler.step(optimizer)
                scaler.update()
            if step_schedule is not None:
                step_schedule.step()
            losses.append(_kept(loss) if not skipped else self.nan_loss)
            self.step += 1
            self.batch += 1
            if self.step >= self.next_event or stop.signum is not None:
                if self._step_events():
                    break
        if self.status == "running" and self.batch >= self.bpe:
            self._epoch_end()

    def _batches(self):
        """This epoch's batches from the current position (the whole split as is, when one unshuffled batch);
        with several ranks, this rank's slice of each."""
        split = self.train_split
        if self.bpe == 1 and not self.shuffle and not getattr(split, "streamed", False):
            whole = [(split.inputs, split.targets)] if self.batch == 0 else []
            return whole if self.shards is None else self.shards(whole)
        from dslc.runtime.data.dataset import batches
        generator = epoch_generator(self.tr.seed, self.epoch) if self.shuffle else None
        epoch = batches(split, self.batch_size, self.shuffle, generator, start=self.batch)
        return epoch if self.shards is None else self.shards(epoch)

    def _weighted_loss(self, output, inputs, targets):
        """Distributed: this rank's loss weighted by its share of the global batch (see distributed.Shards)."""
        return self.loss_fn(output, inputs, targets) * self.shards.scale

    def _skip_step(self, loss) -> bool:
        """--nan skip: True (and the update is left out) when this step's loss or gradients are not finite.

        With several ranks the gradients decide alone: DDP has already averaged them, so every rank
        sees the same verdict.
        """
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]
        finite = torch.isfinite(torch.nn.utils.get_total_norm(grads)) if grads else torch.ones((), dtype=torch.bool)
        if self.world.size == 1:
            finite = finite & torch.isfinite(loss.detach())
        if bool(finite):
            return False
        self.skipped += 1
        if self.skipped == 1 and self.world.main:
            self.progress.message(f"step {self.step + 1}: the loss or its gradients are NaN or infinite; "
                                  f"skipping the update (--nan skip)", always=True)
        return True

    def _reset_state(self) -> None:
        for m in self.recurrent:
            m.reset_state()

    def _warmup_step(self, step=None) -> None:
        """One optimizer step at a linearly warmed-up rate; the schedule's own rate is left as it was."""
        factor = (self.step + 1) / self.tr.warmup_steps
        groups = self.optimizer.param_groups
        rates = [g["lr"] for g in groups]
        for g, lr in zip(groups, rates):
            g["lr"] = lr * factor
        (step or self.optimizer.step)()
        for g, lr in zip(groups, rates):
            g["lr"] = lr

    # ------------------------------------------------------------ events

    def _plan(self) -> None:
        """The next step at which something periodic is due (with several ranks: the same step on each)."""
        s = self.step
        due = [self.total_steps]
        periodic = [self.tr.log, self.tr.checkpoint_every] + ([self.tr.evaluate] if self.evaluating else [])
        for unit, every in periodic:
            if unit == "steps":
                due.append((s // every + 1) * every)
        if self.tr.log[0] == "steps" and s == 0:
            due.append(1)
        if self.world.size > 1:
            due.append(self.next_sync)
        elif self.progress.ticking:
            due.append(self.next_tick)
        self.next_event = max(s + 1, min(due))

    def _agree(self, handle_stop: bool = True) -> None:
        """At an event: stop on a NaN/inf loss (naming its first step) or on a stop request.

        With several ranks this is one all_reduce: a signal on any rank, the earliest bad
        step on any rank, and rank 0's choice of the next step at which to agree again.
        """
        bad = self._first_nonfinite()
        signum = self.stop.signum
        if self.world.size > 1:
            never = 2 ** 62
            pace = self._pace() if self.world.main else 0
            agreed = self.world.max([signum or 0, never - bad if bad else 0, pace])
            signum = agreed[0] or None
            bad = never - agreed[1] if agreed[1] else None
            self.next_sync = agreed[2]
        if bad is not None:
            self._diverge(bad, "loss")
        elif signum is not None and handle_stop and self.status == "running":
            self.stop.signum = signum
            self.status = "interrupted"
            self.progress.message(f"{signal.Signals(signum).name}: saving a checkpoint at step {self.step}")

    def _first_nonfinite(self) -> int | None:
        """With --nan stop: the first step since the last check whose loss is NaN or infinite."""
        new = self.step - self.checked_step
        self.checked_step = self.step
        if new <= 0 or self.nan != "stop" or not self.losses:
            return None
        window = self.losses[-new:]
        finite = torch.isfinite(torch.stack(window))
        if bool(finite.all()):
            return None
        return self.step - len(window) + 1 + int((~finite).nonzero()[0, 0])

    def _diverge(self, step: int, what: str) -> None:
        self.status = "diverged"
        self.diverged = {"step": step, "epoch": (step - 1) // self.bpe + 1, "what": what}

    def _pace(self) -> int:
        """Rank 0, distributed: redraw the bar, and pick the step of the next agreement (~SYNC_SECONDS away)."""
        now = time.perf_counter()
        rate = (self.step - self.tick_step) / max(now - self.tick_time, 1e-6)
        self.tick_step, self.tick_time = self.step, now
        if self.progress.ticking:
            self.progress.advance(self.step, self.epoch)
        return self.step + max(1, int(rate * SYNC_SECONDS))

    def _step_events(self) -> bool:
        """Periodic work after a step; True ends the epoch (stop requested or the run is complete)."""
        s = self.step
        self._agree()
        if self.status != "running":
            return True
        unit, every = self.tr.log
        if unit == "steps" and (s % every == 0 or s == 1):
            self._log()
        unit, every = self.tr.evaluate
        if self.evaluating and unit == "steps" and s % every == 0:
            self._evaluate()
        if self.status != "running":
            return True
        unit, every = self.tr.checkpoint_every
        if unit == "steps" and s % every == 0:
            self._periodic_save()
            if self.status != "running":
                return True
        if self.world.size == 1 and self.progress.ticking and s >= self.next_tick:
            self._tick()
        self._plan()
        return s >= self.total_steps and self.batch < self.bpe

    def _epoch_end(self) -> None:
        self.epoch += 1
        self.batch = 0
        e = self.epoch
        if self.schedule_unit == "epoch":
            self.schedule.step()
        every = self.every_epochs
        log = every["log"] and (e % every["log"] == 0 or e == 1 or e == self.total_epochs)
        evaluate = every["evaluate"] and self.evaluating and (e % every["evaluate"] == 0 or self.step >= self.total_steps)
        save = every["checkpoint"] and e % every["checkpoint"] == 0
        if log or evaluate:                       # (a save checks for itself, see _save_last)
            self._agree(handle_stop=False)        # signals wait for the next step event
            if self.status == "diverged":
                return
            if self.world.size > 1:
                self._plan()
        if log:
            self._log()
        if evaluate:
            self._evaluate()
        if self.status != "running" or e >= self.total_epochs or self.step >= self.total_steps:
            self.epoch_loss = self._epoch_mean()          # the run ends here: keep its last epoch's loss
        self._mark("epoch")
        if save:
            self._periodic_save()
            if self.world.size > 1:
                self._plan()

    def _epoch_mean(self) -> float | None:
        """The current epoch's train loss so far: its batch losses weighted by batch size."""
        window = self.losses[self.marks["epoch"]:]
        if not window:
            return None
        sizes = [min(self.batch_size, self.train_split.n - i * self.batch_size) for i in range(len(window))]
        if self.world.size > 1 or self.nan == "skip":
            return self._mean(window, sizes)
        if len(window) == 1:
            return float(window[0])
        weights = torch.tensor(sizes, dtype=torch.float32, device=window[0].device)
        return float(torch.dot(torch.stack(window).float(), weights) / sum(sizes))

    def _mean(self, window: list[torch.Tensor], sizes: list[int] | None = None) -> float | None:
        """A (size-weighted) mean of batch losses, summed over the ranks, leaving out non-finite ones
        (steps that --nan skip left out). Each rank's losses are its weighted share, see Shards."""
        values = torch.stack(window).float()
        weights = (torch.tensor(sizes, dtype=torch.float32, device=values.device) if sizes is not None
                   else torch.ones_like(values))
        if self.nan == "skip":
            weights = weights * torch.isfinite(values)
            values = torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        total, weight = float(torch.dot(values, weights)), float(weights.sum())
        if self.world.size > 1:
            total = self.world.sum([total])[0] / self.world.size
        return total / weight if weight else None

    def _mark(self, name: str) -> None:
        """Start a new loss window; drop losses that no window needs any more."""
        marks = self.marks
        marks[name] = len(self.losses)
        low = min(marks.values())
        if low:
            del self.losses[:low]
            self.marks = {k: v - low for k, v in self.marks.items()}

    def _window_mean(self, name: str) -> float | None:
        window = self.losses[self.marks[name]:]
        if window and (self.world.size > 1 or self.nan == "skip"):
            return self._mean(window)
        return float(torch.stack(window).float().mean()) if window else None

    def _record(self, kind: str, values: dict) -> None:
        """One event: to metrics.jsonl (via log_events) and to the progress display."""
        epoch = self.epoch if self.batch == 0 else self.epoch + 1
        record = {"event": kind, "epoch": epoch, "step": self.step, **values}
        self.events += 1
        self.log_events(record)
        self.progress.event(record)

    def _log(self) -> None:
        values = {"train_loss_recent": self._window_mean("log")}
        if self.batch in (0, self.bpe):               # at an epoch's end: that epoch's mean too
            values["train_loss"] = self._epoch_mean()
        values["lr"] = self.optimizer.param_groups[0]["lr"]
        self._mark("log")
        self._record("log", values)

    def _evaluate(self) -> None:
        values = {"train_loss": self._epoch_mean()}
        for prefix, split in (("val", self.val_split), ("test", self.test_split)):
            if split is not None:
                result = evaluate(self.module, split, self.loss_fn, self.metrics, self.checked.data.batch,
                                  self.device, self.precision, self.world)
                values.update({f"{prefix}_{k}": v for k, v in result.items()})
        self.last_eval = {"step": self.step, **values}
        self._record("eval", values)
        if self.selection is not None:
            self._consider_best(values)
        if self.schedule_unit == "metric":
            watched = values.get("val_loss", values["train_loss"])
            if watched is not None:
                self.schedule.step(watched)
        if self.watch:
            self._early_stopping(values.get(self.watch[0]))

    def _consider_best(self, values: dict) -> None:
        """An evaluation's figures: keep its weights for best.pt when its selection metric is the best yet."""
        metric, mode = self.selection
        value = values.get(metric)
        if value is None or not math.isfinite(value):
            return
        if self.best is not None and not (value < self.best if mode == "min" else value > self.best):
            return
        state = self.module.state_dict()
        if not _all_finite(state.values()):      # a finite loss measured before an update that broke the weights
            return
        self.best = value
        self.best_at = {"epoch": self.epoch if self.batch == 0 else self.epoch + 1, "step": self.step}
        self.best_metrics = {k: v for k, v in values.items() if k == "train_loss" or k.startswith(("val_", "test_"))}
        if self.world.main:                      # only rank 0 writes best.pt
            self.best_state = {k: v.detach().clone() for k, v in state.items()}
            self.best_dirty = True

    def _early_stopping(self, value: float | None) -> None:
        es = self.tr.early_stopping
        if value is None:
            return
        best = self.es_best
        better = best is None or (value < best - es["min_delta"] if es["mode"] == "min" else value > best + es["min_delta"])
        if better:
            self.es_best = value
            self.bad_evals = 0
            return
        self.bad_evals += 1
        if self.bad_evals >= es["patience"]:
            self.status = "stopped early"
            self.progress.message(f"early stopping at step {self.step}: {self.watch[0]} has not improved "
                                  f"for {self.bad_evals} evaluations")

    def _tick(self) -> None:
        now = time.perf_counter()
        done = self.step - self.tick_step
        rate = done / max(now - self.tick_time, 1e-6)
        self.tick_step, self.tick_time = self.step, now
        self.next_tick = self.step + max(1, int(rate * PROGRESS_SECONDS))
        self.progress.advance(self.step, self.epoch)

    # ------------------------------------------------------------ final evaluation and result

    def _final_eval(self) -> dict:
        metrics = {"train_loss": self.epoch_loss if self.batch == 0 else self._epoch_mean()}
        if self.val_split is None and self.test_split is None:
            return metrics
        if self.last_eval is not None and self.last_eval["step"] == self.step:
            metrics.update({k: v for k, v in self.last_eval.items() if k.startswith(("val_", "test_"))})
            return metrics
        self._reset_state()
        for prefix, split in (("val", self.val_split), ("test", self.test_split)):
            if split is not None:
                result = evaluate(self.module, split, self.loss_fn, self.metrics, self.checked.data.batch,
                                  self.device, self.precision, self.world)
                metrics.update({f"{prefix}_{k}": v for k, v in result.items()})
        if self.selection is not None:
            self._consider_best(metrics)
        return metrics

    def _result(self, final: dict) -> dict:
        params = {name: float(p.detach().float().reshape(()).item())
                  for name, p in self.module.named_parameters() if p.numel() == 1}
        chosen = self.selection is not None and self.best is not None
        epochs = self.epoch + (self.batch / self.bpe if self.batch else 0)
        if chosen:
            metric, mode = self.selection
            selection = {"checkpoint": "best.pt", "rule": "best", "metric": metric, "mode": mode,
                         "value": self.best, **self.best_at}
        else:
            selection = {"checkpoint": "last.pt", "rule": "last", "epoch": epochs, "step": self.step,
                         "why": "no validation split" if self.selection is None else "no evaluation yet"}
        return {
            "status": self.status,
            "epochs": epochs,
            "steps": self.step,
            "wall_seconds": round(self.elapsed, 3),
            "device": str(self.device),
            "precision": self.precision,
            "metrics": dict(self.best_metrics) if chosen else final,
            **({"final_metrics": final} if chosen and final and self.best_at["step"] != self.step else {}),
            "selection": selection,
            "params": params,
            "checkpoint": str(self.run_path / "checkpoints" / selection["checkpoint"]),
            "signal": self.stop.signum,
            "world_size": self.world.size,
            "diverged": self.diverged,
            "saved_step": self.saved_step,
            **({"skipped_steps": self.skipped} if self.nan == "skip" else {}),
        }

    # ------------------------------------------------------------ checkpoints

    def _periodic_save(self) -> None:
        due = time.perf_counter() - self.last_write >= MIN_CHECKPOINT_SECONDS
        if self.world.size > 1:
            due = self.world.decide(due)             # rank 0's clock
        if due:
            self._save_last()

    def _save_last(self) -> None:
        """last.pt (and best.pt when it changed), unless a loss since the last check or the weights are
        not finite: then the run has diverged and the checkpoint on disk stays the last good one."""
        self._agree(handle_stop=False)
        if self.status == "diverged":
            return
        if not _all_finite(self.module.parameters()):      # the same weights on every rank
            self._diverge(self.step, "weights")
            return
        ranks = self.world.gather(self._rank_state()) if self.world.size > 1 else None
        if self.world.main:
            self._save_best()
            state = self.state()
            if ranks is not None:
                state["ranks"] = ranks
            save_checkpoint(self.run_path / "checkpoints" / "last.pt", state)
        self.last_write = time.perf_counter()
        self.saved_step = self.step

    def _save_best(self) -> None:
        if self.world.main and self.best_dirty and self.best_state is not None:
            metric, mode = self.selection
            save_checkpoint(self.run_path / "checkpoints" / "best.pt", {
                "spec_hash": self.spec_hash, "model": self.best_state, "epoch": self.best_at["epoch"],
                "step": self.best_at["step"], "value": self.best, "metric": metric, "mode": mode,
                "metrics": dict(self.best_metrics or {})})
            self.best_dirty = False

    def _rank_state(self) -> dict:
        """What differs between ranks: RNG states, carried RNN state, and the recorded loss shares."""
        return {"rng": rng_state(), "carried": [_carried(m) for m in self.recurrent],
                "losses": torch.stack(self.losses).cpu() if self.losses else None}

    def state(self) -> dict:
        """Everything needed to continue exactly where the loop is now (tensors and plain values only).

        A distributed run adds `ranks`, each rank's RNG and carried state (rank 0's are also the top-level ones).
        """
        carried = [_carried(m) for m in self.recurrent]
        return {
            "spec_hash": self.spec_hash,
            "world_size": self.world.size,
            "epoch": self.epoch, "batch": self.batch, "step": self.step,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict() if self.schedule is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng_state(),
            "carried": carried,
            "loop": {
                "losses": torch.stack(self.losses).cpu() if self.losses else None,
                "marks": dict(self.marks), "best": self.best, "best_at": dict(self.best_at),
                "best_metrics": self.best_metrics,
                "bad_evals": self.bad_evals, "es_best": self.es_best, "events": self.events,
                "elapsed": time.perf_counter() - self.t0,
                "epoch_loss": self.epoch_loss, "last_eval": self.last_eval,
            },
        }

    def _restore(self, state: dict) -> None:
        try:
            self.module.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.schedule is not None and state.get("scheduler") is not None:
                self.schedule.load_state_dict(state["scheduler"])
            if self.scaler is not None and state.get("scaler") is not None:
                self.scaler.load_state_dict(state["scaler"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise UserError(f"the checkpoint does not fit this model ({str(err).splitlines()[0][:300]})") from None
        self.epoch, self.batch, self.step = int(state["epoch"]), int(state["batch"]), int(state["step"])
        loop = state["loop"]
        ranks = state.get("ranks")
        same_world = bool(ranks) and len(ranks) == self.world.size and self.world.size > 1
        losses = ranks[self.world.rank]["losses"] if same_world else loop["losses"]
        self.losses = list(losses.to(self.device).unbind(0)) if losses is not None else []
        self.marks = {k: v for k, v in loop["marks"].items() if k in self.marks}
        self.best, self.best_at = loop["best"], dict(loop["best_at"])
        self.best_metrics = loop.get("best_metrics")
        self.bad_evals, self.es_best = loop["bad_evals"], loop["es_best"]
        self.events, self.elapsed = loop["events"], loop["elapsed"]
        self.epoch_loss, self.last_eval = loop["epoch_loss"], loop["last_eval"]
        mine = {"rng": state["rng"], "carried": state.get("carried")}
        if same_world:
            mine = ranks[self.world.rank]
        elif self.world.size > 1 or ranks:     # another number of ranks wrote it: carried state starts afresh
            mine = {"rng": state["rng"], "carried": None}
        for m, carried in zip(self.recurrent, mine["carried"] or []):
            m._state = _to_device(carried, self.device)
        set_rng_state(mine["rng"])
        if self.world.size > 1 and not same_world:
            torch.manual_seed(rank_seed(self.tr.seed, self.world.rank, self.step))


def _all_finite(tensors) -> bool:
    """No NaN or infinity in any floating-point tensor (one device sync)."""
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def _carried(m):
    s = m._state
    if s is None:
        return None
    return tuple(t.detach().cpu() for t in s) if isinstance(s, tuple) else s.detach().cpu()


def _to_device(s, device):
    if s is None:
        return None
    return tuple(t.to(device) for t in s) if isinstance(s, tuple) else s.to(device)


def fit(checked: CheckedSpec, data, run_path: Path, *, spec_hash: str, device: torch.device, progress,
        resume: dict | None = None, stop: StopRequest | None = None, log_events=None,
        world: World = SINGLE, nan: str = "stop") -> dict:
    """Train one configuration into `run_path` (from a loaded checkpoint `resume`, if given);
    returns the run's result: status (completed, stopped early, interrupted or diverged), epochs,
    steps, metrics, params, best, checkpoint, ..."""
    if getattr(data, "stats", None):          # the statistics fitted on the training split, in the expressions
        from dslc.runtime.data.dataset import fitted_spec
        checked = fitted_spec(checked, data.stats)
    trainer = Trainer(checked, data, run_path, spec_hash=spec_hash, device=device, progress=progress,
                      resume=resume, stop=stop, log_events=log_events, world=world, nan=nan)
    return trainer.run()
