"""The data readers of an ejected train.py: one function per data source, returning numpy columns by name.

Each reader reads what dslc's loader (runtime/data/sources.py) reads, the same
way: the kit's CSV reader, tokeniser and picture transform (dslc/kit), the
spec's own expressions for `generate` and `sequence` (compiler/emit_expr.py),
torchvision for MNIST. A text reader also returns what it fitted (the
vocabulary and labels), which the readers of the held-out splits take.
Nothing here imports torch.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from .data_files import bundled
from .emit_expr import SourceExpr, py
from .emit_python import INDENT, local
from .ir import CheckedSpec, SourceIR

# Names train.py itself uses at module level: spec names are renamed around them (`text` -> `text_`).
TRAIN_NAMES = {"np", "torch", "F", "torchvision", "script", "tables", "Split", "split_rows", "read_csv",
               "read_folder", "text", "CONFIG", "STATISTICS", "COLUMNS", "MISSING", "DATA_FILE", "DATA_ROOT"}
READER_LOCALS = TRAIN_NAMES | {"n", "seed", "rng", "windows", "length", "dt", "like"}
TEXT_SOURCES = ("text_csv", "text_windows")
WIDTH = 110                 # docstrings are wrapped to this width
IMAGE_SOURCES = ("mnist", "fashion_mnist")


class EjectError(Exception):
    """A spec uses something train.py cannot be written for; the message says what."""


class Code:
    """Lines of Python being written, and the import lines they need."""

    def __init__(self):
        self.lines: list[str] = []
        self.imports: set[str] = set()

    def add(self, *lines: str, depth: int = 0) -> None:
        self.lines += [(INDENT * depth + line) if line else "" for line in lines]

    def block(self, text: str, depth: int = 0) -> None:
        """Add a dedented multi-line snippet, indented to `depth`."""
        for line in textwrap.dedent(text).strip("\n").splitlines():
            self.add(line, depth=depth if line else 0)

    def function(self, signature: str, doc: str, *body: str) -> None:
        """`def signature:` with its docstring and body lines, after two blank lines."""
        self.add("", "", f"def {signature}:")
        if len(doc) + 10 > WIDTH:
            self.add(*textwrap.wrap(f'"""{doc}', WIDTH - 4), '"""', *body, depth=1)
        else:
            self.add(f'"""{doc}"""', *body, depth=1)


def data_path(checked: CheckedSpec, source: SourceIR) -> tuple[str, str] | None:
    """(argument, default) of a source read from disk: `root` (a folder) or `path` (a file), where the spec points."""
    p = checked.source.path
    spec_dir = Path(p).resolve().parent if p not in ("<spec>", "-", "") else Path.cwd()
    for kind in ("root", "path"):
        if kind in source.args:
            where = Path(source.args[kind]).expanduser()
            where = where if where.is_absolute() else (spec_dir / where).resolve()
            if kind == "path":
                where = bundled(where) or where       # dslc's own copy of a file it bundles, as dslc falls back to it
            return kind, str(where)
    return None


class SourceWriter:
    """Writes the reader function of one data source."""

    def __init__(self, checked: CheckedSpec, code: Code, raw: bool = False):
        self.checked, self.code = checked, code
        self.raw = raw              # a table's cells as they are (train.py types, fills and encodes them)

    def write(self, func: str, source: SourceIR, seed) -> str:
        """Writes `func`; returns the call that reads the source (a text source with `like=` for a split)."""
        method = getattr(self, f"source_{source.name}", None)
        if method is None:
            raise EjectError(f"train.py cannot be written for the data source '{source.name}' yet")
        return method(func, source, seed)

    def source_mnist(self, func, source, seed, dataset="MNIST", classes="digits 0-9"):
        self.code.imports.update({"import numpy as np", "import torchvision"})
        self.code.function(
            f"{func}(root, train)",
            f"{dataset} under ROOT/{dataset}/raw (torchvision layout): image [N, 1, 28, 28] in [0, 1], label [N] "
            f"({classes}).",
            f"dataset = torchvision.datasets.{dataset}(root, train=train, download={source.args.get('download', True)})",
            "image = dataset.data.numpy().astype(np.float32) * np.float32(1 / 255)",
            'return {"image": image.reshape(-1, 1, 28, 28), "label": dataset.targets.numpy().astype(np.int64)}')
        return f"{func}(data_root, train=True)"

    def source_fashion_mnist(self, func, source, seed):
        return self.source_mnist(func, source, seed, "FashionMNIST", "10 kinds of clothing")

    def source_image_folder(self, func, source, seed):
        self.code.imports.add("from dslc_kit.pictures import read_folder")
        a = source.args
        size = [a["size"]] * 2 if isinstance(a["size"], int) else list(a["size"])
        size = size * 2 if len(size) == 1 else size
        spec = {"size": size, "channels": a["channels"], "mean": a.get("mean"), "std": a.get("std")}
        classes = list(a.get("classes") or source.facts.get("labels"))
        self.code.function(
            f"{func}(root)", f"Every picture under root/<class>/ for the classes {', '.join(classes)}, as "
            f"{'grey' if a['channels'] == 1 else 'RGB'} {size[0]}x{size[1]} images in 0-1"
            f"{', normalised' if a.get('mean') else ''}; labels by class.",
            f"image, label = read_folder(root, {py(classes)}, {py(spec)})",
            'return {"image": image, "label": label}')
        return f"{func}(data_root)"

    def source_table(self, func, source, seed):
        def values(v):
            return py(list(v)) if self.raw else f"np.array({py([float(x) for x in v])})"
        if not self.raw:
            self.code.imports.add("import numpy as np")
        self.code.function(f"{func}()", "The columns written in the spec.", "return {",
                           *[f'{INDENT}"{name}": {values(v)},' for name, v in source.args["columns"].items()], "}")
        return f"{func}()"

    def _columns(self, source) -> tuple[list[str], bool]:
        """`name = expr` lines for the columns of generate/sequence; whether they draw random numbers."""
        self.code.imports.add("import numpy as np")
        writer = SourceExpr("numpy", lambda ref: local(ref.name, READER_LOCALS))
        lines = []
        for name, node in source.args["columns"].items():
            text = writer(node)[0]
            lines.append(f"{local(name, READER_LOCALS)} = {text if node.batched else f'np.full(n, {text})'}")
        return lines, "rng" in writer.uses

    def source_generate(self, func, source, seed):
        rows_seed = source.args.get("seed") if source.args.get("seed") is not None else seed
        lines, random = self._columns(source)
        names = ", ".join(f'"{c}": {local(c, READER_LOCALS)}' for c in source.args["columns"])
        self.code.function(f"{func}(n={source.args['n']}, seed={py(rows_seed)})",
                           "n rows computed from the expressions of the spec (random draws from the seed).",
                           *(["rng = np.random.default_rng(seed)"] if random else []), *lines, f"return {{{names}}}")
        return f"{func}()"

    def source_sequence(self, func, source, seed):
        a = source.args
        lines, random = self._columns(source)
        names = ", ".join(f'"{c}": {local(c, READER_LOCALS)}.reshape(windows, length, 1)' for c in a["columns"])
        self.code.function(f"{func}(windows={a['windows']}, length={a['length']}, dt={py(a['dt'])})",
                           "Columns over t = 0, dt, 2dt, ..., cut into consecutive windows of [length, 1].",
                           "n = windows * length", "t = dt * np.arange(n, dtype=np.float64)",
                           *([f"rng = np.random.default_rng({py(seed)})"] if random else []), *lines,
                           f"return {{{names}}}")
        return f"{func}()"

    def source_csv(self, func, source, seed):
        self.code.imports.add("from dslc_kit.csv_text import read_csv")
        columns = source.args.get("columns")
        if not columns or self.raw:           # the columns the data block reads (others may not be numbers)
            columns = self.checked.data.columns_read
        if self.raw:
            doc, value = ("The cells of the columns read, by header name (None where a row is short).",
                          "[row[header.index(name)] if header.index(name) < len(row) else None for row in rows]")
        else:
            self.code.imports.add("import numpy as np")
            doc, value = "Numeric columns of a CSV file, by header name.", \
                "np.array([float(row[header.index(name)]) for row in rows])"
        self.code.function(f"{func}(path)", doc, f"header, rows, _ = read_csv(path, {py(source.args.get('delimiter') or ',')})",
                           f"return {{name: {value} for name in {py(list(columns))}}}")
        return f"{func}(data_path)"

    def source_text_csv(self, func, source, seed):
        self.code.imports.update({"import numpy as np", "from dslc_kit import text",
                                  "from dslc_kit.csv_text import read_csv"})
        a = source.args
        labels = py(list(a["labels"])) if a["labels"] else "sorted({label for _, label in found})"
        self.code.function(
            f"{func}(path, like=None)",
            f"Texts as token ids [N, {a['max_len']}] ({a['tokenizer']} tokens; 0 pads on the left, 1 is unknown, "
            f"then the {a['vocab']} most frequent tokens) and labels as class indices; a held-out file takes the "
            f"training file's vocabulary and labels (`like`). Returns the columns and those.",
            "header, rows, _ = read_csv(path)",
            f'text_at, label_at = header.index({py(a["text"])}), header.index({py(a["label"])})',
            'found = [(row[text_at] if text_at < len(row) else "", row[label_at].strip()) '
            "for row in rows if label_at < len(row)]",
            f'labels = like["labels"] if like else {labels}',
            "kept = [(t, labels.index(label)) for t, label in found if label in labels]",
            f"tokens = [text.tokenize(t, {py(a['tokenizer'])}, {a['lowercase']}) for t, _ in kept]",
            f'vocab = like["vocab"] if like else text.build_vocab(tokens, {a["vocab"]}, {a["min_count"]})',
            'columns = {"tokens": text.encode(tokens, vocab, ' + str(a["max_len"]) + '), '
            '"label": np.array([c for _, c in kept], dtype=np.int64)}',
            'return columns, {"vocab": vocab, "labels": labels}')
        return f"{func}(data_path)"

    def source_text_windows(self, func, source, seed):
        self.code.imports.update({"from dslc_kit import text", "from dslc_kit.csv_text import read_csv"})
        a = source.args
        length, stride = a["length"], a.get("stride") or a["length"]
        self.code.function(
            f"{func}(path, like=None)",
            f"Column {py(a['text'])} as one stream of {a['tokenizer']} tokens cut into windows of {length} (every "
            f"{stride} tokens): tokens and the next token at each step (0 pads, 1 is unknown, then the {a['vocab']} "
            "most frequent tokens; a held-out file takes the training file's vocabulary). Returns the columns "
            "and the vocabulary.",
            "header, rows, _ = read_csv(path)",
            f'text_at = header.index({py(a["text"])})',
            "texts = [row[text_at] for row in rows if text_at < len(row) and row[text_at].strip()]",
            f"stream = text.token_stream(texts, {py(a['tokenizer'])}, {a['lowercase']}, {py(a['separator'])})",
            f'vocab = like["vocab"] if like else text.build_vocab([stream], {a["vocab"]})',
            f"tokens, following = text.windows(text.encode([stream], vocab, len(stream))[0], {length}, {stride})",
            'return {"tokens": tokens, "next": following}, {"vocab": vocab}')
        return f"{func}(data_path)"
