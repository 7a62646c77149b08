"""Reading prediction inputs from files: .npy/.npz arrays, .csv columns, images (.png), .txt texts, .json records.

Each reader returns `RawInputs`: what the file holds, before the model's recorded
preprocessing turns it into model inputs (runtime/predict.py does that step).
Every unreadable, empty or malformed file is a UserError naming the file.
"""

from __future__ import annotations

import csv
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dslc.errors import UserError
from dslc.kit.pictures import SUFFIXES as IMAGE_SUFFIXES


@dataclass
class RawInputs:
    """What an input file holds.

    kind:  "arrays"  value is a list of arrays, or a dict name -> array (.npz), ready for the model
           "image"   value is uint8 [N, H, W] grey pixels, 0-255
           "columns" value is a dict column name -> float64 [N] (a .csv with a header; NaN where a cell
                     is missing), or, for a column holding names, an object array of strings (None where missing)
           "rows"    value is float64 [N, K] (a .csv without a header)
           "text"    value is a list of strings
           "records" value is a list of dicts, one per sample (a .json or .jsonl file)
    `bad` names, per column holding names, its first cell that is not a number (refused unless the model reads
    the column as a category); `lines` gives each row's line in the file.
    """
    kind: str
    value: Any
    source: str
    bad: dict | None = None
    lines: list | None = None
    files: list | None = None               # the picture files read (an image model with a transform reads them)


def read_inputs(path) -> RawInputs:
    """The inputs in `path`, read by its suffix."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"input file not found: {path}")
    if path.is_dir():
        return read_image_folder(path)
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty")
    suffix = path.suffix.lower()
    readers = {".npy": read_npy, ".npz": read_npz, ".csv": read_csv, ".txt": read_text, ".json": read_json,
               ".jsonl": read_json}
    readers.update({s: read_image for s in IMAGE_SUFFIXES})
    if suffix not in readers:
        raise UserError(f"{path}: cannot read '{suffix or 'no suffix'}' files; "
                        f"inputs are .npy, .npz, .csv, .txt, .json, .jsonl or images ({', '.join(IMAGE_SUFFIXES)})")
    return readers[suffix](path)


def read_npy(path: Path) -> RawInputs:
    """One array: the input of a one-input model, batch axis first (or a single sample)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise UserError(f"{path} is not a readable .npy array: {err}") from None
    return RawInputs("arrays", [array], str(path))


def read_npz(path: Path) -> RawInputs:
    """Several arrays, named like the model's inputs."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise UserError(f"{path} is not a readable .npz archive: {err}") from None
    if not arrays:
        raise UserError(f"{path} holds no arrays")
    return RawInputs("arrays", arrays, str(path))


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_csv(path: Path) -> RawInputs:
    """Columns by name when the first row is a header: numbers (NaN for a missing cell: empty, NA, ...), or, for
    a column holding names (categories), strings; without a header (first row all numbers), numeric rows."""
    from dslc.compiler.column_kinds import MISSING
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows, lines = [], []
            for row in reader:
                if any(cell.strip() for cell in row):
                    rows.append(row)
                    lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path} is not a readable CSV file: {err}") from None
    if not rows:
        raise UserError(f"{path} has no rows")
    has_header = any(_number(cell) is None for cell in rows[0])
    header = [cell.strip() for cell in rows[0]] if has_header else None
    body = rows[1:] if has_header else rows
    lines = lines[1:] if has_header else lines
    if not body:
        raise UserError(f"{path} has a header but no data rows")
    width = len(rows[0])
    for r, row in enumerate(body):
        if len(row) != width:
            raise UserError(f"{path}: row {lines[r]} has {len(row)} values; the first row has {width}")
    if header is None:
        values = np.empty((len(body), width), dtype=np.float64)
        for r, row in enumerate(body):
            for c, cell in enumerate(row):
                number = _number(cell)
                if number is None:
                    raise UserError(f"{path}: row {lines[r]}, column {c + 1}: '{cell.strip()}' is not a number")
                values[r, c] = number
        return RawInputs("rows", values, str(path), lines=lines)
    if len(set(header)) != len(header):
        raise UserError(f"{path}: the header names a column twice")
    columns, bad = {}, {}
    for c, name in enumerate(header):
        cells = [row[c].strip() for row in body]
        numbers = [None if cell in MISSING else _number(cell) for cell in cells]
        first = next((r for r, (cell, x) in enumerate(zip(cells, numbers)) if x is None and cell not in MISSING), None)
        if first is None:
            columns[name] = np.array([np.nan if x is None else x for x in numbers], dtype=np.float64)
        else:
            columns[name] = np.array([None if cell in MISSING else cell for cell in cells], dtype=object)
            bad[name] = f"row {lines[first]}, column '{name}': '{cells[first]}' is not a number"
    return RawInputs("columns", columns, str(path), bad=bad, lines=lines)


def read_json(path: Path) -> RawInputs:
    """Records: a JSON list of objects (or one object, or {"instances": [...]}), or JSON Lines, one object a line."""
    import json
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text: {err}") from None
    try:
        if path.suffix.lower() == ".jsonl":
            value = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise UserError(f"{path} is not valid JSON: {err}") from None
    if isinstance(value, dict) and set(value) == {"instances"}:
        value = value["instances"]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise UserError(f"{path} must hold records: a JSON object per sample, {{column: value}}, as a list "
                        f"(or one per line in a .jsonl file)")
    return RawInputs("records", value, str(path))


def read_image(path: Path) -> RawInputs:
    """One picture as grey pixels 0-255, uint8 [1, H, W]; colour pictures are converted to grey."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            grey = image.convert("L") if image.mode != "L" else image.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UserError(f"{path} is not a readable image: {err}") from None
    return RawInputs("image", np.asarray(grey, dtype=np.uint8)[None], str(path), files=[str(path)])


def read_image_folder(path: Path) -> RawInputs:
    """Every picture in a folder (sorted by name): their files, and grey pixels [N, H, W] when all are one size."""
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith("."))
    if not files:
        raise UserError(f"{path} is a folder without pictures ({', '.join(IMAGE_SUFFIXES)})")
    pictures = [read_image(f).value[0] for f in files]
    same = len({p.shape for p in pictures}) == 1
    return RawInputs("image", np.stack(pictures) if same else None, str(path), files=[str(f) for f in files])


def read_text(path: Path) -> RawInputs:
    """One text per non-blank line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text: {err}") from None
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise UserError(f"{path} has no text (only blank lines)")
    return RawInputs("text", texts, str(path))
