"""Data prepared once on disk and streamed by training: `dslc data prepare`, and finding it again.

`prepare(checked)` loads a spec's data as `dslc train` would (runtime/data/
dataset.py: split, fitted, computed, cast to the model's inputs) and writes
each split's columns as .npy shards (runtime/data/shards.py reads them) with a
manifest, `prepared.json`:

    {"format": 1, "spec": ..., "block": {...}, "key": ..., "files": [...],
     "info": {...}, "stats": [...], "splits": {"train": {"rows": ..., "shard_rows": ...,
     "columns": [{"name": "input0", "dtype": "float32", "dims": [1, 28, 28], "shards": [...]}]}}, ...}

- `block` is everything besides the source files' bytes that decides what is
  prepared: the source and split sources with their arguments, the inputs and
  targets expressions, the split fractions and seed, `shuffle`, and the model
  inputs' types the arrays are cast to (not `batch`: any batch size streams
  from the same shards). `files` fingerprints the files the sources read
  (runtime/data/source_files.py).
- The default place is `$DSLC_PREPARED_DIR`, else `<dslc cache>/prepared`,
  in a folder named for the spec and a key of the block and the files'
  paths: `cnn_mnist-3f2a9c0d1e4b5a67`. So a second `prepare` finds it (and
  has nothing to do while the files are unchanged), and `dslc train` finds it
  and streams from it by itself (`stream_if_prepared`); `--out DIR` /
  `--prepared DIR` put it anywhere else.
- Everything is written into a hidden folder beside the target, fsynced, the
  manifest last, and renamed into place; a folder it replaces is renamed away
  first and removed after. A kill leaves the old prepared data or none.
- Opening checks the manifest, the block, the files (size and time, else
  their sha256) and each shard's header and size: a missing, damaged or
  out-of-date folder is one line (UserError) saying how to prepare it again.

Preparing needs the memory `dslc train` would need to load the data once;
training from the shards needs a bounded amount (shards.py). Streaming gives the
same batches as training in memory (the same rows in the same shuffled order),
so the same run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dslc.errors import UserError
from dslc.files import fs_error, fsync_dir, make_folder, process_alive, write_text

from dslc.compiler import fitting
from dslc.compiler.ir import SourceIR, to_json
from dslc.runtime.data.shards import Shard, ShardColumn, ShardSplit
from dslc.runtime.data.source_files import changed, fingerprint, source_files
from dslc.runtime.data.sources import LoadContext, cache_dir

FORMAT = 1
MANIFEST = "prepared.json"
SHARD_BYTES = 256 * 2**20            # rows of every column of a split, per shard
ROLES = ("train", "validation", "test")
ENV_DIR = "DSLC_PREPARED_DIR"


@dataclass
class Prepared:
    """What `prepare` did: the folder, whether it wrote it or found it current, and its manifest."""
    path: Path
    wrote: bool
    manifest: dict
    why: str | None = None            # why it was prepared again (out of date, damaged), when it was there


# ---------------------------------------------------------------- what the data is


def describe(checked) -> dict:
    """The canonical data block: everything besides the files' bytes that decides the prepared arrays."""
    data = checked.data
    if data is None:
        raise UserError("the spec has no data block, so there is nothing to prepare")

    def source(s):
        return {"name": s.name, "args": _canonical(s.args)} if isinstance(s, SourceIR) else s

    return {
        "format": FORMAT,
        "source": source(data.source),
        "validation": source(data.validation),
        "test": source(data.test),
        "inputs": [to_json(n) for n in data.inputs],
        "targets": [to_json(n) for n in data.targets],
        "input_names": list(data.input_names),
        "target_names": list(data.target_names),
        "split_seed": data.split_seed,
        "shuffle": data.shuffle,
        "root_override": data.root_override,
        "model_inputs": {name: str(shape) for name, shape in checked.model.inputs.items()},
    }


