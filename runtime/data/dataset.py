"""A checked spec's data as in-memory tensors: load, compute inputs and targets, split, batch.

`load_data(checked)` resolves where the data lives (the `data_root` argument,
then $DSLC_DATA_ROOT, then the spec's own path relative to the spec file),
runs the source's loader, reads a table's cells as their kinds (missing values
dropped, filled or refused: runtime/data/columns.py), splits (a fraction: a
permutation seeded by `data.seed`, the first part held out; a source of its own;
or the source's native test set), fits the column recipes and the `standardize`/
`min_max` statistics on the training rows (compiler/fitting.py), evaluates the
data block's `inputs`/`targets` expressions with them, and casts and reshapes the
inputs to the model's declared inputs. The splits, the held-out rows and the
batches are the training kit's (dslc/kit/batches.py): `batches` slices the
tensors; no DataLoader, no per-sample Python.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from dslc.errors import UserError
from dslc.compiler import fitting
from dslc.compiler.data_sources import DATA_SOURCES
from dslc.compiler.ir import SourceIR, expr_text, refs
from dslc.compiler.shapes import DTYPES
from dslc.compiler.target_units import column_of, scaled
from dslc.dsl.diagnostics import did_you_mean

from dslc.compiler.numpy_backend import evaluate_column
from dslc.runtime.data import columns as columns_lib
from dslc.runtime.data import sources
from dslc.runtime.data.sources import LoadContext, SourceData
from dslc.runtime.data.preprocessing import fit_shape, preprocessing_for
from dslc.kit.batches import Split, batches, num_batches, split_rows  # noqa: F401 (Split, batches: the kit's)

SPLITS = ("train", "validation", "test")


@dataclass
class LoadedData:
    train: Split
    validation: Split | None
    test: Split | None
    info: dict                        # JSON-able: source, root, counts, fingerprint, notice, labels, preprocessing
    checked: object = None            # the CheckedSpec with its fitted statistics (what trains and evaluates)
    stats: dict = field(default_factory=dict)     # those statistics (fitted_spec applies them to a spec)


def resolve_root(data_root=None, override: str | None = None) -> Path | None:
    """The data root override: the argument, then the spec's own override, then $DSLC_DATA_ROOT."""
    root = data_root or override or os.environ.get("DSLC_DATA_ROOT") or None
    return Path(root).expanduser() if root else None


def data_location(checked, data_root=None) -> tuple[Path, Path | None]:
    """(the folder relative data paths start from: the spec's, the data root override) of a checked spec."""
    path = checked.source.path
    spec_dir = Path(path).resolve().parent if path not in ("<spec>", "-", "") else Path.cwd()
    return spec_dir, resolve_root(data_root, checked.data.root_override)


