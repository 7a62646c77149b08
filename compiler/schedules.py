"""The learning-rate schedule catalog: `schedule = cosine()`, `schedule = step(every=10, gamma=0.5)`.

`unit` says when the schedule steps: after every optimizer step, every epoch, or on an
evaluation's loss. The training kit builds each one from its name and bound arguments
(dslc/kit/optim.py `SCHEDULES`, one entry per schedule here; nothing here imports torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .values import Arg, non_negative, positive


@dataclass(frozen=True)
class Schedule:
    name: str
    doc: str
    unit: str                                   # "step" | "epoch" | "metric"
    args: list[Arg] = field(default_factory=list)


SCHEDULES: dict[str, Schedule] = {}


def register(s: Schedule) -> None:
    SCHEDULES[s.name] = s


register(Schedule("step", "Multiply the rate by gamma every `every` epochs.", "epoch",
                  [Arg("every", "int", check=positive), Arg("gamma", "float", 0.1, check=positive)]))
register(Schedule("multistep", "Multiply the rate by gamma at each listed epoch.", "epoch",
                  [Arg("milestones", "ints"), Arg("gamma", "float", 0.1, check=positive)]))
register(Schedule("exponential", "Multiply the rate by gamma every epoch.", "epoch", [Arg("gamma", "float", check=positive)]))
register(Schedule("cosine", "Cosine decay to min_lr over the whole run (in steps).", "step",
                  [Arg("min_lr", "float", 0.0, check=non_negative)]))
register(Schedule("onecycle", "One cycle up to max_lr and down, over the whole run (in steps).", "step",
                  [Arg("max_lr", "float", check=positive), Arg("warmup_fraction", "float", 0.3, check=positive)]))
register(Schedule("reduce_on_plateau", "Multiply the rate by factor when the validation loss stops improving.", "metric",
                  [Arg("factor", "float", 0.1, check=positive), Arg("patience", "int", 10, check=non_negative)]))
