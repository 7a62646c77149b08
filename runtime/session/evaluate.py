"""A trained run's checkpoint evaluated on one of its data splits: what `dslc eval` and `Run.evaluate()` print.

The checkpoint is the run's chosen one unless asked otherwise (`which`):
best.pt when the run selected one, else last.pt — the weights its summary
reports and its export holds, so the figures agree. The data is read from
where training found it (the run's summary records the root), never
downloaded again; a run trained from prepared shards streams from them again. The evaluation is the training loop's own `evaluate`:
exact sums over the split, the same batches.
"""

from __future__ import annotations

from pathlib import Path

from dslc.errors import UserError

SPLIT_ORDER = ("test", "validation", "train")
# Record keys: val_* and test_* as summary.json has them (the same evaluation, so the same figures). The
# training split evaluated after training is train_eval_*: summary's train_loss is another figure (the
# epoch's mean during training, dropout on, each batch before its update), so it keeps its own name.
PREFIX = {"test": "test", "validation": "val", "train": "train_eval"}


def evaluate_run(run_dir, split: str | None = None, variant: str | None = None, which: str = "best",
                 device: str = "auto", data_root=None) -> dict:
    """{"run", "checkpoint", "split", "samples", "<split>_loss", "<split>_<metric>", ...} for one split
    (default: test, else validation, else train). Keys use the names summary.json uses (val_loss, ...)."""
    from dslc.runtime.data.prepared import load_recorded
    from dslc.runtime.training.convolutions import speed_up
    from dslc.runtime.training.loop import evaluate, pick_device
    from dslc.runtime.training.loss import make_loss, make_metrics
    from dslc.runtime.training.run_dir import load_run

    run = load_run(run_dir, variant, which)
    recorded = ((run.summary or {}).get("data") or {}).get("root")
    root = data_root if data_root is not None else (recorded if recorded and Path(recorded).exists() else None)
    data = load_recorded(run.checked, (run.summary or {}).get("data"), root, download=root is None)
    available = {"test": data.test, "validation": data.validation, "train": data.train}
    name = split or next(k for k in SPLIT_ORDER if available[k] is not None)
    chosen = available[name]
    if chosen is None:
        have = ", ".join(k for k, v in available.items() if v is not None)
        raise UserError(f"this run's data has no {name} split; it has: {have}")
    where = pick_device(device)
    module = run.module.to(where)
    speed_up(module, run.checked.model, where)        # as training chose: the figures the run recorded
    module.reset_state()
    checked = data.checked or run.checked          # with the statistics fitted on the training split
    result = evaluate(module, chosen.to(where) if where.type != "cpu" else chosen, make_loss(checked, module),
                      make_metrics(checked), checked.data.batch, where)
    return {"run": str(run.path), "checkpoint": str(run.checkpoint), "split": name, "samples": chosen.n,
            **{f"{PREFIX[name]}_{k}": v for k, v in result.items()}}
