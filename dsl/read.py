"""Reading a spec file: bounded in size, UTF-8 (a byte-order mark skipped), then parsed as .dlspec text or
as its YAML face (.yaml/.yml). The one place that turns a path into (ast.Spec, Source)."""

from __future__ import annotations

import os
from pathlib import Path

from dslc.errors import SpecError

from . import ast
from .diagnostics import Diagnostic, Source
from .parse import BOM, MAX_SPEC_BYTES, parse


def read_spec(path: str | Path) -> tuple[ast.Spec, Source]:
    """Read and parse a spec file (.dlspec text, or its YAML face .yaml/.yml) with its source.

    At most MAX_SPEC_BYTES + 1 bytes are ever read, so a huge file, a device such as /dev/zero or a
    never-ending pipe is refused without being held in memory. A UTF-8 byte-order mark is skipped.
    """
    path = Path(path)
    text = decode_spec(read_bounded(path), path)
    if path.suffix in (".yaml", ".yml"):
        from .yaml_face import from_yaml          # PyYAML is imported only for the YAML face
        return from_yaml(text, str(path)), Source(str(path), text)
    return parse(text, str(path)), Source(str(path), text)


def read_bounded(path: Path, limit: int = MAX_SPEC_BYTES) -> bytes:
    """The bytes of a spec file, refused (SpecError) when it is missing, unreadable or over `limit` bytes."""
    def fail(message: str, hint: str | None = None, head: bytes = b"") -> SpecError:
        shown = head.split(b"\n", 1)[0][:200].decode("utf-8", "replace")
        if not (shown.strip() and shown.replace("\t", " ").rstrip("\r").isprintable()):
            shown = ""                         # binary: no line worth showing
        span = ast.Span(line=1, column=1, end_line=1, end_column=2) if shown else ast.NO_SPAN
        return SpecError([Diagnostic(message, span, hint, source=Source(str(path), shown))])

    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = f.read(limit + 1) if size <= limit else f.read(256)
    except FileNotFoundError:
        raise fail(f"no such spec file: {path}", "check the path") from None
    except IsADirectoryError:
        raise fail(f"{path} is a folder, not a spec file") from None
    except OSError as err:
        raise fail(f"cannot read spec file {path}: {err.strerror or err}") from None
    if size > limit or len(raw) > limit:
        raise fail(f"spec file is larger than {limit // 1000} kB",
                   "a spec describes a model; data belongs in a data file", raw)
    return raw


def decode_spec(raw: bytes, path: Path) -> str:
    """UTF-8 text without a leading byte-order mark; a located error for anything that is not UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        hint = "save the file as UTF-8"
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            hint = "the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8"
        raise SpecError([Diagnostic(f"spec file is not UTF-8 text (byte {err.start})", hint=hint,
                                    source=Source(str(path), ""))]) from None
    return text[1:] if text.startswith(BOM) else text
