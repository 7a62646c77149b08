"""What turns raw inputs into model inputs, recorded at training time and replayed at prediction time.

`preprocessing_for(checked, facts, recipes, targets, stats)` writes the recipe as
a JSON-able dict (kept in summary.json and in the ONNX metadata): the model
inputs' expressions over the raw columns with their fitted statistics (IR), each
table column's recipe (kind, categories, fill value: runtime/data/columns.py),
and for a target scaled from a column the expression that brings the output back
to that column's units. `prepare_inputs(raw, preprocessing)` applies it to an
image array (0-255 or already in [0, 1]), a dict of columns (numbers, category
names; None or NaN where a value is missing), a list of records, or a list of
strings, and returns one array per model input with a leading batch axis;
`to_target_units(outputs, preprocessing)` converts the outputs. numpy only (the
IR's numpy backend replays the recorded expressions); never torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dslc.errors import UserError
from dslc.compiler.shapes import DTYPES
from dslc.compiler.ir import Fitted, Ref, expr_text, from_json, refs, to_json, walk
from dslc.compiler.numpy_backend import evaluate, evaluate_column

from dslc.runtime.data import columns as columns_lib
from dslc.kit import text as text_lib


class InputError(UserError, ValueError):
    """Raw inputs that do not fit the model: wrong columns, sizes or types."""


# ---------------------------------------------------------------- the recipe


def preprocessing_for(checked, facts: dict, recipes: dict | None = None, targets=None, stats=None) -> dict:
    """The preprocessing dict for a checked spec, given the data facts (check-time facts updated by the loader).

    `input_ir` holds each model input's expression over the raw columns as serialised IR (compiler/ir.py
    `to_json`), which prediction replays with the numpy backend; `input_exprs` the same as text, for people.
    `recipes` are the fitted column recipes of a table source; `targets` (the spec's target expressions, before
    fitting) and `stats` (their fitted statistics) give `output_units`: per output, the expression that brings
    it back to the units of the column its target was scaled from. `fitted` says whether the statistics are in
    (a spec exported without its training run has none, and cannot prepare raw inputs).
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
    outputs = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    recipes = {c: recipes[c] for c in raw_columns if c in (recipes or {})}
    out = {
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
        "fitted": not any(isinstance(n, Fitted) for node in data.inputs for n in walk(node)),
    }
    if facts.get("image"):            # an image_folder's transform: any picture becomes what training read
        out["image"] = dict(facts["image"])
    if recipes:
        out["recipes"] = recipes
        out["categories"] = {c: r["categories"] for c, r in recipes.items() if "categories" in r}
        out["fills"] = {c: r["fill"] for c, r in recipes.items() if r.get("fill") is not None}
    units = _output_units(targets if targets is not None else data.targets, outputs, stats)
    if units:
        out["output_units"] = units
    return out


def _output_units(targets, outputs: list[str], stats) -> dict:
    """{output: {"column": ..., "ir": ...}} for a one-output model whose one target is scaled from a column."""
    from dslc.compiler import target_units
    if len(targets) != 1 or len(outputs) != 1 or not target_units.scaled(targets[0]):
        return {}
    target = targets[0]
    y = Ref(name=outputs[0], role="output", shape=target.shape, batched=True)
    inverse = target_units.undo(target, y)
    if stats is not None:
        from dslc.compiler.fitting import resolve
        inverse = resolve(inverse, stats)
    if any(isinstance(n, Fitted) for n in walk(inverse)):
        return {}
    return {outputs[0]: {"column": target_units.column_of(target), "target": expr_text(target),
                         "expr": expr_text(inverse), "ir": to_json(inverse)}}


def to_target_units(outputs: list[np.ndarray], preprocessing: dict, names: list[str]) -> list[np.ndarray]:
    """Outputs with each scaled one converted to the units of its target's column (the others unchanged)."""
    units = (preprocessing or {}).get("output_units") or {}
    if not units:
        return outputs
    out = []
    for name, value in zip(names, outputs):
        if name in units:
            converted = evaluate(from_json(units[name]["ir"]), {name: np.asarray(value, dtype=np.float64)},
                                 len(value))
            value = np.asarray(converted, dtype=np.float32).reshape(np.shape(value))
        out.append(value)
    return out


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


