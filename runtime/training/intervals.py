"""How often a run logs and evaluates when its spec does not say: intervals that scale with the run's length.

The checker's defaults (`log = every(steps=50)`, `evaluate = every(epochs=1)`)
suit runs of a few hundred steps or a few dozen epochs. A 5000-epoch
full-batch run would print 5000 evaluation lines with them, so a `log` or
`evaluate` that neither the spec, a variant nor `--set` gave is widened to a
round interval (1, 2 or 5 times a power of ten) that gives at most
`MAX_EVENTS` events of each kind. What the spec says is never changed:
`log = every(steps=1)` logs every step. The run's resolved.yaml records the
intervals that were used.
"""

from __future__ import annotations

import dataclasses
import math

MAX_EVENTS = 50          # log lines, and evaluations, a run prints at most by default


def round_up(n: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is at least n."""
    if n <= 1:
        return 1
    power = 10 ** math.floor(math.log10(n))
    for step in (1, 2, 5, 10):
        if step * power >= n:
            return step * power
    return 10 * power


def given_settings(checked) -> set[str]:
    """The train settings the spec (with its variant and --set overrides applied) states itself."""
    from dslc.dsl import ast
    keys: set[str] = set()
    for item in checked.spec.items:
        if isinstance(item, ast.Block) and item.block == "train":
            keys |= {s.target[0] for s in item.settings if s.target}
    return keys


def scaled_intervals(checked, train_samples: int):
    """`checked` with `log` and `evaluate` widened where the spec left them to their defaults (else itself)."""
    tr = checked.train
    if tr is None or train_samples <= 0:
        return checked
    batch = checked.data.batch if checked.data is not None and checked.data.batch else train_samples
    per_epoch = math.ceil(train_samples / batch)
    steps = tr.steps or tr.epochs * per_epoch
    epochs = tr.epochs or math.ceil(tr.steps / per_epoch)
    given = given_settings(checked)
    changes = {}
    if "log" not in given:
        unit, every = tr.log
        total = steps if unit == "steps" else epochs
        if total / every > MAX_EVENTS:
            changes["log"] = (unit, round_up(total / MAX_EVENTS))
    if "evaluate" not in given:
        unit, every = tr.evaluate
        total = steps if unit == "steps" else epochs
        if total / every > MAX_EVENTS:
            changes["evaluate"] = (unit, round_up(total / MAX_EVENTS))
    if not changes:
        return checked
    return dataclasses.replace(checked, train=dataclasses.replace(tr, **changes))
