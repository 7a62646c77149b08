"""A checked spec's training settings as the plain values the training kit reads (dslc/kit, `TrainConfig`).

`train_config(checked)` is what `dslc train` hands the kit's loop and what `dslc
emit` writes as train.py's CONFIG, so the two train with one set of settings:
the optimizer as its torch class and arguments, the schedule by name, the
metrics by name, intervals as (unit, every). Plain Python values only (no torch).
"""

from __future__ import annotations

from .ir import CheckedSpec
from .optimizers import OPTIMIZERS


def _plain(args: dict) -> dict:
    return {k: v for k, v in args.items() if not k.startswith("__")}


def train_config(checked: CheckedSpec) -> dict:
    """The kit's TrainConfig fields for this configuration, in the order train.py shows them."""
    tr, data = checked.train, checked.data
    return {
        "epochs": tr.epochs,
        "steps": tr.steps,
        "batch": data.batch,
        "shuffle": data.shuffle,
        "seed": tr.seed,
        "deterministic": tr.deterministic,
        "device": tr.device,
        "precision": tr.precision,
        "optimizer": {"class": OPTIMIZERS[tr.optimizer.name].torch_class, **_plain(tr.optimizer.args)},
        "schedule": None if tr.schedule is None else {"name": tr.schedule.name, **_plain(tr.schedule.args)},
        "warmup_steps": tr.warmup_steps,
        "clip_grad_norm": tr.clip_grad_norm,
        "log": tr.log,
        "evaluate": tr.evaluate,
        "early_stopping": _plain(tr.early_stopping) if tr.early_stopping else None,
        "metrics": [{"name": m.name, **m.kwargs} for m in tr.metrics],
    }
