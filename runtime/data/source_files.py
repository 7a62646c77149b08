"""Which files a data source reads, and what they hold: how prepared data knows whether it is current.

`source_files(source, ctx)` lists the files the source's loader
(runtime/data/sources.py) reads, by the loader's own rules (the data root
override, the spec's folder, a bundled sample of that name, MNIST's .gz files),
without reading them: `[]` for sources written in the spec (`table`,
`generate`, `sequence`), None when that cannot be known before loading (MNIST
files that would be downloaded).

`fingerprint(files, known)` records each file's name, path, size, modification
time and sha256; a digest recorded before is reused while size and time are
unchanged, so a second look at a large folder reads only its directory.
`changed(recorded, files)` says, in one phrase, how the files differ from a
record (None when they hold the same bytes).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from dslc.compiler.data_files import bundled

from dslc.runtime.data.sources import IDX_FILES, MNIST_SAMPLE, LoadContext

IDX_SOURCES = {"mnist": ("MNIST", MNIST_SAMPLE), "fashion_mnist": ("FashionMNIST", None)}
INLINE_SOURCES = ("table", "generate", "sequence")
FILE_SOURCES = ("csv", "text_csv", "text_windows")


def source_files(source, ctx: LoadContext) -> list[tuple[str, Path]] | None:
    """(name, path) of every file `source` (a SourceIR) reads, in a fixed order; None when unknown."""
    name, args = source.name, source.args
    if name in INLINE_SOURCES:
        return []
    if name in FILE_SOURCES:
        path = ctx.file(args["path"])
        if not path.is_file():
            path = bundled(path) or path
        return [(path.name, path)] if path.is_file() else None
    if name in IDX_SOURCES:
        dataset, sample = IDX_SOURCES[name]
        raw = ctx.folder(args["root"]) / dataset / "raw"
        for names in (IDX_FILES, [f + ".gz" for f in IDX_FILES]):
            if all((raw / n).is_file() for n in names):
                return [(n, raw / n) for n in names]
        if ctx.download and args.get("download", True):
            return None                       # the loader would download: what it gets is not known yet
        if sample is None:
            return None
        raw = sample / dataset / "raw"
        return [(n + ".gz", raw / (n + ".gz")) for n in IDX_FILES]
    if name == "image_folder":
        from dslc.kit.pictures import is_image
        from dslc.runtime.data import images
        root = ctx.folder(args["root"])
        if not root.is_dir():
            return None
        classes = args.get("classes") or images.class_folders(root)
        found = []
        for label in classes:
            folder = root / label
            if folder.is_dir():
                found += [(f"{label}/{p.name}", p) for p in sorted(folder.iterdir()) if is_image(p)]
        return found
    return None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(files: list[tuple[str, Path]], known: list[dict] | None = None) -> list[dict]:
    """[{"name", "path", "size", "mtime_ns", "sha256"}] of the files; digests in `known` are reused for files
    whose path, size and modification time match. Raises OSError when a file cannot be read."""
    before = {(k["path"], k["size"], k["mtime_ns"]): k["sha256"] for k in known or []}
    out = []
    for name, path in files:
        path = Path(path).resolve()
        st = os.stat(path)
        digest = before.get((str(path), st.st_size, st.st_mtime_ns)) or sha256(path)
        out.append({"name": name, "path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                    "sha256": digest})
    return out


def changed(recorded: list[dict], files: list[tuple[str, Path]] | None) -> str | None:
    """How `files` differ from the `recorded` fingerprints (content, not place), or None when they match."""
    if files is None:
        return "what the source holds cannot be known before loading it"
    names = [n for n, _ in files]
    was = [r["name"] for r in recorded]
    if names != was:
        gone = [n for n in was if n not in names]
        new = [n for n in names if n not in was]
        if gone:
            return f"{gone[0]} is gone" + (f" ({len(gone)} files in all)" if len(gone) > 1 else "")
        if new:
            return f"{new[0]} is new" + (f" ({len(new)} files in all)" if len(new) > 1 else "")
        return "its files are in another order"
    for record, (name, path) in zip(recorded, files):
        try:
            st = os.stat(path)
            if st.st_size != record["size"]:
                return f"{path} changed ({record['size']} bytes then, {st.st_size} now)"
            same_place = str(Path(path).resolve()) == record["path"] and st.st_mtime_ns == record["mtime_ns"]
            if not same_place and sha256(Path(path)) != record["sha256"]:
                return f"{path} changed since"
        except OSError as err:
            return f"{path} cannot be read ({err.strerror or err})"
    return None