def _canonical(value):
    from dslc.compiler.ir import Node
    if isinstance(value, Node):
        return to_json(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _context(checked, data_root, download: bool = True) -> LoadContext:
    from dslc.runtime.data.dataset import data_location
    spec_dir, root = data_location(checked, data_root)
    return LoadContext(spec_dir, root, download)


def _files(checked, ctx: LoadContext) -> list[tuple[str, Path]] | None:
    """Every file the data block's sources read (training source, then validation and test sources)."""
    data = checked.data
    found = []
    for role, src in (("source", data.source), ("validation", data.validation), ("test", data.test)):
        if not isinstance(src, SourceIR):
            continue
        files = source_files(src, ctx)
        if files is None:
            return None
        found += [(f"{role}:{name}", path) for name, path in files]
    return found


def prepared_root() -> Path:
    """Where prepared data goes by default: $DSLC_PREPARED_DIR, else <dslc cache>/prepared."""
    given = os.environ.get(ENV_DIR)
    return Path(given).expanduser() if given else cache_dir() / "prepared"


def default_folder(checked, block: dict, files) -> Path:
    """The folder named for the spec and a key of the block and the files' places."""
    key = _digest({"block": block, "files": [str(Path(p).resolve()) for _, p in files]})[:16]
    stem = Path(checked.source.path).stem if checked.source.path not in ("<spec>", "-", "") else "spec"
    return prepared_root() / f"{stem}-{key}"


# ---------------------------------------------------------------- writing


def prepare(checked, data_root=None, out=None, force: bool = False, shard_bytes: int = SHARD_BYTES,
            say=None) -> Prepared:
    """Prepare the data of a checked spec into `out` (default: the default folder); nothing is written
    when it is there and current (unless `force`)."""
    say = say or (lambda text: None)
    block = describe(checked)
    ctx = _context(checked, data_root)
    files = _files(checked, ctx)
    folder = Path(out) if out is not None else (default_folder(checked, block, files) if files is not None else None)
    why = None
    if folder is not None and (folder / MANIFEST).is_file():
        try:
            open_prepared(folder, checked, data_root)       # the manifest, the block, the files, every shard
            if not force:
                return Prepared(folder, False, read_manifest(folder))
            why = "--force"
        except UserError as err:
            why = str(err)
    elif folder is not None and folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"{folder} is not prepared data (it has no {MANIFEST}) and is not empty; "
                        f"choose another --out")

    from dslc.runtime.data.dataset import load_data
    start = time.perf_counter()
    data = load_data(checked, data_root=data_root)
    if files is None:                    # downloaded while loading: now the files are there
        files = _files(checked, _context(checked, data_root, download=False))
        if files is None:
            raise UserError(f"cannot tell which files the {checked.data.source.name} source read, so its "
                            f"prepared data could not be found again; give the data with --data-root")
        if folder is None:
            folder = default_folder(checked, block, files)
    try:
        fingerprints = fingerprint(files)
    except OSError as err:
        raise fs_error(err, getattr(err, "filename", None) or "a data file", "read") from None
    manifest = {
        "format": FORMAT, "spec": str(checked.source.path), "block": block, "block_hash": _digest(block),
        "files": fingerprints, "info": data.info,
        "stats": [_listed(data.stats[node]) for node in fitting.fitted_nodes(checked.data.inputs + checked.data.targets)]
        if data.stats else [],
        "splits": {}, "bytes": 0,
    }
    with _writing(folder) as tmp:
        for role in ROLES:
            split = getattr(data, role)
            if split is not None:
                manifest["splits"][role] = _write_split(tmp, role, split, shard_bytes)
                manifest["bytes"] += manifest["splits"][role]["bytes"]
        manifest["seconds"] = round(time.perf_counter() - start, 3)
        manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        write_text(tmp / MANIFEST, json.dumps(manifest, indent=1, default=str) + "\n")
    return Prepared(folder, True, manifest, why)


