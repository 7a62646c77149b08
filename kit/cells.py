"""Table cells: which ones are missing, numbers, whole numbers, category names and their order.

The one definition the checker's look at a table, the loader, prediction and
an ejected train.py share. Standard library only.
"""

from __future__ import annotations

import math

# What a CSV writes for "no value": pandas' default markers, and an empty cell.
MISSING = ("", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "<NA>", "#N/A")


def is_missing(cell, markers=MISSING) -> bool:
    """An absent cell, a float NaN, or a text that is one of the markers (spaces around it ignored)."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return True
    return isinstance(cell, str) and cell.strip() in markers


def number(cell: str) -> float | None:
    """The cell as a float, or None when it is not a number (inf and NaN spelt out are numbers here;
    the loader refuses them as values that are not finite)."""
    try:
        return float(cell)
    except ValueError:
        return None


def whole_number(cell: str) -> int | None:
    text = cell.strip()
    try:
        return int(text)
    except ValueError:
        value = number(text)
        return int(value) if value is not None and math.isfinite(value) and value.is_integer() else None


def category_name(value) -> str:
    """A category as text: numbers without a trailing .0 (2007, not 2007.0), strings stripped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def sort_categories(values) -> list[str]:
    """Categories in index order: by value when every name is a number (2, 10, 2007), else alphabetically."""
    names = sorted(set(values))
    numbers = [number(v) for v in names]
    if names and all(n is not None and math.isfinite(n) for n in numbers):
        return [v for _, v in sorted(zip(numbers, names))]
    return names
