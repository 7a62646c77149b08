"""Reading prediction inputs from files: .npy/.npz arrays, .csv columns, images (.png), .txt texts.

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

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclass
class RawInputs:
    """What an input file holds.

    kind:  "arrays"  value is a list of arrays, or a dict name -> array (.npz), ready for the model
           "image"   value is uint8 [N, H, W] grey pixels, 0-255
           "columns" value is a dict column name -> float64 [N] (a .csv with a header)
           "rows"    value is float64 [N, K] (a .csv without a header)
           "text"    value is a list of strings
    """
    kind: str
    value: Any
    source: str


def read_inputs(path) -> RawInputs:
    """The inputs in `path`, read by its suffix."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"input file not found: {path}")
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty")
    suffix = path.suffix.lower()
    readers = {".npy": read_npy, ".npz": read_npz, ".csv": read_csv, ".txt": read_text}
    readers.update({s: read_image for s in IMAGE_SUFFIXES})
    if suffix not in readers:
        raise UserError(f"{path}: cannot read '{suffix or 'no suffix'}' files; "
                        f"inputs are .npy, .npz, .csv, .txt or images ({', '.join(IMAGE_SUFFIXES)})")
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
    """Numeric columns: with a header row, by name; without one (first row all numbers), as rows."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path} is not a readable CSV file: {err}") from None
    if not rows:
        raise UserError(f"{path} has no rows")
    has_header = any(_number(cell) is None for cell in rows[0])
    header = [cell.strip() for cell in rows[0]] if has_header else None
    body = rows[1:] if has_header else rows
    if not body:
        raise UserError(f"{path} has a header but no data rows")
    width = len(rows[0])
    values = np.empty((len(body), width), dtype=np.float64)
    first_line = 2 if has_header else 1
    for r, row in enumerate(body):
        if len(row) != width:
            raise UserError(f"{path}: row {r + first_line} has {len(row)} values; the first row has {width}")
        for c, cell in enumerate(row):
            number = _number(cell)
            if number is None:
                column = f"column '{header[c]}'" if header else f"column {c + 1}"
                raise UserError(f"{path}: row {r + first_line}, {column}: '{cell.strip()}' is not a number")
            values[r, c] = number
    if header is None:
        return RawInputs("rows", values, str(path))
    if len(set(header)) != len(header):
        raise UserError(f"{path}: the header names a column twice")
    return RawInputs("columns", {name: values[:, c] for c, name in enumerate(header)}, str(path))


def read_image(path: Path) -> RawInputs:
    """One picture as grey pixels 0-255, uint8 [1, H, W]; colour pictures are converted to grey."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            grey = image.convert("L") if image.mode != "L" else image.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UserError(f"{path} is not a readable image: {err}") from None
    return RawInputs("image", np.asarray(grey, dtype=np.uint8)[None], str(path))


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