def prepare_inputs(raw: Any, preprocessing: dict, field=None) -> list[np.ndarray]:
    """Model inputs (one array per input, [N, *dims], the declared dtype) from raw inputs.

    `field(i, column)` names sample i's value of a column in messages (a file row, a request's field);
    by default `row i+1, column 'x'`."""
    if "input_ir" not in preprocessing:
        raise InputError("this model was exported by an older dslc that did not record its input expressions; "
                         "export it again with `dslc export RUN`")
    if preprocessing.get("fitted") is False:
        raise InputError("this model was exported without its training run, so the statistics its inputs are "
                         "scaled with (standardize, min_max) are unknown; export it from the run: `dslc export RUN`")
    columns = _raw_columns(raw, preprocessing, field or (lambda i, c: f"row {i + 1}, column '{c}'"))
    n = len(next(iter(columns.values())))
    out = []
    for data, spec in zip(preprocessing["input_ir"], preprocessing["inputs"]):
        value = evaluate_column(from_json(data), columns, n)
        value = fit_shape(value, spec["shape"], f"input '{spec['name']}'", n)
        if np.issubdtype(np.dtype(spec["dtype"]), np.floating) and not np.all(np.isfinite(value)):
            raise InputError(f"input '{spec['name']}' holds NaN or infinite values")
        out.append(np.ascontiguousarray(value, dtype=spec["dtype"]))
    return out


def _raw_columns(raw: Any, pre: dict, field) -> dict[str, np.ndarray]:
    """The raw input as named columns, each with a sample axis and the shape training saw (a table's columns
    encoded with their recipes: categories as indices, missing values filled)."""
    names = pre["columns"]
    if pre["kind"] == "text":
        return {names[0]: _encode_texts(raw, pre)}
    if pre["kind"] == "image" and pre.get("image"):
        return {names[0]: _pictures(raw, names[0], pre["image"], field)}
    recipes = pre.get("recipes") or {}
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
        if name in recipes:
            values = _encoded(given[name], recipes[name], name, field)
            if rows is not None and len(values) != rows:
                raise InputError(f"the columns have different numbers of samples ({rows} and {len(values)} for "
                                 f"'{name}')")
            rows = len(values)
            columns[name] = values
            continue
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


def _pictures(raw, name: str, spec: dict, field) -> np.ndarray:
    """Pictures of any size (file paths, file bytes, pixel arrays [H, W] or [H, W, C]; a batch of them) through
    the recorded image transform: [N, C, H, W] as training read them."""
    from dslc.runtime.data import images
    if isinstance(raw, dict):
        if name not in raw:
            raise InputError(f"missing input column(s) {name}; the model reads {name}")
        raw = raw[name]
    elif isinstance(raw, (list, tuple)) and raw and all(isinstance(r, dict) for r in raw):
        missing = [i for i, r in enumerate(raw) if name not in r]
        if missing:
            raise InputError(f"row {missing[0]} lacks a column; each row needs {name}")
        raw = [r[name] for r in raw]
    if isinstance(raw, np.ndarray):
        if raw.ndim == 2:
            items = [raw]
        elif raw.ndim in (3, 4):
            items = list(raw)              # [N, H, W] grey or [N, H, W, C] colour
        else:
            raise InputError(f"pictures are [height, width] or [N, height, width(, channels)] pixel arrays; got "
                             f"shape {list(raw.shape)}")
    elif isinstance(raw, (str, bytes, bytearray)) or hasattr(raw, "__fspath__"):
        items = [raw]
    elif isinstance(raw, (list, tuple)) and raw:
        items = list(raw)
    else:
        raise InputError("give pictures as files, file bytes or pixel arrays")
    try:
        return images.prepare(items, spec, lambda i: field(i, name))
    except UserError as err:
        raise InputError(str(err)) from None


def _encoded(values, recipe: dict, name: str, field) -> np.ndarray:
    """One table column's raw values (numbers or names, None/NaN missing) encoded with its recipe."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        values = [values]
    kind = recipe["kind"]
    n = len(values)
    missing = np.zeros(n, dtype=bool)
    if kind == "text":
        out = np.empty(n, dtype=object)
        for i, v in enumerate(values):
            if v is None:
                missing[i] = True
            elif isinstance(v, str):
                out[i] = v
            else:
                raise InputError(f"{field(i, name)} must be a text, not {v!r}")
    elif kind == "category":
        out = np.empty(n, dtype=object)
        for i, v in enumerate(values):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                missing[i] = True
            elif isinstance(v, (str, int, float)) and not isinstance(v, bool):
                out[i] = columns_lib.category_name(v)
            else:
                raise InputError(f"{field(i, name)} must be one of its categories, not {v!r}")
    else:
        out = np.zeros(n, dtype=np.float64 if kind == "number" else np.int64)
        for i, v in enumerate(values):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                missing[i] = True
            elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                if kind == "integer" and not float(v).is_integer():
                    raise InputError(f"{field(i, name)} must be a whole number, not {v!r}")
                out[i] = v
            else:
                raise InputError(f"{field(i, name)} must be a number, not {v!r}")
    parsed = columns_lib.Parsed(kind, out, missing, [None] * n)
    try:
        return columns_lib.encode_values(parsed, recipe, lambda i: field(i, name), name)
    except UserError as err:
        raise InputError(str(err)) from None


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