def load_data(checked, data_root=None, download: bool = True) -> LoadedData:
    """Load, fit, compute, cast, reshape and split the data of a checked spec (raises UserError).

    In order: the source's rows (a table's cells read as their kinds, rows with missing values dropped or
    refused); the split into train/validation/test; the column recipes (fills, categories) and the
    statistics of `standardize`/`min_max` fitted on the training rows; the inputs and targets computed
    with them for every split. `LoadedData.checked` is the spec with those statistics in its expressions.
    """
    data = checked.data
    if data is None:
        raise UserError("the spec has no data block, so there is nothing to load")
    spec_dir, root = data_location(checked, data_root)

    def context(seed, like=None) -> LoadContext:
        return LoadContext(spec_dir, root, download, seed, like)

    main = _load(data.source, context(_nonneg(data.split_seed)))
    checked_labels, loaded_labels = data.source.facts.get("labels"), main.facts.get("labels")
    if checked_labels is not None and loaded_labels is not None and list(checked_labels) != list(loaded_labels):
        raise UserError(f"the {data.source.name} source's classes {_few(loaded_labels)} (in {main.root}) differ from "
                        f"those `dslc check` found ({_few(checked_labels)}): check the spec again, or give them")
    facts = {**data.source.facts, **main.facts}
    notices = [main.notice] if main.notice else []
    read = data.columns_read
    rows = _Rows(main, data.source, read, f"the {data.source.name} source")
    if rows.dropped:
        notices.append(sources._notify(rows.dropped))
    indices, described = split_indices(rows.n, data)
    columns = rows.fit_and_encode(indices["train"])
    stats = {}
    if fitting.fitted_nodes(data.inputs + data.targets):      # standardize, min_max: the training rows' statistics
        train_columns = {k: v[indices["train"]] for k, v in columns.items() if k in read}
        try:
            stats = fitting.fit(data.inputs + data.targets, train_columns, len(indices["train"]))
        except (UserError, ValueError) as err:
            raise UserError(f"fitting the data expressions on the training split: {err}") from None
    fitted = fitted_spec(checked, stats)
    fdata = fitted.data
    whole = _arrays(columns, main, fdata, checked.model, facts, f"the {data.source.name} source")
    if described:                   # fractions held out
        parts = {role: [[a[idx] for a in group] for group in whole] for role, idx in indices.items()}
    else:                           # every row trains: no copy
        parts = {"train": whole}

    for i, role in enumerate(("validation", "test"), start=1):
        setting = getattr(data, role)
        if isinstance(setting, SourceIR):
            src = _load(setting, context((_nonneg(data.split_seed), i), main.facts))
            src_facts = {**setting.facts, **src.facts}
            _same_labels(facts, src_facts, role)
            what = f"the {role} source ({setting.name})"
            split_rows = _Rows(src, setting, read, what, like=rows)
            if split_rows.dropped:
                notices.append(sources._notify(split_rows.dropped))
            split_columns = split_rows.encode_like(rows) if src.test is None else src.test
            parts[role] = _arrays(split_columns, src, fdata, checked.model, facts, what)
            described[role] = f"source {setting.name}" + (" (its test set)" if src.test is not None else "")
            if src.notice:
                notices.append(src.notice)
    if "test" not in parts and data.test is None and main.test is not None:
        parts["test"] = _arrays(main.test, main, fdata, checked.model, facts, f"the test set of {data.source.name}")
        described["test"] = "the source's own test set"

    digest = hashlib.sha256()
    for role in SPLITS:
        for i, a in enumerate([*parts[role][0], *parts[role][1]] if role in parts else []):
            a = np.ascontiguousarray(a)
            digest.update(f"{role}/{i}/{a.dtype}/{a.shape}".encode())
            digest.update(memoryview(a).cast("B"))
    splits = {role: Split([torch.from_numpy(np.ascontiguousarray(a)) for a in parts[role][0]],
                          [torch.from_numpy(np.ascontiguousarray(a)) for a in parts[role][1]])
              for role in parts}
    if rows.recipes:
        facts = _with_fitted_categories(facts, rows.recipes)
    info = {
        "source": data.source.name,
        "root": main.root,
        "counts": {role: splits[role].n if role in splits else 0 for role in SPLITS},
        "splits": described,
        "split_seed": data.split_seed,
        "fingerprint": digest.hexdigest(),
        "notice": "; ".join(notices) if notices else None,
        "labels": list(facts["labels"]) if facts.get("labels") is not None else None,
        "classes": facts.get("classes"),
        "inputs": list(data.input_names),
        "targets": list(data.target_names),
        "preprocessing": preprocessing_for(fitted, facts, rows.recipes, checked.data.targets, stats),
    }
    units = target_units(checked.data, stats)
    if units:
        info["units"] = units
    if rows.dropped_counts:
        info["dropped_missing"] = rows.dropped_counts
    if facts.get("tokenizer"):
        info["vocab_size"] = len(facts["tokenizer"]["vocab"])
    if facts.get("dropped_rows"):
        info["dropped_rows"] = facts["dropped_rows"]
    if data.source.facts.get("_scan"):
        info["scan"] = {data.source.args["path"]: data.source.facts["_scan"]}
    return LoadedData(splits["train"], splits.get("validation"), splits.get("test"), info, fitted, stats)


def fitted_spec(checked, stats: dict):
    """The checked spec with the fitted statistics in its data expressions and metrics (no Fitted node left)."""
    data = checked.data
    fdata = replace(data, inputs=[fitting.resolve(x, stats) for x in data.inputs],
                    targets=[fitting.resolve(x, stats) for x in data.targets])
    train = checked.train
    if train is not None:
        train = replace(train, metrics=[fitting.resolve(m, stats) for m in train.metrics])
    return replace(checked, data=fdata, train=train)


