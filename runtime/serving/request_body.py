"""A /predict body to model inputs, every refusal naming the JSON field at fault.

The forms (README "Serving" shows each):

    [{"t_u": 35.7}, {"t_u": 55.9}]                  records: one object per sample
    {"instances": [{"t_u": 35.7}, ...]}             the same, wrapped (TF Serving / KServe v1 style)
    {"t_u": 35.7}                                   one record
    {"inputs": {"image": [[[...]]]}}                model inputs by name (or a list, one per input)
    {"text": ["a fine film", ...]}, {"image": [[...]]}, {"columns": {"t_u": [35.7, 55.9]}}
                                                    raw values the recorded preprocessing reads

Records hold the model's fields (see model_io.ModelIO): with recorded
preprocessing, the raw columns it reads, replayed exactly as in training;
without, the input tensors by name. JSON is decoded strictly (no NaN or
Infinity tokens, at most 1024 levels deep).
"""

from __future__ import annotations

import base64
import binascii
import math

import numpy as np
import orjson

from dslc.compiler.column_kinds import category_name
from dslc.errors import UserError

from dslc.runtime.serving.input_files import RawInputs
from dslc.runtime.serving.preprocess import prepare
from dslc.runtime.serving.predict import add_batch_axis, model_inputs

FORMS = ("instances", "inputs", "text", "columns", "image")


class RequestError(Exception):
    """A request the server refuses; `status` is the HTTP status (400 unless said otherwise)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode(data: bytes):
    """The JSON value of a body, or a RequestError that says what is wrong with it."""
    if not data.strip():
        raise RequestError("the body is empty; send a JSON object such as {\"instances\": [...]}")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as err:
        message = str(err)
        if "depth limit" in message:
            raise RequestError("the body is not valid JSON: it is nested more than 1024 levels deep") from None
        if "infinity" in message:
            raise RequestError(f"the body is not valid JSON: a number is too large ({message})") from None
        raise RequestError(f"the body is not valid JSON: {message}") from None


def request_inputs(body, io) -> list[np.ndarray]:
    """The model's inputs (batch axis first) for a decoded /predict body."""
    if isinstance(body, list):
        return records(body, io, "records")
    if not isinstance(body, dict):
        raise RequestError('the body must be a JSON object such as {"instances": [...]} or a list of records')
    given = [k for k in FORMS if k in body]
    if len(given) > 1:
        raise RequestError(f"give one of {', '.join(FORMS)}; the body has {' and '.join(given)}")
    pictures = {f.name for f in io.fields if f.kind == "picture"}          # {"image": ...} is then one record
    if len(given) == 1 and len(body) == 1 and not (given[0] in io.field_names and (
            given[0] not in ("text", "image") or given[0] in pictures)):
        key, value = given[0], body[given[0]]
        if key == "instances":
            if not isinstance(value, list):
                raise RequestError('"instances" must be a list of records, one object per sample')
            return records(value, io, "instances")
        if key == "inputs":
            return tensor_inputs(value, io)
        return raw_inputs(key, value, io)
    fields = set(io.field_names) | set(io.tensor_names)
    unknown = [k for k in body if k not in fields]
    if not body or unknown:
        what = f"unknown field(s) {', '.join(map(repr, unknown))}; " if unknown else "the body is an empty object; "
        raise RequestError(what + f"send records with fields {', '.join(io.field_names)} "
                           f'(as a list, or as {{"instances": [...]}}), or {{"inputs": {{...}}}}')
    return records([body], io, "record", single=True)


# ---------------------------------------------------------------- records


