"""What turns raw inputs into model inputs, recorded at training time and replayed at prediction time.

`preprocessing_for(checked, facts)` writes the recipe as a JSON-able dict (kept
in summary.json and in the ONNX metadata); `prepare_inputs(raw, preprocessing)`
applies it to an image array (0-255 or already in [0, 1]), a dict of numeric
columns, or a list of strings, and returns one array per model input with a
leading batch axis. numpy only (the IR's numpy backend replays the recorded
input expressions); never torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dslc.errors import UserError
from dslc.compiler.shapes import DTYPES
from dslc.compiler.ir import expr_text, from_json, refs, to_json
from dslc.compiler.numpy_backend import evaluate_column

from dslc.runtime.data import text as text_lib


class InputError(UserError, ValueError):
    """Raw inputs that do not fit the model: wrong columns, sizes or types."""


# ---------------------------------------------------------------- the recipe


def preprocessing_for(checked, facts: dict) -> dict:
    """The preprocessing dict for a checked spec, given the data facts (check-time facts updated by the loader).

    `input_ir` holds each model input's expression over the raw columns as serialised IR (compiler/ir.py
    `to_json`), which prediction replays with the numpy backend; `input_exprs` the same as text, for people.
    """
    data, model = checked.data, checked.model
    kind = facts.get("kind", "table")
    raw_columns: list[str] = []
    for node in data.inputs:
        raw_columns += [n for n in refs(node, "column") if n not in raw_columns]
    known = facts.get("columns") if isinstance(facts.get("columns"), dict) else {}
    column_shapes = {}
    for name in raw_columns:
        shape = known.get(name)
        dims = list(shape.dims) if shape is not None else []
        if kind == "sequence" and dims:
            dims[0] = "T"          # windows have a fixed length in training; any length at prediction
        column_shapes[name] = dims
    n_out = len(model.outputs)
    return {
        "kind": kind,
        "inputs": [{"name": n, "dtype": DTYPES[s.dtype], "shape": list(s.dims)} for n, s in model.inputs.items()],
        "outputs": ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)],
        "scale": facts.get("scale"),
        "columns": raw_columns,
        "column_shapes": column_shapes,
        "input_exprs": [expr_text(node) for node in data.inputs],
        "input_ir": [to_json(node) for node in data.inputs],
        "tokenizer": facts.get("tokenizer"),
        "labels": list(facts["labels"]) if facts.get("labels") is not None else None,
        "task": _task(checked),
    }


def _task(checked) -> str:
    """classification (class scores vs class labels), reconstruction (the loss compares with an input), regression."""
    from dslc.compiler.losses import LOSSES
    train = checked.train
    if train is None or train.loss.node is None:
        model, targets = checked.model, checked.data.targets
        classify = (len(model.outputs) == 1 and model.outputs[0].shape.rank == 1 and len(targets) == 1
                    and targets[0].shape.is_int)
        return "classification" if classify else "regression"
    node = train.loss.node
    if refs(node, "input") and not refs(node, "target"):
        return "reconstruction"
    if any(LOSSES[c.name].target == "class" for c in train.loss.calls()):
        return "classification"
    return "regression"


# ---------------------------------------------------------------- shapes


def _dims_text(dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _fits(shape, dims) -> bool:
    return len(shape) == len(dims) and all(isinstance(d, str) or d == s for d, s in zip(dims, shape))


def fit_shape(values, dims, what: str, n: int | None = None) -> np.ndarray:
    """values as [N, *dims]: reshaped to the declared per-sample dims (a symbolic dim takes what it is given).

    With `n` the array already has its sample axis of n rows. Without, a single sample may come without
    one: an array that fits the dims exactly, or has fewer axes than they do, is one sample.
    """
    a = np.asarray(values)
    dims = list(dims)
    symbolic = [i for i, d in enumerate(dims) if not isinstance(d, int)]
    per_sample = math.prod(d for d in dims if isinstance(d, int))
    if a.size == 0:
        raise InputError(f"{what}: no values")
    if not symbolic:
        if a.size % per_sample or (n is not None and a.size != n * per_sample):
            rows = f" for {n} samples" if n is not None else ""
            raise InputError(f"{what} takes {per_sample} value(s) per sample {_dims_text(dims)}, but got an array "
                             f"of shape {list(a.shape)}{rows}")
        return a.reshape(-1, *dims)
    if n is not None:
        if a.ndim == 0 or a.shape[0] != n:
            raise InputError(f"{what}: expected {n} samples, got an array of shape {list(a.shape)}")
        batched = a
    elif a.ndim == len(dims) + 1:
        batched = a
    elif a.ndim < len(dims) or _fits(a.shape, dims):
        batched = a[None]
    else:
        batched = a
    shape = batched.shape[1:]
    if _fits(shape, dims):
        return batched
    if len(symbolic) == 1 and math.prod(shape) % per_sample == 0 and math.prod(shape) > 0:
        return batched.reshape(batched.shape[0], *(-1 if i in symbolic else d for i, d in enumerate(dims)))
    raise InputError(f"{what} takes samples of shape {_dims_text(dims)}, but got an array of shape {list(a.shape)}")


# ---------------------------------------------------------------- applying the recipe


def prepare_inputs(raw: Any, preprocessing: dict) -> list[np.ndarray]:
    """Model inputs (one array per input, [N, *dims], the declared dtype) from raw inputs."""
    columns = _raw_columns(raw, preprocessing)
    n = len(next(iter(columns.values())))
    if "input_ir" not in preprocessing:
        raise InputError("this model was exported by an older dslc that did not record its input expressions; "
                         "export it again with `dslc export RUN`")
    out = []
    for data, spec in zip(preprocessing["input_ir"], preprocessing["inputs"]):
        value = evaluate_column(from_json(data), columns, n)
        value = fit_shape(value, spec["shape"], f"input '{spec['name']}'", n)
        if np.issubdtype(np.dtype(spec["dtype"]), np.floating) and not np.all(np.isfinite(value)):
            raise InputError(f"input '{spec['name']}' holds NaN or infinite values")
        out.append(np.ascontiguousarray(value, dtype=spec["dtype"]))
    return out


def _raw_columns(raw: Any, pre: dict) -> dict[str, np.ndarray]:
    """The raw input as named columns, each with a sample axis and the shape training saw."""
    names = pre["columns"]
    if pre["kind"] == "text":
        return {names[0]: _encode_texts(raw, pre)}
    if isinstance(raw, dict):
        given = dict(raw)
    elif isinstance(raw, (list, tuple)) and raw and all(isinstance(r, dict) for r in raw):
        given = {k: [r.get(k) for r in raw] for k in names}
        missing_rows = [i for i, r in enumerate(raw) if any(k not in r for k in names)]
        if missing_rows:
            raise InputError(f"row {missing_rows[0]} lacks a column; each row needs {', '.join(names)}")
    elif len(names) == 1:
        given = {names[0]: raw}
    else:
        raise InputError(f"give the inputs as a dict of columns: {', '.join(names)}")
    missing = [k for k in names if k not in given]
    if missing:
        raise InputError(f"missing input column(s) {', '.join(missing)}; the model reads {', '.join(names)}")
    columns, rows = {}, None
    for name in names:
        try:
            values = np.asarray(given[name])
        except ValueError:
            raise InputError(f"column '{name}' is ragged: every sample must have the same shape") from None
        if values.dtype.kind not in "biuf":
            raise InputError(f"column '{name}' must hold numbers, not {values.dtype}")
        if pre["kind"] == "image" and pre.get("scale"):
            values = _scaled_image(values, pre["scale"])
        values = fit_shape(values.astype(np.float64 if pre["kind"] != "image" else np.float32),
                           pre["column_shapes"].get(name, []), f"column '{name}'")
        if rows is not None and len(values) != rows:
            raise InputError(f"the columns have different numbers of samples ({rows} and {len(values)} for '{name}')")
        rows = len(values)
        columns[name] = values
    return columns


def _scaled_image(values: np.ndarray, scale: float) -> np.ndarray:
    """Pixels as training saw them: integers (or floats above 1) are 0-255 and get scaled; other floats are kept."""
    if values.dtype.kind in "biu" or (values.size and float(np.max(values)) > 1.0):
        out = values.astype(np.float32)
        out *= np.float32(scale)
        return out
    return values.astype(np.float32)


def _encode_texts(raw: Any, pre: dict) -> np.ndarray:
    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, np.ndarray):
        raw = raw.tolist()
    if not isinstance(raw, (list, tuple)) or not raw or not all(isinstance(t, str) for t in raw):
        raise InputError("this model reads text: give a string or a list of strings")
    tok = pre["tokenizer"]
    return text_lib.encode_texts(raw, tok["vocab"], tok["max_len"], tok["kind"], tok["lowercase"])
