"""One loader per data source in `compiler/data_sources.py`: files and expressions into named columns.

Each `load_<source>(args, ctx)` takes the source's bound arguments and a
`LoadContext` (where the spec lives, the data root override, whether
downloading is allowed, the spec's `let` numbers and the data seed) and returns
`SourceData`: numpy columns with one row per sample, the facts learnt while
loading (labels, vocabulary, pixel scale) and a notice when it had to fall
back to a bundled sample. Nothing here splits, batches or knows about models;
`runtime/data.py` does that. torchvision is imported only to download MNIST.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dslc.compiler.column_kinds import MISSING
from dslc.compiler.data_files import bundled, data_file, read_csv
from dslc.compiler.numpy_backend import evaluate_column
from dslc.errors import UserError

from dslc.kit import text as text_lib
from dslc.runtime.data.columns import Table

SAMPLES = Path(__file__).resolve().parent / "samples"
MNIST_SAMPLE = SAMPLES / "mnist5k"
RT_POLARITY_SAMPLE = SAMPLES / "rt_polarity" / "rotten_tomatoes_corpus.csv.bz2"
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass
class LoadContext:
    """Where and how a source is loaded."""

    spec_dir: Path                          # relative paths in the spec are relative to this folder
    data_root: Path | None = None           # --data-root / DSLC_DATA_ROOT: the folder (or file) holding the data
    download: bool = True                   # may a loader fetch missing data from the network
    seed: int | tuple = 0                   # seeds random columns when the source gives no seed
    like: dict | None = None                # a split's source: the training source's facts (vocabulary, labels)
    facts: dict | None = None               # what `dslc check` found (an image folder's classes, ...)

    def folder(self, root: str) -> Path:
        """The data folder a source with a `root` argument reads: the override, else the spec's root."""
        if self.data_root is not None:
            return self.data_root
        path = Path(root).expanduser()
        return path if path.is_absolute() else self.spec_dir / path

    def file(self, path: str) -> Path:
        """The file a source with a `path` argument reads: in the override folder (by name), else the spec's path."""
        return data_file(path, self.spec_dir, self.data_root)


@dataclass
class SourceData:
    columns: dict[str, np.ndarray]          # one row per sample
    facts: dict = field(default_factory=dict)   # learnt at load time: labels, scale, tokenizer (with vocabulary)
    root: str | None = None                 # the folder or file read
    notice: str | None = None               # a fallback the user should know about
    test: dict[str, np.ndarray] | None = None   # the source's own test set (MNIST's t10k)
    table: Table | None = None              # a table source's raw cells (runtime/data/columns.py reads them)

    @property
    def rows(self) -> int:
        if self.table is not None:
            return self.table.rows
        return len(next(iter(self.columns.values()))) if self.columns else 0


