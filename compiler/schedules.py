"""The learning-rate schedule catalog: `schedule = cosine()`, `schedule = step(every=10, gamma=0.5)`.

`unit` says when the schedule steps: after every optimizer step or every epoch.
`make` receives torch.optim.lr_scheduler, the optimizer, the bound arguments and the run's total
steps and epochs (compiler/build.py `build_schedule` passes them; nothing here imports torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .values import Arg, non_negative, positive


@dataclass(frozen=True)
class Schedule:
    name: str
    doc: str
    unit: str                                   # "step" | "epoch" | "metric"
    make: Callable                              # (torch.optim.lr_scheduler, optimizer, args, total_steps, total_epochs)
    args: list[Arg] = field(default_factory=list)


SCHEDULES: dict[str, Schedule] = {}


def register(s: Schedule) -> None:
    SCHEDULES[s.name] = s


register(Schedule("step", "Multiply the rate by gamma every `every` epochs.", "epoch",
                  lambda S, o, a, n, e: S.StepLR(o, a["every"], gamma=a["gamma"]),
                  [Arg("every", "int", check=positive), Arg("gamma", "float", 0.1, check=positive)]))
register(Schedule("multistep", "Multiply the rate by gamma at each listed epoch.", "epoch",
                  lambda S, o, a, n, e: S.MultiStepLR(o, a["milestones"], gamma=a["gamma"]),
                  [Arg("milestones", "ints"), Arg("gamma", "float", 0.1, check=positive)]))
register(Schedule("exponential", "Multiply the rate by gamma every epoch.", "epoch",
                  lambda S, o, a, n, e: S.ExponentialLR(o, a["gamma"]), [Arg("gamma", "float", check=positive)]))
register(Schedule("cosine", "Cosine decay to min_lr over the whole run (in steps).", "step",
                  lambda S, o, a, n, e: S.CosineAnnealingLR(o, max(1, n), eta_min=a["min_lr"]),
                  [Arg("min_lr", "float", 0.0, check=non_negative)]))
register(Schedule("onecycle", "One cycle up to max_lr and down, over the whole run (in steps).", "step",
                  lambda S, o, a, n, e: S.OneCycleLR(o, a["max_lr"], total_steps=max(1, n), pct_start=a["warmup_fraction"]),
                  [Arg("max_lr", "float", check=positive), Arg("warmup_fraction", "float", 0.3, check=positive)]))
register(Schedule("reduce_on_plateau", "Multiply the rate by factor when the validation loss stops improving.", "metric",
                  lambda S, o, a, n, e: S.ReduceLROnPlateau(o, factor=a["factor"], patience=a["patience"]),
                  [Arg("factor", "float", 0.1, check=positive), Arg("patience", "int", 10, check=non_negative)]))
