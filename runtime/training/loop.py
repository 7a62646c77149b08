"""dslc's trainer: the training kit's loop (dslc/kit/loop.py) with a run directory around it.

`fit(checked, data, run_path, ...)` builds the model of a checked spec and
trains it with `Trainer`, the kit's `Loop` (the same code an ejected train.py
runs: steps, warm-up, clipping, schedules, log and evaluation events, early
stopping, the best evaluation; see its docstring for what the numbers are)
plus what a dslc run adds:

- checkpoints: `last.pt` every `checkpoint_every` (at most once per
  MIN_CHECKPOINT_SECONDS, so tiny models do not spend their time in fsync), at
  the end and when a stop is requested; `best.pt` with the best evaluation's
  weights. The result's `metrics` are the figures of the run's checkpoint
  (`final_metrics`: those at the end, when they differ), so what is printed,
  summarised, exported and evaluated agree.
- resuming: checkpoints hold every RNG state and the loop's history, and each
  epoch's shuffle comes from a generator seeded with (seed, epoch), so
  `--resume` continues exactly, even from the middle of an epoch.
- events recorded to metrics.jsonl (`log_events`) and shown by the progress
  display; a SIGINT/SIGTERM saves `last.pt` at the next step and returns.
- NaN handling: a NaN or infinite loss stops the run (`nan="stop"`): losses are
  checked at each event before anything is logged or saved, so the run ends
  naming the first bad step and the checkpoint on disk is the last good one;
  weights are checked before every save too. `nan="skip"` instead checks each
  step's loss and gradients and skips the update of a step where one is not finite.
- several processes (`world`, see distributed.py): DDP wraps the module, each
  rank trains on its slice of every global batch, losses and metrics are
  summed over the ranks, events fall on steps every rank knows, and rank 0
  alone writes.
"""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import torch

from dslc.errors import UserError
from dslc.compiler.build import build_model
from dslc.compiler.ir import CheckedSpec
from dslc.compiler.train_config import train_config
from dslc.kit import loop as kit
from dslc.kit.loop import NoStop, all_finite
from dslc.kit.seeding import rank_seed, seed_everything

from dslc.runtime.training.checkpoint import rng_state, save_checkpoint, set_rng_state
from dslc.runtime.training.convolutions import speed_up
from dslc.runtime.training.distributed import SINGLE, Shards, World, shard_split
from dslc.runtime.training.distributed import wrap as _wrap
from dslc.runtime.training.loss import make_loss, make_metrics

MIN_CHECKPOINT_SECONDS = 5.0
PROGRESS_SECONDS = 0.25
SYNC_SECONDS = 0.5          # distributed: how often the ranks agree on stopping (and rank 0 redraws its bar)
NAN_POLICIES = ("stop", "skip")