def cache_dir() -> Path:
    """dslc's cache folder: $XDG_CACHE_HOME/dslc, else ~/.cache/dslc."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "dslc"


def _notify(notice: str) -> str:
    print(f"note: {notice}", file=sys.stderr)
    return notice


# ---------------------------------------------------------------- MNIST and Fashion-MNIST


def load_mnist(args: dict, ctx: LoadContext) -> SourceData:
    return _load_idx_source("MNIST", "mnist", args, ctx, sample=MNIST_SAMPLE)


def load_fashion_mnist(args: dict, ctx: LoadContext) -> SourceData:
    return _load_idx_source("FashionMNIST", "fashion_mnist", args, ctx, sample=None)


def _load_idx_source(dataset: str, source: str, args: dict, ctx: LoadContext, sample: Path | None) -> SourceData:
    """torchvision's MNIST-style data: uncompressed IDX files under ROOT/<dataset>/raw/.

    In order: the files in the root; the root's .gz files, decompressed once into the cache; a
    download into the root (when allowed); the bundled sample (MNIST only), with a notice.
    """
    root = ctx.folder(args["root"])
    raw = root / dataset / "raw"
    download_error = None
    if _has_files(raw, IDX_FILES):
        read_root = root
    elif _has_files(raw, [f + ".gz" for f in IDX_FILES]):
        read_root = _decompressed(raw, dataset, dataset)
    elif ctx.download and args.get("download", True):
        download_error = _download(dataset, root)
        read_root = root if download_error is None else None
    else:
        read_root = None
    notice = None
    if read_root is None:
        expected = ", ".join(IDX_FILES)
        why = f"the download failed ({download_error})" if download_error else "downloading is turned off"
        if sample is None:
            raise UserError(f"{source}: no data under {root}: expected {expected} (or their .gz) in {raw}, and {why}")
        read_root = _decompressed(sample / dataset / "raw", dataset, sample.name)
        notice = _notify(f"{source}: no data under {root} and {why}; using the bundled sample "
                         f"{sample.name} (4000 train / 1000 test digits)")
    train_x, train_y = _read_idx(dataset, read_root, train=True)
    test_x, test_y = _read_idx(dataset, read_root, train=False)
    scale = 1 / 255
    return SourceData(columns={"image": _scaled(train_x, scale), "label": train_y},
                      facts={"scale": scale, "kind": "image"}, root=str(read_root if notice else root),
                      notice=notice, test={"image": _scaled(test_x, scale), "label": test_y})


def _has_files(folder: Path, names) -> bool:
    return all((folder / n).is_file() for n in names)


def _decompressed(gz_folder: Path, dataset: str, label: str) -> Path:
    """A root holding the uncompressed IDX files of gz_folder's .gz files, made once in the cache.

    The cache folder is `label` and the content of the .gz files (sha256), not their path, so changed or
    repaired files are decompressed afresh. Each file is written under a temporary name and renamed;
    a .gz that cannot be decompressed (truncated, not gzip) leaves nothing behind.
    """
    root = cache_dir() / f"{label}-{_content_digest(gz_folder, [n + '.gz' for n in IDX_FILES])}"
    raw = root / dataset / "raw"
    if _has_files(raw, IDX_FILES):
        return root
    made: list[Path] = []
    tmp = source = None
    try:
        for folder in (cache_dir(), root, root / dataset, raw):
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                made.append(folder)
        for name in IDX_FILES:
            target = raw / name
            if target.is_file():
                continue
            source, tmp = gz_folder / (name + ".gz"), raw / f".{name}.{os.getpid()}.tmp"
            with gzip.open(source, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, target)
            made.append(target)
            tmp = None
    except BaseException as err:
        _remove([tmp] if tmp else [])
        _remove(reversed(made))
        if not isinstance(err, (OSError, EOFError, zlib.error)):
            raise
        reason = (err.strerror if isinstance(err, OSError) and err.strerror else str(err) or type(err).__name__)
        raise UserError(f"cannot decompress {source or gz_folder} into {raw}: {reason}") from None
    return root


def _content_digest(folder: Path, names) -> str:
    """sha256 over the named files' bytes (16 hex digits): the cache key of what they hold."""
    digest = hashlib.sha256()
    try:
        for name in names:
            digest.update(name.encode() + b"\0")
            with open(folder / name, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
    except OSError as err:
        raise UserError(f"cannot read {folder / name}: {err.strerror or err}") from None
    return digest.hexdigest()[:16]


def _remove(paths) -> None:
    """Remove files and (empty) folders this process made; what cannot be removed is left."""
    for path in paths:
        try:
            path.rmdir() if path.is_dir() else path.unlink(missing_ok=True)
        except OSError:
            pass


def _download(dataset: str, root: Path) -> str | None:
    """Let torchvision fetch the dataset into root; returns None, or a one-line reason it failed."""
    from torchvision import datasets
    made = [p for p in (root, root / dataset, root / dataset / "raw") if not p.exists()]
    try:
        getattr(datasets, dataset)(str(root), train=True, download=True)
        return None
    except Exception as err:  # noqa: BLE001 -- network, disk and checksum failures all mean: not downloadable
        for p in reversed(made):   # leave no empty folders behind
            try:
                p.rmdir()
            except OSError:
                break
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "error" in ln.lower() and ln != lines[0]), "")
        return (lines[0] if lines else type(err).__name__) + (f" {detail}" if detail else "")


def _read_idx(dataset: str, root: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 28, 28] and int64 labels [N] from the IDX files under ROOT/<dataset>/raw/.

    The format torchvision's MNIST reader reads (tests/test_data.py compares the two), read with numpy so
    that loading MNIST does not import torchvision (about a second, cold); torchvision only downloads."""
    raw = root / dataset / "raw"
    prefix = "train" if train else "t10k"
    images = _idx_array(raw / f"{prefix}-images-idx3-ubyte", 3, raw)
    labels = _idx_array(raw / f"{prefix}-labels-idx1-ubyte", 1, raw).astype(np.int64)
    if len(images) != len(labels):
        raise UserError(f"the {dataset} files under {raw} hold {len(images)} images but "
                        f"{len(labels)} labels ({prefix} set)")
    return images, labels


def _idx_array(path: Path, dims: int, raw: Path) -> np.ndarray:
    """The unsigned bytes of one IDX file (magic 0x0000 08 <dims>, then <dims> big-endian sizes)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read the {path.parent.parent.name} files under {raw}: {path.name}: "
                        f"{err.strerror or err}") from None
    header = 4 + 4 * dims
    if len(data) < header or data[:4] != bytes([0, 0, 0x08, dims]):
        raise UserError(f"cannot read the {path.parent.parent.name} files under {raw}: {path.name} does not "
                        f"start with the IDX header of its kind (truncated or not IDX files?)")
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", count=dims, offset=4))
    size = int(np.prod(shape, dtype=np.int64))
    if len(data) != header + size:
        raise UserError(f"cannot read the {path.parent.parent.name} files under {raw}: {path.name} holds "
                        f"{len(data) - header} bytes of data where its header announces {size} "
                        f"(truncated or not IDX files?)")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _scaled(images: np.ndarray, scale: float) -> np.ndarray:
    """uint8 [N, H, W] -> float32 [N, 1, H, W] in [0, 1] (one vectorised pass)."""
    out = images.astype(np.float32)
    out *= np.float32(scale)
    return out.reshape(images.shape[0], 1, *images.shape[1:])