def target_units(data, stats: dict) -> dict:
    """For each target scaled from a column: the column whose units metrics and predictions report in."""
    out = {}
    for name, node in zip(data.target_names, data.targets):
        if scaled(node):
            out[name] = {"column": column_of(node), "target": expr_text(node),
                         "fitted": expr_text(fitting.resolve(node, stats))}
    return out


def _with_fitted_categories(facts: dict, recipes: dict) -> dict:
    """Facts with the fitted categories (class names of a category target: the labels)."""
    facts = dict(facts)
    categories = dict(facts.get("categories") or {})
    categories.update({k: r["categories"] for k, r in recipes.items() if "categories" in r})
    facts["categories"] = categories
    return facts


class _Rows:
    """The rows of a loaded source as the expressions read them: a table's cells parsed, missing values
    dropped or refused, its column recipes fitted on the training rows and applied (runtime/data/columns.py);
    other sources' columns as they are."""

    def __init__(self, loaded: SourceData, source: SourceIR, read: list[str], what: str, like: _Rows | None = None):
        self.loaded, self.what = loaded, what
        self.recipes: dict = {}
        self.dropped, self.dropped_counts = None, {}
        table = loaded.table
        if table is None:
            self.table = None
            self.n = loaded.rows
            return
        wanted = [c for c in read if c in table.cells]
        missing = [c for c in read if c not in table.cells]
        if missing:
            hint = did_you_mean(missing[0], table.header or list(table.cells)) or ""
            hint = hint if hint.startswith("did you mean") else ""
            raise UserError(f"{table.where} has no column '{missing[0]}'" + (f"; {hint}" if hint else "")
                            + f" (columns: {', '.join(table.header or table.cells)})")
        trained = like is not None and like.table is not None          # encoded as the training rows were
        self.plan = like.plan if trained else columns_lib.plans(source.facts, wanted)
        parsed = {c: columns_lib.parse(table, c, self.plan[c].kind) for c in wanted}
        keep = columns_lib.drop_rows(table, parsed, self.plan)
        if len(keep) < table.rows:
            self.dropped_counts = columns_lib.dropped_counts(parsed, self.plan, keep)
            self.dropped = (f"{table.where}: dropped {table.rows - len(keep)} of {table.rows} rows with a missing "
                            f"value (fill=drop): " + ", ".join(f"{k} {v}" for k, v in self.dropped_counts.items()))
            if len(keep) == 0:
                raise UserError(f"{table.where}: every row misses a value of a fill=drop column, so no row is left")
            table = table.take(keep)
            parsed = {c: _taken(p, keep) for c, p in parsed.items()}
        self.table, self.parsed, self.n = table, parsed, table.rows

    def fit_and_encode(self, train: np.ndarray) -> dict:
        """Every column the expressions read, encoded with recipes fitted on the rows `train`."""
        if self.table is None:
            return self.loaded.columns
        self.recipes = {c: columns_lib.fit(self.table, c, p, self.plan[c], train) for c, p in self.parsed.items()}
        return {c: columns_lib.encode(self.table, c, p, self.recipes[c]) for c, p in self.parsed.items()}

    def encode_like(self, training: _Rows) -> dict:
        """A split source's columns, encoded with the training source's recipes."""
        if self.table is None:
            return self.loaded.columns
        if training.table is None:          # the training source is not a table: this file's own cells
            return self.fit_and_encode(np.arange(self.n))
        return {c: columns_lib.encode(self.table, c, p, training.recipes[c]) for c, p in self.parsed.items()}


def _taken(p, keep):
    from dslc.runtime.data.columns import Parsed
    return Parsed(p.kind, p.values[keep], p.missing[keep], [p.marker[i] for i in keep])


def _few(values, k: int = 8) -> str:
    values = [str(v) for v in values]
    return "[" + ", ".join(values[:k]) + (f", ... {len(values)} in all" if len(values) > k else "") + "]"


def _nonneg(seed: int) -> int:
    """A seed numpy accepts (it refuses negative ones)."""
    return seed & (2 ** 63 - 1)