def _listed(value):
    return [_listed(v) for v in value] if isinstance(value, (list, tuple)) else \
        {k: _listed(v) for k, v in value.items()} if isinstance(value, dict) else value


def _tupled(value):
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else \
        {k: _tupled(v) for k, v in value.items()} if isinstance(value, dict) else value


def _write_split(folder: Path, role: str, split, shard_bytes: int) -> dict:
    columns = [(f"input{i}", t) for i, t in enumerate(split.inputs)] + \
              [(f"target{i}", t) for i, t in enumerate(split.targets)]
    n = split.n
    row_bytes = sum(int(np.prod(t.shape[1:], dtype=np.int64)) * t.element_size() for _, t in columns)
    shard_rows = max(1, shard_bytes // max(1, row_bytes))
    make_folder(folder / role, "create")
    record = {"rows": n, "shard_rows": shard_rows, "bytes": n * row_bytes, "columns": []}
    for name, tensor in columns:
        values = tensor.numpy()
        shards = []
        for k, lo in enumerate(range(0, max(n, 1), shard_rows)):
            part = np.ascontiguousarray(values[lo:lo + shard_rows])
            file = f"{role}/{name}-{k:05d}.npy"
            with open(folder / file, "wb") as f:
                np.lib.format.write_array(f, part, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            shards.append({"file": file, "rows": len(part),
                           "sha256": hashlib.sha256(memoryview(part).cast("B")).hexdigest()})
        record["columns"].append({"name": name, "dtype": values.dtype.str, "dims": list(values.shape[1:]),
                                  "shards": shards})
    fsync_dir(folder / role)
    return record


@contextlib.contextmanager
def _writing(folder: Path):
    """A hidden folder beside `folder` to write into; renamed over `folder` when the block ends without an error
    (an old `folder` is renamed away first, then removed), removed otherwise."""
    parent = make_folder(folder.parent, "create")
    _sweep(parent, folder.name)
    tmp = parent / f".{folder.name}.tmp-{os.getpid()}"
    old = parent / f".{folder.name}.old-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        yield tmp
        fsync_dir(tmp)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        fsync_dir(parent)
    except OSError as err:
        raise fs_error(err, folder, "write prepared data to") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _sweep(parent: Path, name: str) -> None:
    """Remove what a killed prepare of `name` left behind (its hidden folders, when their process is gone)."""
    for leftover in parent.glob(f".{name}.*-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


# ---------------------------------------------------------------- reading


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not Path(folder).is_dir():
        raise UserError(f"there is no prepared data in {folder}: no such folder")
    if not path.is_file():
        raise UserError(f"there is no prepared data in {folder}: it has no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"the prepared data in {folder} is damaged: {MANIFEST} cannot be read ({err})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise UserError(f"the prepared data in {folder} is damaged: {MANIFEST} is not a dslc manifest")
    return manifest


def check_prepared(folder: Path, checked, data_root=None) -> dict:
    """The manifest of prepared data that is this spec's data as it is now (raises UserError saying why not)."""
    manifest = read_manifest(folder)
    if manifest.get("format") != FORMAT:
        raise UserError(f"the prepared data in {folder} has format {manifest.get('format')}, and this dslc reads "
                        f"format {FORMAT}")
    block = describe(checked)
    if manifest.get("block") != block:
        was = manifest.get("block") or {}
        differ = [k for k in block if was.get(k) != block[k]] or ["format"]
        raise UserError(f"the prepared data in {folder} is out of date: it was prepared for another data block "
                        f"(its {', '.join(differ)} {'differs' if len(differ) == 1 else 'differ'})")
    why = changed(manifest.get("files") or [], _files(checked, _context(checked, data_root, download=False)))
    if why is not None:
        raise UserError(f"the prepared data in {folder} is out of date: {why}")
    return manifest


def open_prepared(folder: Path, checked, data_root=None):
    """The LoadedData of prepared data, its splits streamed from the shards (raises UserError when it is
    missing, damaged or out of date)."""
    from dslc.runtime.data.dataset import LoadedData, fitted_spec
    folder = Path(folder)
    manifest = check_prepared(folder, checked, data_root)
    splits = {}
    for role, record in manifest["splits"].items():
        splits[role] = _open_split(folder, role, record)
    nodes = fitting.fitted_nodes(checked.data.inputs + checked.data.targets)
    stored = manifest.get("stats") or []
    if len(stored) != len(nodes):
        raise UserError(f"the prepared data in {folder} is damaged: it records {len(stored)} fitted statistics, "
                        f"the spec has {len(nodes)}")
    stats = {node: _tupled(s) for node, s in zip(nodes, stored)}
    if "train" not in splits or splits["train"].n == 0:
        raise UserError(f"the prepared data in {folder} has no training rows")
    info = dict(manifest["info"])
    info["prepared"] = str(folder)
    return LoadedData(splits["train"], splits.get("validation"), splits.get("test"), info,
                      fitted_spec(checked, stats), stats)


def _open_split(folder: Path, role: str, record: dict) -> ShardSplit:
    what = f"the prepared data in {folder} is damaged"
    try:
        n, shard_rows = int(record["rows"]), int(record["shard_rows"])
        columns = {"input": [], "target": []}
        for column in record["columns"]:
            dtype, dims = np.dtype(column["dtype"]), tuple(column["dims"])
            shards = [Shard(folder / s["file"], dtype, (int(s["rows"]), *dims), what, s["file"])
                      for s in column["shards"]]
            if sum(s.shape[0] for s in shards) != n or any(s.shape[0] != shard_rows for s in shards[:-1]):
                raise UserError(f"{what}: the shards of {role}/{column['name']} do not add up to {n} rows")
            kind = "input" if column["name"].startswith("input") else "target"
            columns[kind].append(ShardColumn(shards, shard_rows, dims, dtype, 0, n))
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{what}: {MANIFEST} does not describe {role} ({err})") from None
    return ShardSplit(columns["input"], columns["target"])


def stream_if_prepared(checked, data_root=None, prepared=None, again: str = ""):
    """The spec's data streamed from prepared shards: from `prepared` (a folder, checked), else from the default
    folder when it is there; None when there is none (load the data into memory). `again`: the options a
    `dslc data prepare` of this data needs besides SPEC and --out (--set ..., --variant ...), for messages."""
    explicit = prepared is not None
    if explicit:
        folder = Path(prepared)
    else:
        if checked.data is None:
            return None
        files = _files(checked, _context(checked, data_root, download=False))
        if files is None:
            return None
        folder = default_folder(checked, describe(checked), files)
        if not (folder / MANIFEST).is_file():
            return None
    spec = checked.source.path
    try:
        data = open_prepared(folder, checked, data_root)
    except UserError as err:
        command = f"dslc data prepare {spec}" + (f" {again}" if again else "") + (f" --out {folder}" if explicit else "")
        rest = "" if explicit else f", or remove {folder} to load the data into memory"
        verb = "prepare it" if not (folder / MANIFEST).is_file() else "prepare it again"
        raise UserError(f"{err}; {verb} with `{command}`{rest}") from None
    if checked.data.batch is None:
        raise UserError(f"the data is prepared in {folder} to be streamed in batches, but the spec's batch is "
                        f"`all` (the whole data set at once); set a batch size, or remove {folder} to load the "
                        f"data into memory")
    return data


def load_recorded(checked, info: dict | None, data_root=None, download: bool = False):
    """A trained run's data as it trained on it: streamed from the prepared shards its summary names (when they
    are still there), else loaded into memory (where `data_root` says)."""
    prepared = (info or {}).get("prepared")
    if prepared and Path(prepared).is_dir():
        return stream_if_prepared(checked, data_root, prepared)
    from dslc.runtime.data.dataset import load_data
    return load_data(checked, data_root=data_root, download=download)
