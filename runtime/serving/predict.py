"""Predictions: raw inputs through the model's recorded preprocessing, to labelled results.

A model here is anything with the face of `InferenceSession`: `.inputs`
(InputSpec list, batch axis first), `.output_names`, `.preprocessing`,
`.labels`, `.provider_line` and `.run(arrays, batch)`. An exported .onnx file
opens as an InferenceSession (onnxruntime, never torch); a training run
directory is opened by the command layer (dslc/commands/run_model.py), which
may import torch. `dslc predict` and `dslc serve` share the steps here:
`model_inputs`, `predictions`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from dslc.errors import UserError

from dslc.runtime.serving.inference import InferenceSession, InputSpec, check_inputs
from dslc.runtime.serving.input_files import RawInputs, read_inputs
from dslc.runtime.serving.preprocess import in_target_units
from dslc.runtime.serving.preprocess import prepare as _prepare


# ---------------------------------------------------------------- models


def open_model(path, provider: str | None = None) -> InferenceSession:
    """An exported .onnx file as an InferenceSession (run directories are the command layer's business)."""
    path = Path(path)
    if path.exists() and not path.is_dir() and path.suffix.lower() != ".onnx":
        raise UserError(f"{path}: expected an .onnx model or a training run directory")
    return InferenceSession(path, provider)


# ---------------------------------------------------------------- inputs


def _per_sample_size(spec: InputSpec) -> int | None:
    dims = spec.shape[1:]
    return math.prod(dims) if all(isinstance(d, int) for d in dims) else None


def _image_size(spec: InputSpec, prep: dict) -> tuple[int, int] | None:
    """(height, width) of the pictures the model reads: the recorded image column's shape, else the input's."""
    columns = prep.get("columns") or []
    recorded = (prep.get("column_shapes") or {}).get(columns[0]) if len(columns) == 1 else None
    dims = [d for d in (recorded if recorded is not None else spec.shape[1:]) if d != 1]
    if len(dims) >= 2 and all(isinstance(d, int) for d in dims[-2:]):
        return dims[-2], dims[-1]
    size = math.prod(dims) if dims and all(isinstance(d, int) for d in dims) else None
    if size and math.isqrt(size) ** 2 == size:
        return math.isqrt(size), math.isqrt(size)
    return None


def add_batch_axis(arrays: list[np.ndarray], specs: list[InputSpec]) -> list[np.ndarray]:
    """One sample (rank one below the declared rank) becomes a batch of one; others pass unchanged."""
    return [a[None] if np.ndim(a) == len(s.shape) - 1 else a for a, s in zip(arrays, specs)]


def model_inputs(raw: RawInputs, model) -> list[np.ndarray]:
    """The model's inputs for what a file or request holds, using the model's recorded preprocessing."""
    prep = model.preprocessing or {}
    kind = prep.get("kind")
    if raw.kind == "arrays" and kind == "image" and len(model.inputs) == 1 and isinstance(raw.value, list) \
            and np.asarray(raw.value[0]).dtype == np.uint8:
        raw = RawInputs("image", np.asarray(raw.value[0]), raw.source)   # 0-255 pixels, not model inputs
    if raw.kind == "arrays":
        arrays = _arrays_by_input(raw, model)
        return add_batch_axis(arrays, model.inputs)
    if raw.kind == "image":
        return _image_inputs(raw, model, prep)
    if raw.kind == "columns":
        return _column_inputs(raw, model, prep)
    if raw.kind == "rows":
        return _row_inputs(raw, model, prep)
    if raw.kind == "records":
        return _record_inputs(raw, model, prep)
    if raw.kind == "text":
        if not prep.get("tokenizer"):
            raise UserError(f"{raw.source}: this model records no tokenizer, so it does not read text")
        return _prepare(list(raw.value), prep, raw.source)
    raise ValueError(f"unknown raw input kind {raw.kind!r}")


def _arrays_by_input(raw: RawInputs, model) -> list[np.ndarray]:
    names = [s.name for s in model.inputs]
    if isinstance(raw.value, dict):
        missing = [n for n in names if n not in raw.value]
        extra = [n for n in raw.value if n not in names]
        if missing or extra:
            what = "; ".join(filter(None, [missing and f"missing {', '.join(missing)}",
                                           extra and f"unknown {', '.join(extra)}"]))
            raise UserError(f"{raw.source}: inputs are named {', '.join(names)} ({what})")
        return [raw.value[n] for n in names]
    if len(raw.value) != len(names):
        raise UserError(f"{raw.source}: the model takes {len(names)} inputs ({', '.join(names)}); "
                        f"give them as a .npz archive with those names")
    return list(raw.value)


def _image_inputs(raw: RawInputs, model, prep) -> list[np.ndarray]:
    if prep.get("kind") != "image":
        takes = f"{prep['kind']} inputs" if prep.get("kind") else "no recorded image preprocessing"
        raise UserError(f"{raw.source}: this model has {takes}; it does not read images")
    if prep.get("image"):                  # any size: resized and normalised as in training
        files = raw.files
        pixels = np.asarray(raw.value) if not files else None
        items = list(files) if files else ([pixels] if pixels.ndim == 2 else list(pixels))
        names = files or [f"picture {i}" for i in range(len(items))]
        return _prepare(items, prep, raw.source if not files or len(files) > 1 else "", lambda i, c: names[i])
    if raw.value is None:
        raise UserError(f"{raw.source}: the pictures differ in size; this model takes "
                        f"{'x'.join(map(str, _image_size(model.inputs[0], prep) or ()))} grey images")
    pixels = np.asarray(raw.value)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim != 3:
        raise UserError(f"{raw.source}: images must be grey pixels [N, height, width]; got shape {list(pixels.shape)}")
    size = _image_size(model.inputs[0], prep)
    if size and tuple(pixels.shape[1:]) != size:
        h, w = pixels.shape[1:]
        raise UserError(f"{raw.source}: the image is {w}x{h} pixels; the model takes {size[1]}x{size[0]} grey images")
    return _prepare(pixels, prep, raw.source)


def _wide_column(prep: dict) -> str | None:
    """The one raw column the model reads when it holds several values per sample (pixels, a sequence)."""
    columns = prep.get("columns") or []
    if len(columns) != 1:
        return None
    dims = (prep.get("column_shapes") or {}).get(columns[0])
    return columns[0] if dims else None


def _file_rows(raw: RawInputs):
    """How a file's sample i and column c are named in messages: its line, or its record."""
    if raw.kind == "records":
        return lambda i, c: f"record {i}, field '{c}'"
    lines = raw.lines
    return lambda i, c: f"row {lines[i] if lines else i + 1}, column '{c}'"


def _record_inputs(raw: RawInputs, model, prep) -> list[np.ndarray]:
    """Records from a .json/.jsonl file: one object per sample with the recorded columns as fields."""
    wanted = prep.get("columns") or [s.name for s in model.inputs]
    for i, record in enumerate(raw.value):
        missing = [c for c in wanted if c not in record]
        if missing:
            raise UserError(f"{raw.source}: record {i} has no field {', '.join(map(repr, missing))}; the model reads "
                            f"{', '.join(wanted)}")
    if not prep.get("columns"):
        return [np.asarray([r[s.name] for r in raw.value]) for s in model.inputs]
    return _prepare([{c: r[c] for c in wanted} for r in raw.value], prep, raw.source, _file_rows(raw))


def _column_inputs(raw: RawInputs, model, prep) -> list[np.ndarray]:
    """A .csv with a header: the recorded columns by name (or a table of pixels / values for one wide column)."""
    columns = raw.value
    wanted = prep.get("columns")
    categories = {c for c, r in (prep.get("recipes") or {}).items() if r.get("kind") == "category"}
    for c in (wanted or columns):
        if c in (raw.bad or {}) and c in columns and c not in categories:
            raise UserError(f"{raw.source}: {raw.bad[c]}")
    if wanted and all(c in columns for c in wanted):
        return _prepare({c: columns[c] for c in wanted}, prep, raw.source, _file_rows(raw))
    if raw.bad:                  # names in a file read as rows of numbers: say which cell is not a number
        first = next(iter(raw.bad))
        raise UserError(f"{raw.source}: {raw.bad[first]}")
    table = RawInputs("rows", np.stack(list(columns.values()), axis=1), raw.source)
    if wanted:
        if _wide_column(prep):
            return _row_inputs(table, model, prep)
        missing = [c for c in wanted if c not in columns]
        raise UserError(f"{raw.source}: no column {', '.join(repr(c) for c in missing)} "
                        f"(the model reads {', '.join(wanted)}; the file has {', '.join(columns)})")
    names = [s.name for s in model.inputs]
    if all(n in columns for n in names):                 # no recorded preprocessing: one column per input
        return [columns[n] for n in names]
    return _row_inputs(table, model, prep)


def _row_inputs(raw: RawInputs, model, prep) -> list[np.ndarray]:
    """A numeric table, one sample per row: the values of one wide column, the recorded columns in
    order, or (without recorded preprocessing) the one input's values."""
    rows = raw.value
    wanted = prep.get("columns") or []
    wide = _wide_column(prep)
    if wide:
        dims = prep["column_shapes"][wide]
        if all(isinstance(d, int) for d in dims) and math.prod(dims) != rows.shape[1]:
            raise UserError(f"{raw.source}: rows have {rows.shape[1]} values; the model reads {math.prod(dims)} "
                            f"per sample (column '{wide}' of shape {list(dims)})")
        return _prepare({wide: rows}, prep, raw.source)
    if wanted and rows.shape[1] == len(wanted):
        return _prepare({c: rows[:, i] for i, c in enumerate(wanted)}, prep, raw.source)
    if wanted:
        raise UserError(f"{raw.source}: rows have {rows.shape[1]} values; the model reads {len(wanted)} "
                        f"column(s) ({', '.join(wanted)}); add a header naming them")
    if len(model.inputs) == 1:
        spec = model.inputs[0]
        size = _per_sample_size(spec)
        if size == rows.shape[1]:
            return [rows.reshape((rows.shape[0], *spec.shape[1:]))]
        if size is not None:
            raise UserError(f"{raw.source}: rows have {rows.shape[1]} values; input '{spec.name}' "
                            f"takes {size} per sample ({spec.describe()})")
    names = ", ".join(s.name for s in model.inputs)
    raise UserError(f"{raw.source}: cannot tell which columns feed the model's inputs ({names}); "
                    f"name the columns after the inputs")


# ---------------------------------------------------------------- outputs


def model_outputs(model, outputs: list[np.ndarray]) -> list[np.ndarray]:
    """What the model answers, in the units its targets came in: an output trained on a scaled target
    (`standardize(body_mass_g)`, `price / 100`) converted back by the recorded preprocessing."""
    return in_target_units(outputs, model.preprocessing or {}, list(model.output_names))


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def is_classifier(model, outputs: list[np.ndarray]) -> bool:
    """One [N, classes] output from a model recorded as a classifier (or, with no task recorded, labels that fit)."""
    labels = model.labels
    task = (model.preprocessing or {}).get("task")
    if len(outputs) != 1 or outputs[0].ndim != 2 or task not in (None, "classification"):
        return False
    if labels is not None and outputs[0].shape[1] != len(labels):
        return False
    return task == "classification" or labels is not None


def _value(x):
    x = np.asarray(x)
    return x.item() if x.ndim == 0 else x.tolist()


def predictions(model, outputs: list[np.ndarray], float32: bool = False) -> list[dict]:
    """One dict per sample: label, class, probability and {label: probability} for classifiers;
    {output name: value} otherwise.

    Values are Python numbers and lists; with `float32` they stay numpy float32 scalars and arrays
    (for orjson, which writes them in their shortest form: 0.1859, not 0.18590061366558075)."""
    if is_classifier(model, outputs):
        scores = outputs[0].astype(np.float64)
        already = np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-4)
        probs = scores if already else softmax(scores)
        best = probs.argmax(axis=1)
        labels = model.labels
        names = [str(label) for label in labels] if labels else [str(c) for c in range(probs.shape[1])]
        if float32:
            probs = probs.astype(np.float32)
            return [{"label": labels[c] if labels else int(c), "class": int(c), "probability": p[c],
                     "probabilities": dict(zip(names, p))} for c, p in zip(best.tolist(), probs)]
        return [{"label": labels[c] if labels else int(c), "class": int(c), "probability": float(p[c]),
                 "probabilities": dict(zip(names, p.tolist()))} for c, p in zip(best, probs)]
    if float32:
        outputs = [out.astype(np.float32) if out.dtype.kind == "f" else out for out in outputs]
        return [{name: out[i] for name, out in zip(model.output_names, outputs)} for i in range(len(outputs[0]))]
    return [{name: _value(out[i]) for name, out in zip(model.output_names, outputs)}
            for i in range(len(outputs[0]))]