def records(items: list, io, where: str, single: bool = False) -> list[np.ndarray]:
    """One sample per record, each an object {field: value}; `where` names the list in messages
    (`instances[3].t_u`), or the record itself when `single`."""
    if not items:
        raise RequestError(f"{where} holds no records; give at least one")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise RequestError(f"{where}[{i}] must be an object {{field: value}}; got {_json_type(item)}")
    fields = io.fields
    if io.via_preprocessing and set(items[0]) == set(io.tensor_names) and set(items[0]) != set(io.field_names):
        fields = io.tensors                               # model inputs given by name, past the preprocessing
    names = [f.name for f in fields]
    for i, item in enumerate(items):
        missing = [n for n in names if n not in item]
        unknown = [k for k in item if k not in names]
        if missing or unknown:
            problem = (f"has no field {', '.join(map(repr, missing))}" if missing
                       else f"has unknown field {', '.join(map(repr, unknown))}")
            raise RequestError(f"{_at(where, i, single)} {problem}; the model reads {', '.join(names)}")
    columns = {f.name: _column(f, [item[f.name] for item in items], where, single) for f in fields}
    if fields is io.tensors or not io.via_preprocessing:
        return [columns[n] for n in names]
    if io.preprocessing.get("kind") == "text":
        raw = columns[names[0]]
    else:
        raw = columns
    try:
        arrays = prepare(raw, io.preprocessing, "", lambda i, name: _at(where, i, single, name))
    except UserError as err:
        message = str(err)
        raise RequestError(message if message.startswith(where) else f"{where}: {message}") from None
    if any(len(a) != len(items) for a in arrays):
        raise RequestError(f"{where}: each record must hold one sample; {len(items)} records gave "
                           f"{len(arrays[0])} samples (fields: " + "; ".join(f"{f.name}: {f.describe()}" for f in fields)
                           + ")")
    return arrays


def _at(where: str, i: int, single: bool, name: str | None = None) -> str:
    """The JSON path of record i (or of its field `name`): `instances[3].t_u`, or `record.t_u` for one record."""
    path = where if single else f"{where}[{i}]"
    return f"{path}.{name}" if name else path


def _column(field, values: list, where: str, single: bool = False):
    """One field's values over the records, checked: strings for text, numbers of the field's shape otherwise."""
    if field.kind == "text":
        for i, v in enumerate(values):
            if not isinstance(v, str) and not (v is None and field.nullable):
                raise RequestError(f"{_at(where, i, single, field.name)} must be a string; got {_json_type(v)}")
        return values
    if field.kind == "picture":
        return [_picture(v, _at(where, i, single, field.name)) for i, v in enumerate(values)]
    if field.kind == "category":
        allowed = set(field.categories)
        out = []
        for i, v in enumerate(values):
            if v is None and field.nullable:
                out.append(None)
                continue
            if v is None:
                raise RequestError(f"{_at(where, i, single, field.name)} is null, and the model was trained with no "
                                   f"missing {field.name}; give one of {', '.join(map(repr, field.categories))}")
            name = category_name(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
            if not isinstance(name, str) or name not in allowed:
                raise RequestError(f"{_at(where, i, single, field.name)}: unknown category {v!r}; "
                                   f"the model knows {', '.join(map(repr, field.categories))}")
            out.append(name)
        return out
    if field.nullable and any(v is None for v in values):
        values = [float("nan") if v is None else v for v in values]
    try:
        array = np.asarray(values)
    except ValueError:
        array = None
    want = _fixed_size(field.shape)
    if array is None or array.dtype.kind not in "biuf" or (want is not None and array[0].size != want):
        for i, v in enumerate(values):                  # find the record at fault
            _check_one(field, v, _at(where, i, single, field.name))
        raise RequestError(f"{where}: the values of field '{field.name}' differ in shape from record to record; "
                           f"each must be {field.describe()}")
    if array.dtype.kind == "b":
        raise RequestError(f"{where}: field '{field.name}' must hold numbers, not true/false")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array) | (np.isnan(array) if field.nullable else False)):
        raise RequestError(f"{where}: field '{field.name}' holds a number too large for a float")
    return array


def _check_one(field, value, where: str) -> None:
    if value is None or isinstance(value, (str, dict, bool)):
        raise RequestError(f"{where} must be {field.describe()}; got {_json_type(value)}")
    array = _array(value, where)
    if array.dtype.kind not in "iuf":
        raise RequestError(f"{where} must be {field.describe()}; got {_json_type(value)}")
    want = _fixed_size(field.shape)
    if want is not None and array.size != want:
        count = f" ({want} numbers)" if field.shape else ""
        raise RequestError(f"{where} must be {field.describe()}{count}; got shape {list(array.shape)}")


