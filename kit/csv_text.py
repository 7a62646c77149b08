"""Reading CSV files: UTF-8 text (a byte-order mark skipped), .csv.gz and .csv.bz2 read directly.

`read_csv` gives the header and the non-blank rows, with the line each row
ends on for messages. Errors are the standard ones (OSError, UnicodeDecodeError,
csv.Error); dslc turns them into one-line messages. Standard library only.
"""

from __future__ import annotations

import bz2
import csv
import gzip


def open_text(path):
    """A text stream for a .csv, .csv.gz or .csv.bz2 file."""
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    if str(path).endswith(".bz2"):
        return bz2.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def read_csv(path, delimiter: str = ",") -> tuple[list[str], list[list[str]], list[int]]:
    """(header, rows, lines): the header's names stripped ([] for an empty file), the rows that hold
    anything but spaces, and the file line each of them ends on."""
    csv.field_size_limit(1 << 30)
    rows, lines = [], []
    with open_text(path) as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None) or []
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append(row)
                lines.append(reader.line_num)
    return [h.strip() for h in header], rows, lines