# ---------------------------------------------------------------- folders of pictures


def load_image_folder(args: dict, ctx: LoadContext) -> SourceData:
    """Every picture under root/<class>/, transformed as declared (runtime/data/images.py); labels by class."""
    from dslc.runtime.data import images
    root = ctx.folder(args["root"])
    if not root.is_dir():
        raise UserError(f"image_folder: no folder {root}" + (" (it is a file)" if root.exists() else ""))
    spec = (ctx.like or {}).get("image") or _image_spec(args)
    classes = (ctx.like or {}).get("labels") or args.get("classes")
    if classes is None:
        found = images.class_folders(root)
        checked = (ctx.facts or {}).get("labels")
        if not found:
            raise UserError(f"image_folder: {root} has no class folders (one folder of pictures per class)")
        if checked is not None and list(checked) != found:
            raise UserError(f"image_folder: the class folders under {root} ({', '.join(found)}) differ from those "
                            f"`dslc check` found ({', '.join(checked)}): check the spec again, or give the classes")
        classes = found
    x, y, files = images.load_folder(root, spec, list(classes))
    return SourceData(columns={"image": x, "label": y},
                      facts={"kind": "image", "labels": list(classes), "classes": len(classes), "image": spec,
                             "files": len(files)}, root=str(root))


def _image_spec(args: dict) -> dict:
    size = [args["size"]] * 2 if isinstance(args["size"], int) else list(args["size"])
    size = size * 2 if len(size) == 1 else size
    return {"size": size, "channels": args["channels"], "mean": args.get("mean"), "std": args.get("std")}


# ---------------------------------------------------------------- columns written in the spec


def load_table(args: dict, ctx: LoadContext) -> SourceData:
    """The columns written in the spec: numbers, or names (a category column)."""
    cells = {name: list(values) for name, values in args["columns"].items()}
    table = Table("the table source", cells, None, MISSING, list(cells))
    return SourceData(columns={}, facts={"kind": "table"}, table=table)


def load_generate(args: dict, ctx: LoadContext) -> SourceData:
    """n rows; each column an expression over the columns before it (random draws from the seed)."""
    n = args["n"]
    rng = np.random.default_rng(args["seed"] if args.get("seed") is not None else ctx.seed)
    columns: dict[str, np.ndarray] = {}
    for name, expr in args["columns"].items():
        columns[name] = _one_per_row(evaluate_column(expr, columns, n, rng), name, n)
    return SourceData(columns=columns, facts={"kind": "table"})


def load_sequence(args: dict, ctx: LoadContext) -> SourceData:
    """Columns over t = 0, dt, 2dt, ...; cut into `windows` consecutive windows of [length, 1]."""
    windows, length = args["windows"], args["length"]
    n = windows * length
    t = args["dt"] * np.arange(n, dtype=np.float64)
    rng = np.random.default_rng(ctx.seed)
    env: dict[str, np.ndarray] = {"t": t}
    columns: dict[str, np.ndarray] = {}
    for name, expr in args["columns"].items():
        env[name] = _one_per_row(evaluate_column(expr, env, n, rng), name, n)
        columns[name] = env[name].reshape(windows, length, 1)
    return SourceData(columns=columns, facts={"kind": "sequence"})


def _one_per_row(values: np.ndarray, name: str, n: int) -> np.ndarray:
    if values.shape != (n,):
        raise UserError(f"column '{name}' has shape {list(values.shape)}, not one number per row ({n} rows)")
    return values


# ---------------------------------------------------------------- CSV files


def _column_index(path: Path, header: list[str], name: str) -> int:
    if name not in header:
        from dslc.dsl.diagnostics import did_you_mean
        hint = did_you_mean(name, header)
        raise UserError(f"{path} has no column '{name}'" + (f"; {hint}" if hint else "")
                        + f" (columns: {', '.join(header)})")
    return header.index(name)


def _sample(path: Path, source: str) -> tuple[Path, str | None]:
    """`path`, or the bundled copy of a file of that name when `path` is not there (with a notice)."""
    sample = bundled(path)
    if sample is None:
        return path, None
    return sample, _notify(f"{source}: {path} does not exist; using the bundled copy {sample}")


