"""Data files before loading: where a source's file is, reading CSV text, and the checker's look at a table.

`data_file` says which file a `path` argument means (the spec's folder, a data
root override, or a bundled sample of that name), for the checker and the loader
alike. `read_csv` is the one CSV reader (dslc/kit/csv_text.py: UTF-8, .gz and
.bz2 read directly, each row with its line number for messages), with a clear
error for each way a file can be unreadable. `scan_table` is what `dslc check` learns
from a table without loading it: the header, and per column whether its cells are
numbers or names, its distinct names and its missing cells, so column kinds,
category counts and feature-vector sizes are known before any weight exists. A
scan is cached per file (path, size, time) and can be pinned: a trained run is
re-checked with the scan it was trained with (`pinned`), so its spec still checks
when the data has moved. Standard library only.
"""

from __future__ import annotations

import contextlib
import csv
import os
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from dslc.errors import UserError

from .column_kinds import MISSING, number
from dslc.kit.csv_text import read_csv as kit_read_csv

SAMPLES = Path(__file__).resolve().parent.parent / "runtime" / "data" / "samples"
BUNDLED = {                             # file name -> the copy dslc ships, used when the named file is not there
    "penguins.csv": "penguins/penguins.csv",
    "rotten_tomatoes_corpus.csv.bz2": "rt_polarity/rotten_tomatoes_corpus.csv.bz2",
}
MAX_CATEGORIES = 10_000                 # distinct names a scan keeps per column (more: not a category)


# ---------------------------------------------------------------- where a file is


def data_file(path: str, spec_dir: Path, data_root: Path | None = None) -> Path:
    """The file a source's `path` argument reads: in the data root override (by name; or the override itself
    when it is a file), else the spec's path (relative to the spec's folder)."""
    given = Path(path).expanduser()
    if data_root is not None:
        return data_root if data_root.is_file() else data_root / given.name
    return given if given.is_absolute() else spec_dir / given


def bundled(path: Path) -> Path | None:
    """The copy of `path` that dslc bundles (by file name), when `path` itself does not exist."""
    if path.exists() or path.name not in BUNDLED:
        return None
    sample = SAMPLES / BUNDLED[path.name]
    return sample if sample.is_file() else None


_data_root: ContextVar[str | None] = ContextVar("dslc_data_root", default=None)


@contextlib.contextmanager
def data_root(root: str | None):
    """Within this block the checker looks for data files where `--data-root` says (as the loader will)."""
    token = _data_root.set(root)
    try:
        yield
    finally:
        _data_root.reset(token)


def env_data_root() -> Path | None:
    """The data root the checker uses: a command's --data-root (`data_root`), else $DSLC_DATA_ROOT."""
    root = _data_root.get() or os.environ.get("DSLC_DATA_ROOT")
    return Path(root).expanduser() if root else None


def folder_of(root: str, spec_dir: Path, data_root: Path | None = None) -> Path:
    """The folder a source's `root` argument reads: the data root override, else the spec's (relative to it)."""
    if data_root is not None:
        return data_root
    path = Path(root).expanduser()
    return path if path.is_absolute() else spec_dir / path


def subfolders(folder: Path) -> list[str] | str:
    """The names of folder's sub-folders (not starting with '.'), sorted; or why it cannot be listed now."""
    try:
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as err:
        return err.strerror or "it cannot be listed"


# ---------------------------------------------------------------- reading CSV text


@dataclass
class CsvText:
    """A CSV file's header and its non-blank rows, with the line each row ends on (for messages)."""

    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[int] = field(default_factory=list)