def _short(value) -> str:
    array = np.asarray(value)
    if array.ndim == 0:
        return f"{array.item():.6g}"
    return np.array2string(array, precision=4, threshold=8, edgeitems=3, max_line_width=10_000)


def format_table(rows: list[dict], texts: list[str] | None = None, heading: str = "text") -> str:
    """A plain table, one line per sample (with the text, or the file, the sample came from)."""
    if rows and "label" in rows[0]:
        header, lines = ["sample", "label", "probability"], [[str(i), str(r["label"]), f"{r['probability']:.4f}"]
                                                             for i, r in enumerate(rows)]
    else:
        names = list(rows[0]) if rows else []
        header = ["sample", *names]
        lines = [[str(i), *(_short(r[n]) for n in names)] for i, r in enumerate(rows)]
    if texts is not None:
        header.append(heading)
        for line, text in zip(lines, texts):
            line.append(text if len(text) <= 60 else text[:57] + "...")
    widths = [max(len(row[c]) for row in [header, *lines]) for c in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *lines])


def check_out_path(path, output_names: list[str]) -> str:
    """The format --out asks for (npy, npz, jsonl), checked before any work is done."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz", ".jsonl"):
        raise UserError(f"--out {path}: write .npy, .npz or .jsonl")
    if not path.parent.is_dir():
        raise UserError(f"--out {path}: folder {path.parent} does not exist")
    if suffix == ".npy" and len(output_names) != 1:
        raise UserError(f"--out {path}: the model has {len(output_names)} outputs "
                        f"({', '.join(output_names)}); write .npz or .jsonl instead")
    return suffix[1:]


def write_predictions(path, model, outputs: list[np.ndarray], rows: list[dict]) -> None:
    """Raw outputs to .npy (one output) or .npz (by name), or one JSON line per sample to .jsonl."""
    kind = check_out_path(path, model.output_names)
    if kind == "npy":
        np.save(path, outputs[0])
    elif kind == "npz":
        np.savez(path, **dict(zip(model.output_names, outputs)))
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)


# ---------------------------------------------------------------- the command


def predict_file(model, input_path, batch: int = 256, out=None) -> int:
    """`dslc predict` once the model is open: read, check, run, then print a table or write `out`."""
    import sys
    if batch < 1:
        raise UserError(f"--batch: the batch size must be at least 1; got {batch}")
    if out:
        check_out_path(out, model.output_names)
    raw = read_inputs(input_path)
    inputs = check_inputs(model_inputs(raw, model), model.inputs)   # every input error before any output
    print(model.provider_line, file=sys.stderr)
    outputs = model_outputs(model, model.run(inputs, batch=batch))
    rows = predictions(model, outputs)
    if out:
        write_predictions(out, model, outputs, rows)
        print(f"wrote {len(rows)} prediction(s) to {out}")
    else:
        if raw.kind == "text":
            print(format_table(rows, raw.value))
        elif raw.files and len(raw.files) > 1:
            print(format_table(rows, [Path(f).name for f in raw.files], "file"))
        else:
            print(format_table(rows))
    return 0