def _load(source: SourceIR, ctx: LoadContext) -> SourceData:
    ctx.facts = source.facts
    loaded = getattr(sources, DATA_SOURCES[source.name].loader)(source.args, ctx)
    if loaded.rows == 0:
        raise UserError(f"the data source {source.name} holds no samples" + (f" ({loaded.root})" if loaded.root else ""))
    return loaded


def _same_labels(facts: dict, other: dict, role: str) -> None:
    a, b = facts.get("labels"), other.get("labels")
    if a is not None and b is not None and list(a) != list(b):
        raise UserError(f"the {role} source's labels {list(b)} differ from the training source's {list(a)}")


# ---------------------------------------------------------------- inputs and targets


def _arrays(columns: dict, src: SourceData, data, model, facts: dict, what: str):
    """(inputs, targets) as numpy arrays: inputs cast and reshaped to the model, targets as int64 or float32."""
    n = len(next(iter(columns.values()))) if columns else 0
    if n == 0:
        raise UserError(f"{what} holds no samples")
    inputs = []
    for expr, label, (name, shape) in zip(data.inputs, data.input_names, model.inputs.items()):
        values = _column(expr, label, columns, n, what)
        dtype = np.dtype(DTYPES[shape.dtype])
        if dtype.kind in "iu" and values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
            raise UserError(f"input {name} is {shape} (whole numbers) but '{label}' in {what} has fractions")
        values = values.astype(dtype, copy=False)
        _finite(values, f"input '{label}'", what)
        try:
            values = fit_shape(values, shape.dims, f"input {name} of model {model.name}", n)
        except UserError as err:
            raise UserError(f"{err} (from '{label}' in {what})") from None
        inputs.append(values)
    targets = []
    classes = facts.get("classes")
    for expr, label in zip(data.targets, data.target_names):
        values = _column(expr, label, columns, n, what)
        if values.dtype.kind in "iu":
            values = values.astype(np.int64, copy=False)
            if classes is not None:
                bad = np.flatnonzero((values < 0) | (values >= classes))
                if bad.size:
                    raise UserError(f"target '{label}' in {what}: label {values.flat[bad[0]]} (sample {bad[0]}) is "
                                    f"outside the {classes} classes 0..{classes - 1}")
        else:
            values = values.astype(np.float32, copy=False)
            _finite(values, f"target '{label}'", what)
        targets.append(values)
    return [inputs, targets]


def _column(expr, label: str, columns: dict, n: int, what: str) -> np.ndarray:
    """One input or target: its IR expression computed over the source's columns (compiler/numpy_backend.py)."""
    for name in refs(expr, "column"):
        if name in columns:
            continue
        available = list(columns)
        hint = did_you_mean(name, available) or ""
        hint = hint if hint.startswith("did you mean") else ""
        raise UserError(f"{what} has no column '{name}'" + (f"; {hint}" if hint else "")
                        + f" (columns: {', '.join(available)})")
    try:
        values = evaluate_column(expr, columns, n)
    except UserError as err:
        raise UserError(f"{what}: {err}") from None
    if len(values) != n:
        raise UserError(f"'{label}' in {what} has {len(values)} rows, not {n}")
    return values


def _finite(values: np.ndarray, label: str, what: str) -> None:
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        rows = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))
        raise UserError(f"{label} in {what} is NaN or infinite in {rows.size} sample(s), the first is sample "
                        f"{rows[0]}; check the expression and the data")


# ---------------------------------------------------------------- splits


def split_indices(n: int, data) -> tuple[dict[str, np.ndarray], dict]:
    """The rows of each split for fractional splits: a seeded permutation, the first parts held out (the source's
    order kept when the data is not shuffled); without fractions, every row trains."""
    fractions = {role: getattr(data, role) for role in ("validation", "test") if isinstance(getattr(data, role), float)}
    if not fractions:
        return {"train": np.arange(n)}, {}
    parts = split_rows(n, fractions, data.split_seed, keep_order=not data.shuffle)   # unshuffled: sequences
    if len(parts["train"]) == 0:
        raise UserError(f"the data has {n} samples: holding out {', '.join(f'{r} {f:g}' for r, f in fractions.items())} "
                        "leaves none to train on")
    return parts, {role: f"{fraction:g} of the data" for role, fraction in fractions.items()}