def read_csv(path: Path, delimiter: str = ",") -> CsvText:
    """Header and rows of a CSV file, with one clear error (UserError) for each way it can be unreadable."""
    if not path.exists():
        raise UserError(f"no such data file: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a CSV file")
    if len(delimiter) != 1:
        raise UserError(f"the CSV delimiter must be one character, not {delimiter!r}")
    try:
        header, rows, lines = kit_read_csv(path, delimiter)
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except csv.Error as err:
        raise UserError(f"{path}: not valid CSV: {err}") from None
    except (OSError, EOFError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    if not any(header):
        raise UserError(f"{path} is empty: a CSV data file starts with a header row naming its columns")
    if not rows:
        raise UserError(f"{path} has a header but no data rows")
    return CsvText(path, header, rows, lines)


# ---------------------------------------------------------------- the checker's look at a table


@dataclass(frozen=True)
class ColumnScan:
    """What one column's cells are: numbers, names (non-numbers), missing; its distinct names."""

    numbers: int = 0
    texts: int = 0
    missing: int = 0
    first_text: tuple[int, str] | None = None     # (line, cell) of the first cell that is not a number
    values: tuple[str, ...] | None = ()           # distinct non-missing cells; None when over MAX_CATEGORIES

    @property
    def kind(self) -> str:
        """number when no cell is a name (or the column is empty), else category when no cell is a number;
        a column of numbers with a stray name is a number column (the loader names the bad cell)."""
        return "category" if self.texts and not self.numbers else "number"

    def to_json(self) -> dict:
        return {"numbers": self.numbers, "texts": self.texts, "missing": self.missing,
                "first_text": list(self.first_text) if self.first_text else None,
                "values": list(self.values) if self.values is not None else None}

    @classmethod
    def from_json(cls, d: dict) -> ColumnScan:
        return cls(d["numbers"], d["texts"], d["missing"], tuple(d["first_text"]) if d.get("first_text") else None,
                   tuple(d["values"]) if d.get("values") is not None else None)


@dataclass(frozen=True)
class TableScan:
    path: str
    header: tuple[str, ...]
    rows: int
    columns: dict[str, ColumnScan]

    def to_json(self) -> dict:
        return {"path": self.path, "header": list(self.header), "rows": self.rows,
                "columns": {k: v.to_json() for k, v in self.columns.items()}}

    @classmethod
    def from_json(cls, d: dict) -> TableScan:
        return cls(d["path"], tuple(d["header"]), d["rows"],
                   {k: ColumnScan.from_json(v) for k, v in d["columns"].items()})


_cache: dict[tuple, TableScan] = {}
_pinned: ContextVar[dict | None] = ContextVar("dslc_pinned_scans", default=None)


@contextlib.contextmanager
def pinned(scans: dict[str, dict] | None):
    """Within this block, `scan_table` answers from `scans` (file path as the spec wrote it -> TableScan JSON)."""
    token = _pinned.set({k: TableScan.from_json(v) for k, v in (scans or {}).items()})
    try:
        yield
    finally:
        _pinned.reset(token)


def scan_table(key: str, path: Path, delimiter: str = ",", markers=MISSING) -> TableScan | str:
    """The scan of a CSV file (cached), or why it cannot be read now. `key` is the path as the spec wrote it
    (what a pinned scan is filed under)."""
    pins = _pinned.get()
    if pins and key in pins:
        return pins[key]
    try:
        stat = path.stat()
    except OSError as err:
        return err.strerror or "it cannot be read"
    if path.is_dir():
        return "it is a folder"
    cache_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, delimiter, tuple(markers))
    if cache_key not in _cache:
        try:
            text = read_csv(path, delimiter)
        except UserError as err:
            return str(err)
        _cache[cache_key] = _scan(text, markers)
    return _cache[cache_key]


def _scan(text: CsvText, markers) -> TableScan:
    missing_marks = set(markers)
    stats = []
    for i in range(len(text.header)):
        numbers = texts = missing = 0
        first = None
        values: set | None = set()
        for row, line in zip(text.rows, text.lines):
            cell = row[i].strip() if i < len(row) else None
            if cell is None or cell in missing_marks:
                missing += 1
                continue
            if number(cell) is not None:
                numbers += 1
            else:
                texts += 1
                if first is None:
                    first = (line, cell)
            if values is not None:
                values.add(cell)
                if len(values) > MAX_CATEGORIES:
                    values = None
        stats.append(ColumnScan(numbers, texts, missing, first, tuple(values) if values is not None else None))
    return TableScan(str(text.path), tuple(text.header), len(text.rows), dict(zip(text.header, stats)))