def load_csv(args: dict, ctx: LoadContext) -> SourceData:
    """The raw cells of a CSV file, by header name: the listed `columns`, else every column. What each column
    is (numbers, categories) and what its missing cells become is the data's recipe (runtime/data/columns.py)."""
    path, notice = _sample(ctx.file(args["path"]), "csv")
    text = read_csv(path, args.get("delimiter") or ",")
    header = text.header
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise UserError(f"{path}: the header names column(s) {', '.join(dup)} more than once")
    names = args.get("columns") or header
    cells = {}
    for name in names:
        i = _column_index(path, header, name)
        cells[name] = [row[i] if i < len(row) else None for row in text.rows]
    markers = tuple(args["missing"]) if args.get("missing") is not None else MISSING
    table = Table(str(path), cells, text.lines, markers, header, widths=[len(row) for row in text.rows])
    return SourceData(columns={}, facts={"kind": "table"}, root=str(path), notice=notice, table=table)


def load_text_csv(args: dict, ctx: LoadContext) -> SourceData:
    """Texts tokenised into left-padded id sequences, and class indices, from two columns of a CSV file."""
    path, notice = _sample(ctx.file(args["path"]), "text_csv")
    text = read_csv(path)
    header, rows = text.header, text.rows
    ti = _column_index(path, header, args["text"])
    li = _column_index(path, header, args["label"])
    train_facts = ctx.like or {}
    wanted = args.get("labels") or train_facts.get("labels")
    found = [(row[ti] if ti < len(row) else "", row[li].strip()) for row in rows if li < len(row)]
    labels = list(wanted) if wanted else sorted({label for _, label in found})
    index = {label: i for i, label in enumerate(labels)}
    kept = [(t, index[label]) for t, label in found if label in index]
    if not kept:
        seen = sorted({label for _, label in found})[:10]
        raise UserError(f"{path}: no row has a label in {labels} (column '{args['label']}' holds: {', '.join(seen)})")
    missing = [label for label in labels if label not in {lab for _, lab in found}]
    if missing and not ctx.like:
        raise UserError(f"{path}: no row has the label(s) {', '.join(map(repr, missing))} in column '{args['label']}'")
    tokenizer = train_facts.get("tokenizer")     # a validation/test file is encoded like the training file
    if tokenizer is None:
        tokenizer = {"kind": args["tokenizer"], "lowercase": args["lowercase"], "max_len": args["max_len"],
                     "vocab": None, "pad_side": "left"}
    tokens = [text_lib.tokenize(t, tokenizer["kind"], tokenizer["lowercase"]) for t, _ in kept]
    if tokenizer["vocab"] is None:
        tokenizer["vocab"] = text_lib.build_vocab(tokens, args["vocab"], args["min_count"])
    ids = text_lib.encode(tokens, tokenizer["vocab"], tokenizer["max_len"])
    y = np.fromiter((c for _, c in kept), dtype=np.int64, count=len(kept))
    facts = {"kind": "text", "labels": labels, "classes": len(labels), "tokenizer": tokenizer,
             "dropped_rows": len(rows) - len(kept)}
    return SourceData(columns={"tokens": ids, "label": y}, facts=facts, root=str(path), notice=notice)


def load_text_windows(args: dict, ctx: LoadContext) -> SourceData:
    """A text column as one token stream (texts joined by `separator`) cut into windows of `length` tokens, each
    with the next token at every step: what a language model learns to predict."""
    path, notice = _sample(ctx.file(args["path"]), "text_windows")
    text = read_csv(path)
    header, rows = text.header, text.rows
    ti = _column_index(path, header, args["text"])
    texts = [row[ti] for row in rows if ti < len(row) and row[ti].strip()]
    if not texts:
        raise UserError(f"{path}: column '{args['text']}' holds no text")
    train_facts = ctx.like or {}
    tokenizer = train_facts.get("tokenizer")     # a validation/test file is encoded like the training file
    kind, lowercase = args["tokenizer"], args["lowercase"]
    stream = text_lib.token_stream(texts, kind, lowercase, args["separator"])
    if tokenizer is None:
        tokenizer = {"kind": kind, "lowercase": lowercase, "max_len": args["length"], "pad_side": "left",
                     "vocab": text_lib.build_vocab([stream], args["vocab"]), "separator": args["separator"]}
    length = args["length"]
    stride = args.get("stride") or length
    ids = text_lib.encode([stream], tokenizer["vocab"], len(stream))[0]
    tokens, following = text_lib.windows(ids, length, stride)
    if not len(tokens):
        raise UserError(f"{path}: {len(ids)} tokens are too few for one window of {length} and its next token")
    facts = {"kind": "text_windows", "tokenizer": tokenizer}
    return SourceData(columns={"tokens": tokens, "next": following}, facts=facts, root=str(path), notice=notice)
