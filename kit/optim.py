"""Optimizers and learning-rate schedules from plain settings, and the linear warm-up.

    make_optimizer({"class": "Adam", "lr": 0.001, "betas": [0.9, 0.999]}, model.parameters())
    make_schedule({"name": "cosine", "min_lr": 0.0}, optimizer, total_steps, total_epochs)

A schedule steps after every optimizer step (`step`), every epoch (`epoch`) or
on an evaluation's validation loss (`metric`); `SCHEDULES` says which and how
each is built (dslc's schedule catalog has one entry here per schedule).
"""

from __future__ import annotations

import torch
from torch.optim import lr_scheduler


def make_optimizer(settings: dict, params):
    """The torch.optim class `settings["class"]` over `params`, with the other settings as its arguments
    (lists become tuples: `betas`)."""
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k != "class"}
    return getattr(torch.optim, settings["class"])(params, **kwargs)


# name -> (unit, build(optimizer, settings, total_steps, total_epochs))
SCHEDULES = {
    "step": ("epoch", lambda o, a, steps, epochs: lr_scheduler.StepLR(o, a["every"], gamma=a["gamma"])),
    "multistep": ("epoch", lambda o, a, steps, epochs: lr_scheduler.MultiStepLR(o, a["milestones"], gamma=a["gamma"])),
    "exponential": ("epoch", lambda o, a, steps, epochs: lr_scheduler.ExponentialLR(o, a["gamma"])),
    "cosine": ("step", lambda o, a, steps, epochs: lr_scheduler.CosineAnnealingLR(o, max(1, steps),
                                                                                 eta_min=a["min_lr"])),
    "onecycle": ("step", lambda o, a, steps, epochs: lr_scheduler.OneCycleLR(
        o, a["max_lr"], total_steps=max(1, steps), pct_start=a["warmup_fraction"])),
    "reduce_on_plateau": ("metric", lambda o, a, steps, epochs: lr_scheduler.ReduceLROnPlateau(
        o, factor=a["factor"], patience=a["patience"])),
}


def make_schedule(settings: dict | None, optimizer, total_steps: int, total_epochs: int):
    """(schedule, unit) for `settings` (`{"name": ..., its arguments}`), or (None, None) without one."""
    if settings is None:
        return None, None
    unit, build = SCHEDULES[settings["name"]]
    return build(optimizer, settings, total_steps, total_epochs), unit


def warmup_step(optimizer, step: int, warmup_steps: int, take_step=None) -> None:
    """Optimizer step number `step` (0-based) of a linear warm-up, at (step + 1) / warmup_steps of each group's
    rate; the rates (the schedule's own) are put back afterwards."""
    factor = (step + 1) / warmup_steps
    groups = optimizer.param_groups
    rates = [g["lr"] for g in groups]
    for g, lr in zip(groups, rates):
        g["lr"] = lr * factor
    (take_step or optimizer.step)()
    for g, lr in zip(groups, rates):
        g["lr"] = lr