def _picture(value, where: str):
    """A picture field: base64 file bytes, or a pixel array (checked when it is decoded)."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(f"{where} must be an image file in base64 (or pixels); this string is not base64") \
                from None
    if isinstance(value, list):
        return _array(value, where)
    raise RequestError(f"{where} must be an image file in base64, or pixels [height, width(, channels)]; got "
                       f"{_json_type(value)}")


def _fixed_size(shape) -> int | None:
    return math.prod(shape) if all(isinstance(d, int) for d in shape) else None


# ---------------------------------------------------------------- model inputs and raw forms


def tensor_inputs(value, io) -> list[np.ndarray]:
    """{"inputs": {name: nested list}} or {"inputs": [nested list per input]} (or the one input's list)."""
    names = io.tensor_names
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        missing = [n for n in names if n not in value]
        if unknown or missing:
            raise RequestError(f"inputs are named {', '.join(names)}"
                               + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                               + (f"; missing: {', '.join(missing)}" if missing else ""))
        arrays = [_array(value[n], f"inputs.{n}") for n in names]
    elif isinstance(value, list):
        arrays = _input_list(value, io)
    else:
        raise RequestError('"inputs" must be an object {name: nested list} or a list of nested lists')
    return add_batch_axis(arrays, io.model.inputs)


def _input_list(value: list, io) -> list[np.ndarray]:
    specs = io.model.inputs
    if len(specs) == 1:
        rank = len(specs[0].shape)
        array = _array(value, f"inputs.{specs[0].name}")
        if array.ndim in (rank, rank - 1) or len(value) != 1:
            return [array]                           # the shape check names what is wrong
        return [_array(value[0], f"inputs.{specs[0].name}")]
    if len(value) != len(specs):
        raise RequestError(f"the model takes {len(specs)} inputs ({', '.join(io.tensor_names)}); "
                           f"got a list of {len(value)}")
    return [_array(v, f"inputs.{s.name}") for v, s in zip(value, specs)]


def raw_inputs(key: str, value, io) -> list[np.ndarray]:
    """{"text": ...}, {"columns": {...}} or {"image": ...} through the recorded preprocessing."""
    if key == "text":
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise RequestError('"text" must be a string or a non-empty list of strings')
        return model_inputs(RawInputs("text", texts, "text"), io.model)
    if key == "columns":
        if not isinstance(value, dict) or not value:
            raise RequestError('"columns" must be an object {column: list of numbers}')
        wanted = io.preprocessing.get("columns") or []
        missing = [c for c in wanted if c not in value]
        wide = len(wanted) == 1 and io.fields[0].kind in ("array", "pixels")    # one column given as many numbers
        if missing and not wide:
            raise RequestError(f"columns: no column {', '.join(map(repr, missing))} "
                               f"(the model reads {', '.join(wanted)}; the request has {', '.join(value)})")
        if io.preprocessing.get("recipes"):          # a table's columns (names, nulls): the same checks as records
            lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
            if len(lengths) != 1 or -1 in lengths:
                raise RequestError('"columns" must be an object {column: list of values}, the lists of one length')
            n = lengths.pop()
            return records([{c: value[c][i] for c in value} for i in range(n)], io, "columns")
        columns = {}
        for name, values in value.items():
            column = _array(values, f"columns.{name}")
            if column.dtype.kind not in "iuf":
                raise RequestError(f"column '{name}' must hold numbers only")
            columns[name] = column.astype(np.float64).reshape(-1)
        if len({len(c) for c in columns.values()}) != 1:
            raise RequestError("all columns need the same number of values")
        return model_inputs(RawInputs("columns", columns, "columns"), io.model)
    pixels = _array(value, "image")
    if pixels.dtype.kind not in "iuf" or pixels.size == 0 or not np.all((pixels >= 0) & (pixels <= 255)):
        raise RequestError('"image" must hold grey pixel values 0-255, [height, width] or [N, height, width]')
    return model_inputs(RawInputs("image", pixels.astype(np.uint8), "image"), io.model)


def _array(value, where: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError as err:
        if "maximum number of dimension" in str(err):
            raise RequestError(f"{where} is nested too deeply (more than 64 levels)") from None
        raise RequestError(f"{where} is ragged: nested lists of different lengths") from None
    if array.dtype == object or array.dtype.kind in "US":
        kind = "strings" if array.dtype.kind in "US" else "numbers only"
        raise RequestError(f"{where} must hold numbers" + (", not strings" if kind == "strings" else " only"))
    return array


def _json_type(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number")
