"""The training loop: optimizer steps over in-memory batches, and the events between them.

`Loop(config, module, loss, train, validation, test, metrics, device).run()`
trains as `config` (a `TrainConfig`: plain settings) says. A step does the
forward pass, the loss, backward, optional clipping, the optimizer (at a
warmed-up rate during `warmup_steps`) and a step-unit schedule, and keeps the
detached loss: nothing else. Everything periodic waits for the step number to
reach `next_event`, so the per-step cost is one comparison.

What the numbers are:
- `epoch` counts completed epochs; events report the 1-based epoch they fall in.
- `train_loss` is the sample-weighted mean of the current epoch's batch losses
  so far (each measured before that batch's update): at an epoch's end, that
  epoch's mean. `train_loss_recent` is the mean batch loss since the previous
  log line (log events only). `val_*` and `test_*` are exact over their split
  (`evaluate`): sums over the batches divided by what they count.
- Evaluation runs under `torch.no_grad()` in eval mode, which neither reads nor
  writes carried recurrent state; that state is reset at each epoch's start
  and before a stand-alone evaluation.
- With a validation split, the best evaluation (`selection_rule`: the metric
  early stopping watches, else the lowest `val_loss`) keeps its weights in
  `best_state`; the run's result is that evaluation's figures.

dslc's own trainer (runtime/training/loop.py) is this loop plus checkpoints,
resuming, progress display, several processes and NaN handling; it adds them
through the methods marked "extension point" below.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch

from .batches import batches
from .metrics import Metrics
from .optim import make_optimizer, make_schedule, warmup_step
from .seeding import epoch_generator


@dataclass
class TrainConfig:
    """How a model trains, as plain values (an ejected train.py's CONFIG)."""

    epochs: int | None = None                  # one of epochs and steps
    steps: int | None = None
    batch: int | None = None                   # None: the whole training split in one batch
    shuffle: bool = True
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    precision: str = "fp32"                    # fp32 | amp (float16) | bf16, mixed precision on CUDA only
    optimizer: dict = field(default_factory=lambda: {"class": "Adam", "lr": 0.001})
    schedule: dict | None = None               # {"name": "cosine", "min_lr": 0.0}; see optim.SCHEDULES
    warmup_steps: int = 0
    clip_grad_norm: float | None = None
    log: tuple = ("steps", 50)                 # (unit, every): "steps" or "epochs"
    evaluate: tuple = ("epochs", 1)
    early_stopping: dict | None = None         # {"metric": "val_loss", "patience": 5, "mode": "min", "min_delta": 0}
    metrics: list = field(default_factory=list)    # [{"name": "accuracy"}, {"name": "top_k", "k": 5}]


class ConfigError(ValueError):
    """The configuration cannot train this data (an empty training split, an unreported watched metric)."""


class NoStop:
    """What the loop checks after each step when nothing can ask it to stop."""
    signum = None


def autocast_for(precision: str, device: torch.device):
    """A fresh autocast context for `amp` (float16) or `bf16` on CUDA; a no-op otherwise."""
    if device.type == "cuda" and precision in ("amp", "bf16"):
        dtype = torch.float16 if precision == "amp" else torch.bfloat16
        return lambda: torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext


def selection_rule(early_stopping: dict | None, has_validation: bool) -> tuple[str, str] | None:
    """(metric, mode) that chooses the best evaluation: the validation metric early stopping watches, else
    `val_loss` (lowest). None without a validation split: the run's result is its last step."""
    if not has_validation:
        return None
    if early_stopping and early_stopping["metric"].startswith("val_"):
        return early_stopping["metric"], early_stopping["mode"]
    return "val_loss", "min"


def all_finite(tensors) -> bool:
    """No NaN or infinity in any floating-point tensor (one device sync)."""
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    return bool(torch.stack(flags).all()) if flags else True


def kept(loss: torch.Tensor) -> torch.Tensor:
    """A step's loss to keep for the epoch, in storage of its own: some losses (F.mse_loss) are a 0-d view of the
    whole per-element buffer, and keeping that for every step of an epoch would hold a batch's worth of memory."""
    loss = loss.detach()
    return loss.clone() if loss.untyped_storage().nbytes() > loss.element_size() else loss


def describe(record: dict) -> str:
    """`epoch 3  step 240  train_loss 0.123  val_accuracy 0.981` for an event record."""
    def text(value) -> str:
        return f"{value:.6g}" if isinstance(value, float) and math.isfinite(value) else str(value)
    parts = [f"epoch {record['epoch']}", f"step {record['step']}"]
    parts += [f"{k} {text(v)}" for k, v in record.items() if k not in ("event", "epoch", "step", "variant")
              and v is not None]
    return "  ".join(parts)


@torch.no_grad()
def evaluate(module, split, loss_fn, metrics: Metrics, batch_size: int | None, device: torch.device,
             precision: str = "fp32", sum_over=None) -> dict[str, float]:
    """Loss and metrics over a whole split, exact: sums over batches of at least 256 divided by what they count
    (samples for the loss, predictions for a metric). `sum_over(totals)` adds up the sums and counts of several
    processes, each evaluating its share."""
    count = split.n
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
    if sum_over is not None:
        totals = sum_over(totals)
    k = len(sums) + 1
    values = [v / n if n else float("nan") for v, n in zip(totals[:k], totals[k:])]
    out = {"loss": values[0]}
    out.update(metrics.finish(values[1:]))
    return out


class Loop:
    """Trains `module` on the `train` split (a batches.Split) with `loss(output, inputs, targets)`."""

    def __init__(self, config: TrainConfig, module, loss, train, validation=None, test=None,
                 metrics: Metrics | None = None, device: torch.device | None = None):
        c = self.config = config
        device = device if device is not None else torch.device("cpu")
        self.module = self.model = module            # the module, and what trains it (a DDP wrapper in dslc)
        self.loss_fn = self.train_loss_fn = loss
        self.metrics = metrics if metrics is not None else Metrics()
        self.device = device
        self.precision = c.precision if device.type == "cuda" else "fp32"
        if train is None or train.n == 0:
            raise ConfigError("the training split is empty")
        on_device = (lambda s: s) if device.type == "cpu" else (lambda s: s if s is None else s.to(device))
        self.train_split, self.val_split, self.test_split = on_device(train), on_device(validation), on_device(test)
        self.optimizer = make_optimizer(c.optimizer, module.parameters())
        n = self.train_split.n
        self.batch_size = c.batch or n
        self.shuffle = c.shuffle
        self.bpe = math.ceil(n / self.batch_size)                    # batches per epoch
        self.total_steps = c.steps or c.epochs * self.bpe
        self.total_epochs = c.epochs or math.ceil(c.steps / self.bpe)
        self.schedule, self.schedule_unit = make_schedule(c.schedule, self.optimizer, self.total_steps,
                                                          self.total_epochs)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "amp" else None
        self.autocast = autocast_for(self.precision, device)
        self.evaluating = (self.val_split is not None or self.test_split is not None or bool(c.early_stopping)
                           or self.schedule_unit == "metric")
        self.watch = self._watched_metric()
        self.selection = selection_rule(c.early_stopping, self.val_split is not None)
        self.every_epochs = {name: every if unit == "epochs" else 0
                             for name, (unit, every) in (("log", c.log), ("evaluate", c.evaluate))}
        self.resets = [module.reset_state] if hasattr(module, "reset_state") else []   # carried recurrent state
        self.interrupt = NoStop                  # checked after each step: its `signum` is set to stop
        self.skip_nonfinite = False              # call _skip_step after each backward pass
        self.plain_means = True                  # loss means as plain means (not weighted shares, see _mean)
        self.keep_best_weights = True            # copy the best evaluation's weights into best_state
        self.nan_loss = torch.tensor(float("nan"), device=device)     # what a skipped step records

        # the loop's position and history
        self.epoch = 0                           # completed epochs
        self.batch = 0                           # batches done in the current epoch
        self.step = 0                            # optimizer steps done
        self.losses: list[torch.Tensor] = []     # detached batch losses the windows still need
        self.marks = {"epoch": 0, "log": 0}      # where each window starts in `losses`
        self.best: float | None = None           # the selection metric's best value so far
        self.best_at = {"epoch": 0, "step": 0}
        self.best_metrics: dict | None = None    # every figure of that evaluation
        self.best_state: dict | None = None      # its weights
        self.best_dirty = False                  # best_state changed since it was last written
        self.bad_evals = 0
        self.es_best: float | None = None        # early stopping's best value so far
        self.events = 0
        self.epoch_loss: float | None = None
        self.last_eval: dict | None = None
        self.status = "running"
        self.next_event = 0

    def _watched_metric(self) -> tuple[str, str] | None:
        """(metric key, mode) that early stopping watches, checked against what evaluation reports."""
        es = self.config.early_stopping
        if not es:
            return None
        names = {"train_loss"}
        for prefix, split in (("val", self.val_split), ("test", self.test_split)):
            if split is not None:
                names |= {f"{prefix}_loss"} | {f"{prefix}_{key}" for key in self.metrics.keys}
        if es["metric"] not in names:
            hint = (" (there is no validation split: add `validation = 0.2` to the data block)"
                    if es["metric"].startswith("val_") and self.val_split is None else "")
            raise ConfigError(f"early_stopping watches '{es['metric']}', which this run does not report{hint}; "
                              f"it reports: {', '.join(sorted(names))}")
        return es["metric"], es["mode"]

    # ------------------------------------------------------------ running

    def run(self) -> dict:
        """Train, evaluate at the end, and return the outcome (see `outcome`)."""
        self.train()
        return self.outcome(self.final_eval())

    def train(self) -> None:
        """Optimizer steps until the run is complete or stops (`status` says why)."""
        self._plan()
        while self.status == "running" and self.step < self.total_steps:
            self._epoch()
        if self.status == "running":
            self.status = "completed"

    def _epoch(self) -> None:
        module, optimizer, loss_fn, losses = self.model, self.optimizer, self.train_loss_fn, self.losses
        scaler, autocast, mixed, clip = self.scaler, self.autocast, self.precision != "fp32", self.config.clip_grad_norm
        step_schedule = self.schedule if self.schedule_unit == "step" else None
        warmup, skip_nonfinite, interrupt = self.config.warmup_steps, self.skip_nonfinite, self.interrupt
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
                skipped = skip_nonfinite and self._skip_step(loss)
                if not skipped:
                    if clip:
                        torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
                    if self.step < warmup:
                        warmup_step(optimizer, self.step, warmup)
                    else:
                        optimizer.step()
            else:
                scaler.scale(loss).backward()
                if clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
                if self.step < warmup:
                    warmup_step(optimizer, self.step, warmup, lambda: scaler.step(optimizer))
                else:
                    scaler.step(optimizer)
                scaler.update()
            if step_schedule is not None:
                step_schedule.step()
            losses.append(kept(loss) if not skipped else self.nan_loss)
            self.step += 1
            self.batch += 1
            if (self.step >= self.next_event or interrupt.signum is not None) and self._step_events():
                break
        if self.status == "running" and self.batch >= self.bpe:
            self._epoch_end()

    def _batches(self):
        """This epoch's batches from the current position (the whole split as it is, when one unshuffled batch)."""
        split = self.train_split
        if self.bpe == 1 and not self.shuffle and not getattr(split, "streamed", False):
            return [(split.inputs, split.targets)] if self.batch == 0 else []
        generator = epoch_generator(self.config.seed, self.epoch) if self.shuffle else None
        return batches(split, self.batch_size, self.shuffle, generator, start=self.batch)

    def _reset_state(self) -> None:
        for reset in self.resets:
            reset()

    # ------------------------------------------------------------ events

    def _plan(self) -> None:
        """The next step at which something periodic is due."""
        c, s = self.config, self.step
        due = [self.total_steps] + self._due_steps()
        for unit, every in [c.log] + ([c.evaluate] if self.evaluating else []):
            if unit == "steps":
                due.append((s // every + 1) * every)
        if c.log[0] == "steps" and s == 0:
            due.append(1)
        self.next_event = max(s + 1, min(due))

    def _step_events(self) -> bool:
        """Periodic work after a step; True ends the epoch (stop requested or the run is complete)."""
        c, s = self.config, self.step
        self._check()
        if self.status != "running":
            return True
        unit, every = c.log
        if unit == "steps" and (s % every == 0 or s == 1):
            self._log()
        unit, every = c.evaluate
        if self.evaluating and unit == "steps" and s % every == 0:
            self._evaluate()
        if self.status != "running" or self._after_step_events():
            return True
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
        evaluate = every["evaluate"] and self.evaluating and (e % every["evaluate"] == 0
                                                              or self.step >= self.total_steps)
        if log or evaluate:
            self._check(handle_stop=False)        # stop requests wait for the next step's events
            if self.status != "running":
                return
        if log:
            self._log()
        if evaluate:
            self._evaluate()
        if self.status != "running" or e >= self.total_epochs or self.step >= self.total_steps:
            self.epoch_loss = self._epoch_mean()          # the run ends here: keep its last epoch's loss
        self._mark("epoch")
        self._after_epoch()

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
                values.update({f"{prefix}_{k}": v for k, v in self._evaluate_split(split).items()})
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
        """An evaluation's figures: keep its weights when its selection metric is the best yet."""
        metric, mode = self.selection
        value = values.get(metric)
        if value is None or not math.isfinite(value):
            return
        if self.best is not None and not (value < self.best if mode == "min" else value > self.best):
            return
        state = self.module.state_dict()
        if not all_finite(state.values()):      # a finite loss measured before an update that broke the weights
            return
        self.best = value
        self.best_at = {"epoch": self.epoch if self.batch == 0 else self.epoch + 1, "step": self.step}
        self.best_metrics = {k: v for k, v in values.items() if k == "train_loss" or k.startswith(("val_", "test_"))}
        if self.keep_best_weights:
            self.best_state = {k: v.detach().clone() for k, v in state.items()}
            self.best_dirty = True

    def _early_stopping(self, value: float | None) -> None:
        es = self.config.early_stopping
        if value is None:
            return
        best = self.es_best
        better = best is None or (value < best - es["min_delta"] if es["mode"] == "min"
                                  else value > best + es["min_delta"])
        if better:
            self.es_best = value
            self.bad_evals = 0
            return
        self.bad_evals += 1
        if self.bad_evals >= es["patience"]:
            self.status = "stopped early"
            self.message(f"early stopping at step {self.step}: {self.watch[0]} has not improved "
                         f"for {self.bad_evals} evaluations")

    def _record(self, kind: str, values: dict) -> None:
        epoch = self.epoch if self.batch == 0 else self.epoch + 1
        self.events += 1
        self.report({"event": kind, "epoch": epoch, "step": self.step, **values})

    # ------------------------------------------------------------ loss windows

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
        if window and not self.plain_means:
            return self._mean(window)
        return float(torch.stack(window).float().mean()) if window else None

    def _epoch_mean(self) -> float | None:
        """The current epoch's train loss so far: its batch losses weighted by batch size."""
        window = self.losses[self.marks["epoch"]:]
        if not window:
            return None
        sizes = [min(self.batch_size, self.train_split.n - i * self.batch_size) for i in range(len(window))]
        if not self.plain_means:
            return self._mean(window, sizes)
        if len(window) == 1:
            return float(window[0])
        weights = torch.tensor(sizes, dtype=torch.float32, device=window[0].device)
        return float(torch.dot(torch.stack(window).float(), weights) / sum(sizes))

    def _mean(self, window: list[torch.Tensor], sizes: list[int] | None = None) -> float | None:
        """A (size-weighted) mean of batch losses leaving out non-finite ones (steps whose update was
        skipped), over every process (`_sum_over_processes`)."""
        values = torch.stack(window).float()
        weights = (torch.tensor(sizes, dtype=torch.float32, device=values.device) if sizes is not None
                   else torch.ones_like(values))
        if self.skip_nonfinite:
            weights = weights * torch.isfinite(values)
            values = torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        total, weight = self._sum_over_processes(float(torch.dot(values, weights))), float(weights.sum())
        return total / weight if weight else None

    # ------------------------------------------------------------ the end

    def final_eval(self) -> dict:
        """The figures at the end: the training loss of the last (or unfinished) epoch and every held-out split
        (those of an evaluation at this very step, else evaluated now)."""
        metrics = {"train_loss": self.epoch_loss if self.batch == 0 else self._epoch_mean()}
        if self.val_split is None and self.test_split is None:
            return metrics
        if self.last_eval is not None and self.last_eval["step"] == self.step:
            metrics.update({k: v for k, v in self.last_eval.items() if k.startswith(("val_", "test_"))})
            return metrics
        self._reset_state()
        for prefix, split in (("val", self.val_split), ("test", self.test_split)):
            if split is not None:
                metrics.update({f"{prefix}_{k}": v for k, v in self._evaluate_split(split).items()})
        if self.selection is not None:
            self._consider_best(metrics)
        return metrics

    def selected(self) -> dict:
        """Which weights are the run's result: the best evaluation's (`rule` best), else the last step's."""
        if self.selection is not None and self.best is not None:
            metric, mode = self.selection
            return {"checkpoint": "best.pt", "rule": "best", "metric": metric, "mode": mode, "value": self.best,
                    **self.best_at}
        epochs = self.epoch + (self.batch / self.bpe if self.batch else 0)
        return {"checkpoint": "last.pt", "rule": "last", "epoch": epochs, "step": self.step,
                "why": "no validation split" if self.selection is None else "no evaluation yet"}

    def outcome(self, final: dict) -> dict:
        """status, steps, the figures of the chosen weights (`metrics`), those of the last step
        (`final_metrics`) and which were chosen (`selection`)."""
        selection = self.selected()
        chosen = selection["rule"] == "best"
        return {"status": self.status, "steps": self.step, "metrics": dict(self.best_metrics) if chosen else final,
                "final_metrics": final, "selection": selection}

    # ------------------------------------------------------------ extension points

    def report(self, record: dict) -> None:
        """A log or evaluation event (extension point: dslc records it and shows its progress)."""
        print(describe(record), flush=True)

    def message(self, text: str) -> None:
        """A notice, such as early stopping (extension point)."""
        print(text, flush=True)

    def _evaluate_split(self, split) -> dict:
        """Loss and metrics over one held-out split (extension point: dslc shares it out over its processes)."""
        return evaluate(self.module, split, self.loss_fn, self.metrics, self.config.batch, self.device,
                        self.precision)

    def _check(self, handle_stop: bool = True) -> None:
        """At each event, before anything is recorded (extension point: dslc stops on NaN losses here)."""

    def _due_steps(self) -> list[int]:
        """More steps at which events are due (extension point: dslc's checkpoints and progress)."""
        return []

    def _after_step_events(self) -> bool:
        """After a step's events; True ends the epoch (extension point: dslc's periodic checkpoint)."""
        return False

    def _after_epoch(self) -> None:
        """After an epoch's events (extension point: dslc's periodic checkpoint)."""

    def _skip_step(self, loss) -> bool:
        """With `skip_nonfinite`: True leaves this step's update out (extension point: dslc's --nan skip)."""
        return False

    def _sum_over_processes(self, total: float) -> float:
        """A loss sum over every process (extension point: distributed dslc)."""
        return total