def pick_device(name: str) -> torch.device:
    """`auto` is CUDA when available, else the CPU; asking for CUDA without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("the spec asks for device cuda, but CUDA is not available here; "
                        "use --device cpu or device = auto")
    return torch.device(name)


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


def evaluate(module, split, loss_fn, metrics, batch_size: int | None, device: torch.device,
             precision: str = "fp32", world: World = SINGLE) -> dict[str, float]:
    """Loss and metrics over a whole split, exact (the kit's `evaluate`); with several ranks, each evaluates its
    share of the split and the sums are added up."""
    if world.size > 1:
        return kit.evaluate(module, shard_split(split, world), loss_fn, metrics, batch_size, device, precision,
                            world.sum)
    return kit.evaluate(module, split, loss_fn, metrics, batch_size, device, precision)


class Trainer(kit.Loop):
    """Trains one configuration into a run directory; `run()` returns the result for summary.json."""

    def __init__(self, checked: CheckedSpec, data, run_path: Path, *, spec_hash: str, device: torch.device,
                 progress, resume: dict | None = None, stop: StopRequest | None = None, log_events=None,
                 world: World = SINGLE, nan: str = "stop"):
        tr = checked.train
        self.checked, self.tr, self.run_path, self.spec_hash = checked, tr, Path(run_path), spec_hash
        self.progress, self.stop = progress, stop or StopRequest()
        self.log_events = log_events or (lambda record: None)
        if nan not in NAN_POLICIES:
            raise ValueError(f"nan policy must be one of {NAN_POLICIES}, not {nan!r}")
        self.world, self.nan = world, nan
        if tr.precision != "fp32" and device.type != "cuda":
            progress.message(f"precision {tr.precision} needs CUDA; training in fp32 on {device}")

        seed_everything(tr.seed, tr.deterministic)
        module = build_model(checked.model, checked.init).to(device)
        precision = tr.precision if device.type == "cuda" else "fp32"
        self.speedups = speed_up(module, checked.model, device, precision)   # same numbers, faster convs
        if world.size > 1:
            torch.manual_seed(rank_seed(tr.seed, world.rank))
        self.shards = Shards(world) if world.size > 1 else None
        try:
            super().__init__(kit.TrainConfig(**train_config(checked)), module, make_loss(checked, module),
                             data.train, data.validation, data.test, make_metrics(checked), device)
        except kit.ConfigError as err:
            raise UserError(str(err)) from None
        if self.shards is not None:
            self.train_loss_fn = self._weighted_loss
        self.recurrent = [m for m in module.modules() if hasattr(m, "reset_state") and hasattr(m, "_state")]
        self.resets = [m.reset_state for m in self.recurrent]
        self.interrupt = self.stop if world.size == 1 else NoStop
        self.skip_nonfinite = nan == "skip"
        self.plain_means = world.size == 1 and nan != "skip"
        self.keep_best_weights = world.main                     # only rank 0 writes best.pt
        unit, every = tr.checkpoint_every
        self.every_epochs["checkpoint"] = every if unit == "epochs" else 0

        self.elapsed = 0.0
        self.last_write = -float("inf")
        self.saved_step: int | None = None       # the step of the last checkpoint written (or resumed from)
        self.checked_step = 0                    # losses up to this step are known to be finite
        self.diverged: dict | None = None        # where a NaN/inf stopped the run
        self.skipped = 0                         # steps whose update --nan skip left out
        if resume is not None:
            self._restore(resume)
            self.saved_step = self.checked_step = self.step
        # the module that trains: the DDP wrapper with several ranks (it syncs rank 0's weights at creation)
        self.model = self.module if world.size == 1 else _wrap(self.module, device)
        self.next_tick = 0
        self.next_sync = 0
        self.tick_step = self.step
        self.tick_time = self.t0 = time.perf_counter()

    # ------------------------------------------------------------ running

    def run(self) -> dict:
        self.t0 = time.perf_counter() - self.elapsed
        self.progress.begin(self.total_steps, self.step)
        with self.stop.installed():
            self.train()
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
        final = self.final_eval()
        self._save_last()
        return self._result(final if self.status != "diverged" else {})

    def _batches(self):
        """This epoch's batches (the kit's); with several ranks, this rank's slice of each."""
        epoch = super()._batches()
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

    # ------------------------------------------------------------ events (the kit's extension points)

    def report(self, record: dict) -> None:
        self.log_events(record)
        self.progress.event(record)

    def message(self, text: str) -> None:
        self.progress.message(text)

    def _evaluate_split(self, split) -> dict:
        return evaluate(self.module, split, self.loss_fn, self.metrics, self.config.batch, self.device,
                        self.precision, self.world)

    def _check(self, handle_stop: bool = True) -> None:
        self._agree(handle_stop)
        if not handle_stop and self.world.size > 1 and self.status == "running":
            self._plan()                          # an epoch's end: the ranks agreed on the next sync

    def _due_steps(self) -> list[int]:
        due = []
        unit, every = self.tr.checkpoint_every
        if unit == "steps":
            due.append((self.step // every + 1) * every)
        if self.world.size > 1:
            due.append(self.next_sync)
        elif self.progress.ticking:
            due.append(self.next_tick)
        return due

    def _after_step_events(self) -> bool:
        unit, every = self.tr.checkpoint_every
        if unit == "steps" and self.step % every == 0:
            self._periodic_save()
            if self.status != "running":
                return True
        if self.world.size == 1 and self.progress.ticking and self.step >= self.next_tick:
            self._tick()
        return False

    def _after_epoch(self) -> None:
        every = self.every_epochs["checkpoint"]
        if every and self.epoch % every == 0:
            self._periodic_save()
            if self.world.size > 1:
                self._plan()

    def _sum_over_processes(self, total: float) -> float:
        """Each rank's losses are its weighted share (see Shards): their sum over the ranks, per rank."""
        if self.world.size > 1:
            return self.world.sum([total])[0] / self.world.size
        return total

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

    def _tick(self) -> None:
        now = time.perf_counter()
        done = self.step - self.tick_step
        rate = done / max(now - self.tick_time, 1e-6)
        self.tick_step, self.tick_time = self.step, now
        self.next_tick = self.step + max(1, int(rate * PROGRESS_SECONDS))
        self.progress.advance(self.step, self.epoch)

    # ------------------------------------------------------------ the result

    def _result(self, final: dict) -> dict:
        params = {name: float(p.detach().float().reshape(()).item())
                  for name, p in self.module.named_parameters() if p.numel() == 1}
        selection = self.selected()
        chosen = selection["rule"] == "best"
        epochs = self.epoch + (self.batch / self.bpe if self.batch else 0)
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
        if not all_finite(self.module.parameters()):      # the same weights on every rank
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
