"""The train.py and README.md of an ejected spec (`dslc emit --python DIR`): dslc's training, in plain PyTorch.

train.py does what `dslc train` does for the spec, step for step: the same
data (read, computed, cast, reshaped and split the same way), the same
seeding and initialisation order, the same batches and shuffles, loss,
optimizer, schedule and loop, and it prints its log and evaluation lines as
dslc does, so with the same seed the numbers agree. Only what the spec uses
is written (no clipping code without clip_grad_norm, no evaluation without a
split). The code uses numpy, torch and (for MNIST) torchvision, never dslc.
Nothing here imports torch.
"""

from __future__ import annotations

import math
from pathlib import Path


from .data_files import bundled

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")   # runtime/data/images.py
from .emit_expr import SourceExpr
from .emit_tables import HELPERS, SCALE_HELPERS, SPLIT_ROWS, UNSCALE_HELPER, column_plans, fitted_nodes, markers
from .emit_python import INDENT, attr, local, py
from .ir import CheckedSpec, Fitted, Ref, SourceIR, walk
from .layers import LAYERS
from .metrics import METRICS
from .optimizers import OPTIMIZERS
from .schedules import SCHEDULES
from .shapes import DTYPES, TensorShape


class EjectError(Exception):
    """A spec uses something train.py cannot be written for; the message says what."""


# ---------------------------------------------------------------- writing helpers


class Code:
    """Lines of Python being written, and the imports they need."""

    def __init__(self):
        self.lines: list[str] = []
        self.imports: set[str] = set()

    def add(self, *lines: str, depth: int = 0) -> None:
        self.lines += [(INDENT * depth + line) if line else "" for line in lines]

    def block(self, text: str, depth: int = 0) -> None:
        """Add a dedented multi-line snippet (its first line empty), indented to `depth`."""
        import textwrap
        for line in textwrap.dedent(text).strip("\n").splitlines():
            self.add(line, depth=depth if line else 0)


def _num(v) -> str:
    """A float literal as a Python float (`2.0`, `0.001`)."""
    return repr(float(v))


def _wrap(text: str, needed: bool) -> str:
    return f"({text})" if needed else text


_BINARY = {"+": 1, "-": 1, "*": 2, "/": 2}


def _binop(op: str, left: tuple[str, int], right: tuple[str, int]) -> tuple[str, int]:
    """Python source for `left op right` with the fewest parentheses (sources carry their precedence)."""
    if op == "**":
        return f"{_wrap(left[0], left[1] <= 4)} ** {_wrap(right[0], right[1] < 3)}", 4
    p = _BINARY[op]
    return f"{_wrap(left[0], left[1] < p)} {op} {_wrap(right[0], right[1] <= p)}", p


# ---------------------------------------------------------------- data expressions (numpy)


# ---------------------------------------------------------------- loss expressions (torch)


LOSS_LOCALS = {"model", "output", "inputs", "targets"}       # compute_loss's own names
ARRAY_LOCALS = {"columns", "inputs", "targets"}              # model_arrays's
READER_LOCALS = {"n", "seed", "rng", "windows", "length", "dt"}   # the expression readers'


class LossNames:
    """How compute_loss names what a loss reads: `output`, the targets and inputs (unpacked to locals), `model.PARAM`."""

    def __init__(self, checked: CheckedSpec):
        self.targets = {name: i for i, name in enumerate(checked.data.target_names)}
        self.inputs = {name: i for i, name in enumerate(checked.model.inputs)}
        self.used_targets: dict[str, int] = {}
        self.used_inputs: dict[str, int] = {}

    def __call__(self, ref: Ref) -> str:
        if ref.role == "output":
            return "output" if ref.index is None else f"output[{ref.index}]"
        if ref.role == "param":
            return attr("model", ref.name)
        if ref.role == "target":
            self.used_targets[ref.name] = self.targets[ref.name]
        elif ref.role == "input":
            self.used_inputs[ref.name] = self.inputs[ref.name]
        return self.python(ref.name)

    def python(self, name: str) -> str:
        """The local a target or input is unpacked into (a target named by its expression: `target_0`)."""
        if not name.isidentifier():
            name = f"target_{self.targets.get(name, 0)}"
        return local(name, LOSS_LOCALS)


# ---------------------------------------------------------------- data sources


def _data_paths(checked: CheckedSpec, source: SourceIR) -> tuple[str, str] | None:
    """(argument name, default) for a source read from disk: the folder or file the spec points at."""
    spec_dir = _spec_dir(checked)
    if "root" in source.args:
        root = Path(source.args["root"]).expanduser()
        return "root", str(root if root.is_absolute() else (spec_dir / root).resolve())
    if "path" in source.args:
        path = Path(source.args["path"]).expanduser()
        path = path if path.is_absolute() else (spec_dir / path).resolve()
        path = bundled(path) or path          # dslc's own copy of a file it bundles, where dslc falls back to it
        return "path", str(path)
    return None


def _spec_dir(checked: CheckedSpec) -> Path:
    p = checked.source.path
    return Path(p).resolve().parent if p not in ("<spec>", "-", "") else Path.cwd()


class SourceWriter:
    """Writes the reader function of one data source: `def read_NAME(...) -> dict of numpy columns`."""

    def __init__(self, checked: CheckedSpec, code: Code, raw: bool = False):
        self.checked = checked
        self.code = code
        self.lets = checked.lets
        self.raw = raw              # a table's cells as they are (train.py types, fills and encodes them)

    def write(self, func: str, source: SourceIR, seed) -> str:
        """Writes `func`; returns the call that reads the source's training columns."""
        method = getattr(self, f"source_{source.name}", None)
        if method is None:
            raise EjectError(f"train.py cannot be written for the data source '{source.name}' yet")
        return method(func, source, seed)

    # -- images

    def _idx(self, func, source, dataset, classes_doc):
        self.code.imports.add("torchvision")
        download = source.args.get("download", True)
        self.code.add("", "", f"def {func}(root, train):")
        self.code.add(f'"""{dataset} under ROOT/{dataset}/raw (torchvision layout): image [N, 1, 28, 28] in [0, 1], '
                      f'label [N] ({classes_doc})."""', depth=1)
        self.code.block(f"""
            dataset = torchvision.datasets.{dataset}(root, train=train, download={download})
            image = dataset.data.numpy().astype(np.float32) * np.float32(1 / 255)
            return {{"image": image.reshape(-1, 1, 28, 28), "label": dataset.targets.numpy().astype(np.int64)}}
        """, depth=1)
        return f"{func}(data_root, train=True)"

    def source_mnist(self, func, source, seed):
        return self._idx(func, source, "MNIST", "digits 0-9")

    def source_fashion_mnist(self, func, source, seed):
        return self._idx(func, source, "FashionMNIST", "10 kinds of clothing")

    def source_image_folder(self, func, source, seed):
        self.code.imports.update({"Image", "Path"})
        a = source.args
        size = [a["size"]] * 2 if isinstance(a["size"], int) else list(a["size"])
        size = size * 2 if len(size) == 1 else size
        classes = a.get("classes") or source.facts.get("labels")
        mode = "L" if a["channels"] == 1 else "RGB"
        self.code.add("", "", f"def {func}(root):")
        self.code.add(f'"""Every picture under root/<class>/ for the classes {", ".join(classes)}: {mode}, resized to '
                      f'{size[0]}x{size[1]}, scaled to 0-1{", normalised" if a.get("mean") else ""}; labels by class."""',
                      depth=1)
        self.code.add(f"classes = {py(list(classes))}", "images, labels = [], []", depth=1)
        self.code.block(f"""
            for label, name in enumerate(classes):
                files = sorted(p for p in (Path(root) / name).iterdir() if p.is_file() and not p.name.startswith(".")
                               and p.suffix.lower() in {py(IMAGE_SUFFIXES)})
                for path in files:
                    with Image.open(path) as picture:
                        picture.load()
                        picture = picture.convert({py(mode)})
                        if picture.size != ({size[1]}, {size[0]}):
                            picture = picture.resize(({size[1]}, {size[0]}), Image.BILINEAR)
                        pixels = np.asarray(picture, dtype=np.float32) * np.float32(1 / 255)
                    images.append(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))
                    labels.append(label)
            image = np.stack(images)
        """, depth=1)
        if a.get("mean") is not None:
            self.code.add(f"mean = np.asarray({py(list(a['mean']))}, dtype=np.float32).reshape(-1, 1, 1)",
                          f"std = np.asarray({py(list(a['std']))}, dtype=np.float32).reshape(-1, 1, 1)",
                          "image = (image - mean) / std", depth=1)
        self.code.add('return {"image": image.astype(np.float32), "label": np.asarray(labels, dtype=np.int64)}',
                      depth=1)
        return f"{func}(data_root)"

    # -- columns written in the spec

    def source_table(self, func, source, seed):
        self.code.add("", "", f"def {func}():")
        self.code.add('"""The columns written in the spec."""', depth=1)
        self.code.add("return {", depth=1)
        for name, values in source.args["columns"].items():
            if self.raw:
                self.code.add(f'"{name}": {py(list(values))},', depth=2)
            else:
                self.code.add(f'"{name}": np.array({py([float(v) for v in values])}),', depth=2)
        self.code.add("}", depth=1)
        return f"{func}()"

    def _expression_columns(self, source, n: str, extra: dict[str, int]) -> tuple[list[str], bool]:
        """`name = expr` lines for the columns of generate/sequence; whether they draw random numbers."""
        lines = []
        writer = SourceExpr("numpy", lambda ref: local(ref.name, READER_LOCALS))
        for name, node in source.args["columns"].items():
            text = writer(node)[0]
            if not node.batched:                       # a number: one per row
                text = f"np.full({n}, {text})"
            lines.append(f"{local(name, READER_LOCALS)} = {text}")
        return lines, "rng" in writer.uses

    def source_generate(self, func, source, seed):
        n = source.args["n"]
        rows_seed = source.args.get("seed") if source.args.get("seed") is not None else seed
        lines, random = self._expression_columns(source, "n", {})
        self.code.add("", "", f"def {func}(n={n}, seed={py(rows_seed)}):")
        self.code.add('"""n rows computed from the expressions of the spec (random draws from the seed)."""', depth=1)
        if random:
            self.code.add("rng = np.random.default_rng(seed)", depth=1)
        self.code.add(*lines, depth=1)
        names = list(source.args["columns"])
        self.code.add("return {" + ", ".join(f'"{c}": {local(c, READER_LOCALS)}' for c in names) + "}", depth=1)
        return f"{func}()"

    def source_sequence(self, func, source, seed):
        windows, length, dt = source.args["windows"], source.args["length"], source.args["dt"]
        lines, random = self._expression_columns(source, "n", {"t": 0})
        self.code.add("", "", f"def {func}(windows={windows}, length={length}, dt={py(dt)}):")
        self.code.add('"""Columns over t = 0, dt, 2dt, ..., cut into consecutive windows of [length, 1]."""', depth=1)
        self.code.add("n = windows * length", "t = dt * np.arange(n, dtype=np.float64)", depth=1)
        if random:
            self.code.add(f"rng = np.random.default_rng({py(seed)})", depth=1)
        self.code.add(*lines, depth=1)
        names = list(source.args["columns"])
        self.code.add("return {" + ", ".join(f'"{c}": {local(c, READER_LOCALS)}.reshape(windows, length, 1)'
                                             for c in names) + "}", depth=1)
        return f"{func}()"

    # -- CSV files

    def _open_text(self):
        if "open_text" in self.code.imports:
            return
        self.code.imports.update({"open_text", "bz2", "gzip", "csv"})
        self.code.add("", "")
        self.code.block('''
            def open_text(path):
                """A text stream for a .csv, .csv.gz or .csv.bz2 file (UTF-8; a byte-order mark is skipped)."""
                if str(path).endswith(".gz"):
                    return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
                if str(path).endswith(".bz2"):
                    return bz2.open(path, "rt", encoding="utf-8-sig", newline="")
                return open(path, encoding="utf-8-sig", newline="")


            def read_csv(path, delimiter=","):
                """The header and the non-empty rows of a CSV file."""
                csv.field_size_limit(1 << 30)
                with open_text(path) as f:
                    reader = csv.reader(f, delimiter=delimiter)
                    header = [h.strip() for h in next(reader)]
                    rows = [row for row in reader if any(cell.strip() for cell in row)]
                return header, rows
        ''')

    def source_csv(self, func, source, seed):
        self._open_text()
        columns = source.args.get("columns")
        delimiter = source.args.get("delimiter") or ","
        self.code.add("", "", f"def {func}(path):")
        self.code.add('"""The cells of the columns read, by header name (None where a row is short)."""' if self.raw
                      else '"""Numeric columns of a CSV file, by header name."""', depth=1)
        self.code.add(f"header, rows = read_csv(path, {py(delimiter)})", depth=1)
        if not columns or self.raw:           # the columns the data block reads (others may not be numbers)
            columns = self.checked.data.columns_read
        wanted = py(list(columns))
        if self.raw:
            self.code.add(f"return {{name: [row[header.index(name)] if header.index(name) < len(row) else None "
                          f"for row in rows] for name in {wanted}}}", depth=1)
        else:
            self.code.add(f"return {{name: np.array([float(row[header.index(name)]) for row in rows]) "
                          f"for name in {wanted}}}", depth=1)
        return f"{func}(data_path)"

    def _word_pattern(self):
        if "WORD" in self.code.imports:
            return
        self.code.imports.update({"WORD", "re", "Counter"})
        self.code.add("", "", "# A word is a run of letters, digits and apostrophes; any other non-space character "
                      "is a token of its own.")
        self.code.add("WORD = re.compile(r\"(?:[^\\W_]|')+|\\S\")")

    def source_text_csv(self, func, source, seed):
        self._open_text()
        self.code.imports.update({"re", "Counter"})
        a = source.args
        labels = py(list(a["labels"])) if a["labels"] else None
        tokenizer = "WORD.findall(text.lower())" if a["tokenizer"] == "word" else "list(text.lower())"
        if not a["lowercase"]:
            tokenizer = tokenizer.replace("text.lower()", "text")
        self._word_pattern()
        self.code.add("", "", f"def {func}(path):")
        self.code.add(f'"""Texts as token ids [N, {a["max_len"]}] (0 padding, 1 unknown, then the {a["vocab"]} most '
                      f'frequent tokens; cut to the first tokens, padded on the left) and labels as class indices."""',
                      depth=1)
        self.code.add("header, rows = read_csv(path)", depth=1)
        self.code.add(f'text_at, label_at = header.index({py(a["text"])}), header.index({py(a["label"])})', depth=1)
        self.code.add('found = [(row[text_at] if text_at < len(row) else "", row[label_at].strip()) '
                      'for row in rows if label_at < len(row)]', depth=1)
        if labels:
            self.code.add(f"labels = {labels}", depth=1)
        else:
            self.code.add("labels = sorted({label for _, label in found})", depth=1)
        self.code.block(f"""
            kept = [(text, labels.index(label)) for text, label in found if label in labels]
            tokens = [{tokenizer} for text, _ in kept]
            counts = Counter(token for sequence in tokens for token in sequence)
            ranked = sorted((item for item in counts.items() if item[1] >= {a["min_count"]}), key=lambda kv: (-kv[1], kv[0]))
            vocab = ["<pad>", "<unk>"] + [token for token, _ in ranked[:{a["vocab"]}] if token not in ("<pad>", "<unk>")]
            index = {{token: i for i, token in enumerate(vocab)}}
            ids = np.zeros((len(tokens), {a["max_len"]}), dtype=np.int64)
            for row, sequence in enumerate(tokens):
                known = [index.get(token, 1) for token in sequence[:{a["max_len"]}]]
                if known:
                    ids[row, {a["max_len"]} - len(known):] = known
            label = np.array([c for _, c in kept], dtype=np.int64)
            return {{"tokens": ids, "label": label}}
        """, depth=1)
        return f"{func}(data_path)"

    def source_text_windows(self, func, source, seed):
        self._open_text()
        self.code.imports.add("Counter")
        a = source.args
        length, stride = a["length"], a.get("stride") or a["length"]
        text = "text.lower()" if a["lowercase"] else "text"
        if a["tokenizer"] == "word":
            self._word_pattern()
        self.code.add("", "", f"def {func}(path):")
        self.code.add(f'"""One stream of {a["tokenizer"]} tokens from column {py(a["text"])} cut into windows of '
                      f'{length} (every {stride} tokens): tokens and the next token at each step (0 padding, 1 '
                      f'unknown, then the {a["vocab"]} most frequent tokens)."""', depth=1)
        self.code.add("header, rows = read_csv(path)", depth=1)
        self.code.add(f'text_at = header.index({py(a["text"])})', depth=1)
        self.code.add("texts = [row[text_at] for row in rows if text_at < len(row) and row[text_at].strip()]",
                      depth=1)
        if a["tokenizer"] == "char":
            self.code.add(f"text = {py(a['separator'])}.join(texts)", f"stream = list({text})", depth=1)
        else:
            self.code.add(f"stream = [token for text in texts for token in WORD.findall({text}) + "
                          f"[{py(a['separator'])}]]", depth=1)
        self.code.block(f"""
            counts = Counter(stream)
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            vocab = ["<pad>", "<unk>"] + [token for token, _ in ranked[:{a["vocab"]}] if token not in ("<pad>", "<unk>")]
            index = {{token: i for i, token in enumerate(vocab)}}
            ids = np.array([index.get(token, 1) for token in stream], dtype=np.int64)
            windows = np.stack([ids[s:s + {length} + 1] for s in range(0, len(ids) - {length}, {stride})])
            return {{"tokens": windows[:, :-1], "next": windows[:, 1:]}}
        """, depth=1)
        return f"{func}(data_path)"


# ---------------------------------------------------------------- train.py


SCHEDULE_SOURCE = {
    "step": lambda a: f"torch.optim.lr_scheduler.StepLR(optimizer, {a['every']}, gamma={py(a['gamma'])})",
    "multistep": lambda a: f"torch.optim.lr_scheduler.MultiStepLR(optimizer, {py(a['milestones'])}, "
                           f"gamma={py(a['gamma'])})",
    "exponential": lambda a: f"torch.optim.lr_scheduler.ExponentialLR(optimizer, {py(a['gamma'])})",
    "cosine": lambda a: f"torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, total_steps), "
                        f"eta_min={py(a['min_lr'])})",
    "onecycle": lambda a: f"torch.optim.lr_scheduler.OneCycleLR(optimizer, {py(a['max_lr'])}, "
                          f"total_steps=max(1, total_steps), pct_start={py(a['warmup_fraction'])})",
    "reduce_on_plateau": lambda a: f"torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor={py(a['factor'])}, "
                                   f"patience={a['patience']})",
}

METRIC_SOURCE = {      # the values a metric averages: one per sample, or per step for scores at every step
    "accuracy": lambda a: "output.argmax(dim=-1) == target",
    "top_k": lambda a: f"(output.topk(min({a['k']}, output.shape[-1]), dim=-1).indices == target.unsqueeze(-1))"
                       ".any(dim=-1)",
    "mse": lambda a: "per_sample_mean((output - target.reshape(output.shape)) ** 2)",
    "mae": lambda a: "per_sample_mean((output - target.reshape(output.shape)).abs())",
    "rmse": lambda a: "per_sample_mean((output - target.reshape(output.shape)) ** 2)",      # rooted at the end
}


def _entry(table: dict, name: str, what: str):
    """How a catalog entry is written out; a new catalog entry without one is a clear EjectError."""
    if name not in table:
        raise EjectError(f"train.py cannot be written for the {what} '{name}' yet (add it to {__name__})")
    return table[name]


def call_text(args, call) -> str:
    """A catalog call as a spec writes it, arguments that differ from the defaults only: `adam(lr=0.01)`."""
    shown = [f"{a.name}={py(call.args[a.name])}" for a in args
             if a.required or a.name == "lr" or call.args.get(a.name) != a.default]
    return f"{call.name}({', '.join(shown)})"


def optimizer_source(call) -> str:
    """`torch.optim.Adam(model.parameters(), lr=0.001)`: the arguments that differ from the catalog's defaults."""
    opt = OPTIMIZERS[call.name]
    kw = []
    for a in opt.args:
        v = call.args[a.name]
        if a.name == "lr" or a.required or v != a.default:
            kw.append(f"{a.name}={py(tuple(v) if isinstance(v, list) else v)}")
    return f"torch.optim.{opt.torch_class}(model.parameters(), {', '.join(kw)})"


PREFIX = {"validation": "val", "test": "test"}     # how dslc names a split's metrics: val_loss, test_accuracy


class TrainWriter:
    """Writes train.py for the trained model of a checked spec."""

    def __init__(self, checked: CheckedSpec, spec_label: str, model_class: str):
        if checked.train is None or checked.data is None:
            raise EjectError("train.py needs the spec's data and train blocks")

        self.checked = checked
        self.data = checked.data
        self.tr = checked.train
        self.model = checked.model
        self.label = spec_label
        self.cls = model_class
        self.code = Code()
        self.paths: dict[str, tuple[str, str]] = {}
        self.plans = column_plans(checked)            # a table's categories, whole numbers, missing values
        if self.plans and any(p["kind"] == "text" for p in self.plans.values()):
            raise EjectError("train.py cannot be written yet for text columns of a table (its tokeniser and "
                             "vocabulary); `dslc train` trains this spec, and text_csv sources eject")
        self.fits = fitted_nodes(self.data.inputs + self.data.targets)     # standardize/min_max to fit

    # -- the pieces

    def splits(self) -> dict[str, str]:
        """role -> how the split is made: 'main' (fraction of the main source), 'own' (the source's test set),
        or 'source' (a source of its own)."""
        out = {}
        for role in ("validation", "test"):
            v = getattr(self.data, role)
            if isinstance(v, SourceIR):
                out[role] = "source"
            elif isinstance(v, float):
                out[role] = "fraction"
        if "test" not in out and self.data.test is None and self.data.source.name in ("mnist", "fashion_mnist"):
            out["test"] = "own"
        return out

    def evaluating(self) -> bool:
        schedule = SCHEDULES[self.tr.schedule.name].unit if self.tr.schedule else None
        return bool(self.splits() or self.tr.early_stopping or schedule == "metric")

    def readers(self) -> dict[str, str]:
        """Write the source readers; role -> the call that reads that role's columns."""
        writer = SourceWriter(self.checked, self.code, raw=self.plans is not None)
        seed = self.data.split_seed & (2 ** 63 - 1)
        calls = {"train": writer.write("read_data", self.data.source, seed)}
        paths = _data_paths(self.checked, self.data.source)
        if paths:
            self.paths["train"] = paths
        for i, role in enumerate(("validation", "test"), start=1):
            v = getattr(self.data, role)
            if not isinstance(v, SourceIR):
                continue
            images = v.name in ("mnist", "fashion_mnist")
            main = self.data.source
            if images and v.name == main.name:      # the same reader, perhaps another folder
                calls[role] = calls["train"]
            elif v.name == main.name == "generate" and v.args["columns"] == main.args["columns"]:
                seed = v.args["seed"] if v.args.get("seed") is not None else (self.data.split_seed, i)
                calls[role] = f"read_data(n={v.args['n']}, seed={py(seed)})"     # other rows of the same columns
            else:
                calls[role] = writer.write(f"read_{role}_data", v, (seed, i))
            if images:                      # an image source used as a split gives its own test set
                calls[role] = calls[role].replace("train=True", "train=False")
            p = _data_paths(self.checked, v)
            if p and p != self.paths.get("train"):
                calls[role] = calls[role].replace("data_root", py(p[1])).replace("data_path", py(p[1]))
        if self.splits().get("test") == "own":
            calls["test"] = calls["train"].replace("train=True", "train=False")
        return calls

    def arrays_function(self) -> None:
        """`model_arrays(columns)`: inputs and targets computed from the columns, cast and shaped for the model."""
        d, m = self.data, self.model
        writer = SourceExpr("numpy", lambda ref: local(ref.name, ARRAY_LOCALS), fitted=self.scaled("STATISTICS"))
        self.code.add("", "", "def model_arrays(columns):")
        ins = ", ".join(d.input_names)
        outs = ", ".join(d.target_names)
        self.code.add(f'"""Inputs [{ins}] and targets [{outs}] from the columns, cast and shaped as the model takes '
                      f'them."""', depth=1)
        for name in sorted(d.columns_read):
            self.code.add(f'{local(name, ARRAY_LOCALS)} = columns["{name}"]', depth=1)
        inputs = []
        for node, shape in zip(d.inputs, m.inputs.values()):
            text, precedence = writer(node)
            inputs.append(f"{_wrap(text, precedence < 9)}.astype(np.{DTYPES[shape.dtype]}){_reshape(node.shape, shape)}")
        targets = []
        for node in d.targets:
            text, precedence = writer(node)
            dtype = "np.int64" if node.shape.is_int else "np.float32"
            targets.append(f"{_wrap(text, precedence < 9)}.astype({dtype})")
        self.code.add(f"inputs = [{', '.join(inputs)}]", f"targets = [{', '.join(targets)}]",
                      "return inputs, targets", depth=1)

    def scaled(self, statistics: str):
        """How standardize/min_max (and an inverse) are written: with the k-th fitted statistics of `statistics`."""
        def write(node, arg: str) -> str:
            k = self.fits.index(node.of if node.of is not None else node)
            return f"{'unscale' if node.of is not None else 'scale'}({arg}, {statistics}[{k}])"
        return write

    def fit_function(self) -> None:
        """`fit_statistics(columns)`: each standardize/min_max's statistics over the training rows."""
        writer = SourceExpr("numpy", lambda ref: local(ref.name, ARRAY_LOCALS), fitted=self.scaled("statistics"))
        self.code.add("", "", "def fit_statistics(columns):")
        self.code.add('"""The statistics of standardize and min_max, over the training rows only (as dslc fits '
                      'them)."""', depth=1)
        used = sorted({r for node in self.fits for r in _column_refs(node.arg)})
        for name in used:
            self.code.add(f'{local(name, ARRAY_LOCALS)} = columns["{name}"]', depth=1)
        self.code.add("statistics = []", depth=1)
        for node in self.fits:
            self.code.add(f'statistics.append(fit_scale("{node.name}", {writer(node.arg)[0]}))', depth=1)
        self.code.add("return statistics", depth=1)

    def load_function(self, calls: dict[str, str]) -> None:
        if self.plans is not None or self.fits:
            return self.fitted_load_function(calls)
        splits = self.splits()
        fractions = {r: getattr(self.data, r) for r, how in splits.items() if how == "fraction"}
        args = []
        if "train" in self.paths:
            args.append("data_root" if self.paths["train"][0] == "root" else "data_path")
        self.code.add("", "", f"def load_data({', '.join(args)}):")
        self.code.add('"""Every split as (inputs, targets): lists of tensors, one per model input and per target."""',
                      depth=1)
        self.code.add(f"whole = model_arrays({calls['train']})", depth=1)
        if fractions:
            self.code.add(f"splits = split_fractions(whole, {py(fractions)}, seed={self.data.split_seed}, "
                          f"keep_order={not self.data.shuffle})", depth=1)
        else:
            self.code.add('splits = {"train": whole}', depth=1)
        for role, how in splits.items():
            if how in ("source", "own"):
                self.code.add(f'splits["{role}"] = model_arrays({calls[role]})', depth=1)
        self.code.add("return {role: to_tensors(*part) for role, part in splits.items()}", depth=1)
        if fractions:
            self.code.add("", "")
            self.code.block('''
                def split_fractions(whole, fractions, seed, keep_order):
                    """Hold out fractions of the samples: a seeded permutation, the first parts held out."""
                    n = len(whole[0][0])
                    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
                    parts, start = {}, 0
                    for role, fraction in fractions.items():
                        k = max(1, int(fraction * n))
                        parts[role] = order[start:start + k]
                        start += k
                    parts["train"] = order[start:]
                    if keep_order:
                        parts = {role: np.sort(index) for role, index in parts.items()}
                    return {role: ([a[index] for a in whole[0]], [a[index] for a in whole[1]])
                            for role, index in parts.items()}
            ''')
        self.code.add("", "")
        self.code.block('''
            def to_tensors(inputs, targets):
                return ([torch.from_numpy(np.ascontiguousarray(a)) for a in inputs],
                        [torch.from_numpy(np.ascontiguousarray(a)) for a in targets])


            def to_device(split, device):
                inputs, targets = split
                return [t.to(device) for t in inputs], [t.to(device) for t in targets]


            def batches(split, batch_size, generator=None):
                """One epoch of (inputs, targets) batches, in a random order drawn from `generator` when given."""
                tensors = split[0] + split[1]
                n = len(tensors[0])
                order = None if generator is None else torch.randperm(n, generator=generator).to(tensors[0].device)
                for start in range(0, n, batch_size):
                    if order is None:
                        chosen = [t[start:start + batch_size] for t in tensors]
                    else:
                        chosen = [t[order[start:start + batch_size]] for t in tensors]
                    yield chosen[:len(split[0])], chosen[len(split[0]):]
        ''')

    def fitted_load_function(self, calls: dict[str, str]) -> None:
        """load_data for data that is fitted on the training rows: split the rows first, fit (column recipes,
        statistics) on the training ones, then compute every split's arrays with what was fitted."""
        c = self.code
        splits = self.splits()
        fractions = {r: getattr(self.data, r) for r, how in splits.items() if how == "fraction"}
        if self.plans is not None:
            c.imports.add("Counter")
            c.add("", "", f"MISSING = {py(list(markers(self.checked)))}  # the cells that mean a missing value",
                  f"COLUMNS = {py(self.plans)}  # kind and missing-value policy of each column read")
            c.add("")
            c.block(HELPERS)
        if self.fits:
            c.add("", "")
            c.block(SCALE_HELPERS)
            self.fit_function()
        if fractions:
            c.add("", "")
            c.block(SPLIT_ROWS)
        args = []
        if "train" in self.paths:
            args.append("data_root" if self.paths["train"][0] == "root" else "data_path")
        c.add("", "", f"def load_data({', '.join(args)}):")
        c.add('"""Every split as (inputs, targets): lists of tensors, one per model input and per target. What is '
              'fitted (fills, categories, statistics) comes from the training rows only."""', depth=1)
        c.add(f"columns = {calls['train']}", depth=1)
        if self.plans is not None:
            c.add("columns = drop_missing(columns, COLUMNS)", depth=1)
        c.add("n = len(next(iter(columns.values())))", depth=1)
        if fractions:
            c.add(f"parts = split_rows(n, {py(fractions)}, seed={self.data.split_seed}, "
                  f"keep_order={not self.data.shuffle})", depth=1)
        else:
            c.add('parts = {"train": np.arange(n)}', depth=1)
        if self.plans is not None:
            c.add('recipes = fit_columns(columns, COLUMNS, parts["train"])',
                  "columns = encode_columns(columns, recipes)", depth=1)
        if self.fits:
            c.add('STATISTICS[:] = fit_statistics({name: values[parts["train"]] for name, values in columns.items()})',
                  depth=1)
        c.add("whole = model_arrays(columns)", depth=1)
        c.add("splits = {role: ([a[index] for a in whole[0]], [a[index] for a in whole[1]]) "
              "for role, index in parts.items()}", depth=1)
        for role, how in splits.items():
            if how in ("source", "own"):
                read = calls[role]
                if self.plans is not None and how == "source":
                    read = f"encode_columns(drop_missing({read}, COLUMNS), recipes)"
                c.add(f'splits["{role}"] = model_arrays({read})', depth=1)
        c.add("return {role: to_tensors(*part) for role, part in splits.items()}", depth=1)
        c.add("", "")
        c.block('''
            def to_tensors(inputs, targets):
                return ([torch.from_numpy(np.ascontiguousarray(a)) for a in inputs],
                        [torch.from_numpy(np.ascontiguousarray(a)) for a in targets])


            def to_device(split, device):
                inputs, targets = split
                return [t.to(device) for t in inputs], [t.to(device) for t in targets]


            def batches(split, batch_size, generator=None):
                """One epoch of (inputs, targets) batches, in a random order drawn from `generator` when given."""
                tensors = split[0] + split[1]
                n = len(tensors[0])
                order = None if generator is None else torch.randperm(n, generator=generator).to(tensors[0].device)
                for start in range(0, n, batch_size):
                    if order is None:
                        chosen = [t[start:start + batch_size] for t in tensors]
                    else:
                        chosen = [t[order[start:start + batch_size]] for t in tensors]
                    yield chosen[:len(split[0])], chosen[len(split[0]):]
        ''')

    def loss_function(self) -> None:
        loss = self.tr.loss
        names = LossNames(self.checked)
        writer = SourceExpr("torch", names, cast_targets=self.tr.precision != "fp32")
        body = writer(loss.node)[0]
        unpack = [f"{names.python(n)} = inputs[{i}]" for n, i in names.used_inputs.items()]
        unpack += [f"{names.python(n)} = targets[{i}]" for n, i in names.used_targets.items()]
        if "F" in writer.uses:
            self.code.imports.add("F")
        self.code.add("", "", "def compute_loss(model, output, inputs, targets):")
        self.code.add(f'"""loss = {loss.text}"""', depth=1)
        self.code.add(*unpack, f"return {body}", depth=1)

    def evaluate_function(self) -> None:
        metrics = self.tr.metrics
        self.code.add("", "")
        if any(isinstance(n, Fitted) for m in metrics for n in walk(m)):
            self.code.block(UNSCALE_HELPER)
            self.code.add("", "")
        needs_per_sample = any(m.name in ("mse", "mae", "rmse") for m in metrics)
        if needs_per_sample:
            self.code.block('''
                def per_sample_mean(values):
                    """The mean over each sample's values ([B] from [B, ...])."""
                    return values.reshape(values.shape[0], -1).mean(dim=1) if values.dim() > 1 else values
            ''')
            self.code.add("", "")
        self.code.add("@torch.no_grad()")
        self.code.add("def evaluate(model, split, batch_size):")
        keys = ", ".join(["loss"] + [m.key for m in metrics])
        self.code.add(f'"""{keys} over a whole split: sums over the batches divided by the number of samples."""',
                      depth=1)
        self.code.add("model.eval()", "n = len(split[0][0])", "total = torch.zeros((), dtype=torch.float64)", depth=1)
        for m in metrics:
            self.code.add(f"{m.key}, {m.key}_count = torch.zeros((), dtype=torch.float64), 0", depth=1)
        self.code.add("for inputs, targets in batches(split, batch_size or n):", depth=1)
        self.code.add("output = model(*inputs)", depth=2)
        self.code.add("total += compute_loss(model, output, inputs, targets).double() * len(inputs[0])", depth=2)
        if metrics:
            self.code.add("output, target = output.float(), targets[0]", depth=2)
            units = next((m for m in metrics if not isinstance(m.output, Ref)), None)
            if units is not None:            # a scaled target: value metrics in its column's units
                writer = SourceExpr("torch", lambda ref: "output" if ref.role == "output" else "target",
                                    fitted=self.scaled("STATISTICS"))
                self.code.add(f"output, target = {writer(units.output)[0]}, {writer(units.target)[0]}  "
                              f"# in the units of the target's column", depth=2)
        for m in metrics:
            self.code.add(f"values = {_entry(METRIC_SOURCE, m.name, 'metric')(m.kwargs)}",
                          f"{m.key} += values.sum().double()", f"{m.key}_count += values.numel()", depth=2)
        self.code.add("model.train()", depth=1)
        roots = {m.key for m in metrics if METRICS[m.name].root}
        values = ", ".join(['"loss": float(total / n)'] + [
            f'"{m.key}": math.sqrt(float({m.key} / {m.key}_count))' if m.key in roots
            else f'"{m.key}": float({m.key} / {m.key}_count)' for m in metrics])
        self.code.add(f"return {{{values}}}", depth=1)

    def report_function(self) -> None:
        self.code.add("", "")
        self.code.block('''
            def report(epoch, step, values):
                """One line per log or evaluation event, written as `dslc train` writes it."""
                parts = [f"epoch {epoch}", f"step {step}"]
                parts += [f"{name} {value:.6g}" for name, value in values.items() if value is not None]
                print("  ".join(parts), flush=True)


            def mean(losses):
                return float(torch.stack(losses).mean()) if losses else None
        ''')

    # -- main

    def main_function(self) -> None:
        c, tr, d = self.code, self.tr, self.data
        evaluating = self.evaluating()
        splits = self.splits()
        eval_roles = [r for r in ("validation", "test") if r in splits]
        carried = any(LAYERS[l.layer].recurrent and l.args["carry_state"]
                      for l in list(self.model.layers) + [l for b in self.model.blocks.values() for l in b.layers])
        schedule_unit = SCHEDULES[tr.schedule.name].unit if tr.schedule else None
        amp = tr.precision != "fp32"

        c.add("", "", "def main():")
        c.add(f'parser = argparse.ArgumentParser(description="Train {self.cls} as {self.label} says.")', depth=1)
        if "train" in self.paths:
            kind, default = self.paths["train"]
            if kind == "root":
                c.add('parser.add_argument("--data-root", default=DATA_ROOT, help="the folder holding the data '
                      '(torchvision layout)")', depth=1)
            else:
                c.add('parser.add_argument("--data", default=DATA_FILE, help="the data file")', depth=1)
        if tr.steps:
            c.add(f'parser.add_argument("--steps", type=int, default={tr.steps})', depth=1)
        else:
            c.add(f'parser.add_argument("--epochs", type=int, default={tr.epochs})', depth=1)
        c.add(f'parser.add_argument("--seed", type=int, default={tr.seed})', depth=1)
        c.add(f'parser.add_argument("--device", default={py(tr.device)}, help="cpu, cuda or auto")', depth=1)
        c.add('parser.add_argument("--out", default="model.pt", help="where to save the trained weights '
              '(a state_dict)")', depth=1)
        c.add("args = parser.parse_args()", "", depth=1)

        c.add('if args.device == "auto":', depth=1)
        c.add('args.device = "cuda" if torch.cuda.is_available() else "cpu"', depth=2)
        c.add("device = torch.device(args.device)", depth=1)
        load_args = {"root": "args.data_root", "path": "args.data"}.get(self.paths.get("train", ("",))[0], "")
        c.add(f"splits = {{role: to_device(split, device) for role, split in load_data({load_args}).items()}}",
              'train = splits["train"]', "", depth=1)

        c.add("# Seed every generator, then build: the same seed gives dslc's initial weights.", depth=1)
        c.add("random.seed(args.seed)", "np.random.seed(args.seed % 2**32)", "torch.manual_seed(args.seed)", depth=1)
        if tr.deterministic:
            c.add('os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")',
                  "torch.use_deterministic_algorithms(True)", "torch.backends.cudnn.benchmark = False",
                  "torch.backends.cudnn.deterministic = True", depth=1)
            c.imports.add("os")
        c.add(f"model = {self.cls}().to(device)", depth=1)
        c.add(f"optimizer = {optimizer_source(tr.optimizer)}", depth=1)

        c.add("n = len(train[0][0])", depth=1)
        c.add("batch_size = BATCH_SIZE" if d.batch else "batch_size = n  # batch = all: the whole set at once",
              "batches_per_epoch = math.ceil(n / batch_size)", depth=1)
        if tr.steps:
            c.add("total_steps = args.steps", "epochs = math.ceil(total_steps / batches_per_epoch)", depth=1)
        else:
            c.add("epochs = args.epochs", "total_steps = epochs * batches_per_epoch", depth=1)
        if tr.schedule:
            c.add(f"schedule = {_entry(SCHEDULE_SOURCE, tr.schedule.name, 'schedule')(tr.schedule.args)}", depth=1)
        if amp:
            c.add('amp = device.type == "cuda"', depth=1)
            if tr.precision == "amp":
                c.add('scaler = torch.amp.GradScaler("cuda", enabled=amp)', depth=1)
        c.add('print(f"training {total_steps} steps", flush=True)', "", depth=1)

        log_unit, log_every = tr.log
        eval_unit, eval_every = tr.evaluate
        c.add("step = 0", depth=1)
        windows = ["log_losses"] + (["eval_losses"] if evaluating else [])
        c.add(", ".join(windows) + " = " + ", ".join("[]" for _ in windows) + "  # batch losses since the last "
              + " / ".join(w.split("_")[0] for w in windows), depth=1)
        if evaluating:
            c.add("last_eval = None", depth=1)
            if self.data.batch:
                c.add("eval_batch_size = max(BATCH_SIZE, 256)  # dslc evaluates in batches of at least 256", depth=1)
            else:
                c.add("eval_batch_size = None  # batch = all: a split is evaluated in one batch", depth=1)
        if tr.early_stopping:
            c.add("stop = False", f"best_watched, bad_evals = None, 0  # early stopping on "
                  f"{tr.early_stopping['metric']}", depth=1)

        c.add("for epoch in range(1, epochs + 1):", depth=1)
        if carried:
            c.add("model.reset_state()  # carried recurrent state starts afresh each epoch", depth=2)
        c.add("model.train()", depth=2)
        if d.shuffle:
            c.add("generator = torch.Generator().manual_seed((args.seed * 1_000_003 + epoch - 1) % 2**63)", depth=2)
        c.add("epoch_loss, epoch_losses, epoch_sizes = None, [], []", depth=2)
        c.add(f"for inputs, targets in batches(train, batch_size{', generator' if d.shuffle else ''}):", depth=2)
        self.step_lines(4 if amp else 3, amp)
        if schedule_unit == "step":
            c.add("schedule.step()", depth=3)
        c.add("loss = loss.detach()", depth=3)
        for w in windows + ["epoch_losses"]:
            c.add(f"{w}.append(loss)", depth=3)
        c.add("epoch_sizes.append(len(inputs[0]))", "step += 1", depth=3)
        log_line = ('report(epoch, step, {"train_loss": mean(log_losses), "lr": optimizer.param_groups[0]["lr"]})',
                    "log_losses = []")
        if log_unit == "steps":
            c.add(*log_line, depth=when(c, None if log_every == 1 else f"step % {log_every} == 0 or step == 1", 3))
        stops = "if step == total_steps" + (" or stop" if tr.early_stopping and eval_unit == "steps" else "") + ":"
        if evaluating and eval_unit == "steps":
            self.eval_lines(when(c, None if eval_every == 1 else f"step % {eval_every} == 0", 3), eval_roles,
                            schedule_unit)
        c.add(stops, depth=3)
        c.add("break", depth=4)
        c.add("if len(epoch_losses) < batches_per_epoch" + (" or stop" if tr.early_stopping else "") + ":", depth=2)
        c.add("break  # the run ends inside this epoch", depth=3)
        c.add("sizes = torch.tensor(epoch_sizes, dtype=torch.float32, device=device)", depth=2)
        c.add("epoch_loss = float(torch.dot(torch.stack(epoch_losses), sizes) / sum(epoch_sizes))", depth=2)
        if schedule_unit == "epoch":
            c.add("schedule.step()", depth=2)
        if log_unit == "epochs":
            c.add(*log_line, depth=when(c, None if log_every == 1 else
                                        f"epoch % {log_every} == 0 or epoch == 1 or epoch == epochs", 2))
        if evaluating and eval_unit == "epochs":
            self.eval_lines(when(c, None if eval_every == 1 else f"epoch % {eval_every} == 0 or step >= total_steps",
                                 2), eval_roles, schedule_unit)
            if tr.early_stopping:
                c.add("if stop:", depth=2)
                c.add("break", depth=3)

        c.add("", "# The end: the training loss of the last (or unfinished) epoch, and the held-out splits.",
              depth=1)
        c.add('final = {"train_loss": epoch_loss if epoch_loss is not None else mean(epoch_losses)}', depth=1)
        if eval_roles:
            c.add("if last_eval is not None and last_eval[0] == step:", depth=1)
            c.add("final.update({k: v for k, v in last_eval[1].items() if k.startswith((\"val_\", \"test_\"))})",
                  depth=2)
            c.add("else:", depth=1)
            if carried:
                c.add("model.reset_state()", depth=2)
            for role in eval_roles:
                c.add(f'final.update({{"{PREFIX[role]}_" + k: v for k, v in evaluate(model, splits["{role}"], '
                      f'eval_batch_size).items()}})', depth=2)
        c.add("print(\"done: \" + \"  \".join(f\"{k} {v:.6g}\" for k, v in final.items() if v is not None), flush=True)",
              depth=1)
        c.add("torch.save(model.state_dict(), args.out)", 'print(f"weights saved to {args.out}")', depth=1)

    def step_lines(self, depth: int, amp: bool) -> None:
        """One optimizer step, as dslc takes it: forward, loss, backward, clipping, (warm-up) step."""
        c, tr = self.code, self.tr
        if amp:
            dtype = "torch.float16" if tr.precision == "amp" else "torch.bfloat16"
            c.add(f'with torch.autocast("cuda", dtype={dtype}, enabled=amp):', depth=3)
        c.add("output = model(*inputs)", "loss = compute_loss(model, output, inputs, targets)", depth=depth)
        c.add("optimizer.zero_grad(set_to_none=True)", depth=3)
        clip = f"torch.nn.utils.clip_grad_norm_(model.parameters(), {py(tr.clip_grad_norm)})"
        depth = 3
        if tr.precision == "amp":              # the gradient scaler works on CUDA only; dslc steps as fp32 elsewhere
            c.add("if amp:", depth=3)
            c.add("scaler.scale(loss).backward()", depth=4)
            if tr.clip_grad_norm:
                c.add("scaler.unscale_(optimizer)", clip, depth=4)
            c.add("scaler.step(optimizer)", "scaler.update()", depth=4)
            c.add("else:", depth=3)
            depth = 4
        c.add("loss.backward()", depth=depth)
        if tr.clip_grad_norm:
            c.add(clip, depth=depth)
        if tr.warmup_steps:
            c.add(f"if step < {tr.warmup_steps}:  # linear warm-up: this step at a fraction of the rate", depth=depth)
            c.add(f"factor = (step + 1) / {tr.warmup_steps}", "rates = [g[\"lr\"] for g in optimizer.param_groups]",
                  "for g, lr in zip(optimizer.param_groups, rates):", f"{INDENT}g[\"lr\"] = lr * factor",
                  "optimizer.step()", "for g, lr in zip(optimizer.param_groups, rates):",
                  f"{INDENT}g[\"lr\"] = lr", depth=depth + 1)
            c.add("else:", depth=depth)
            c.add("optimizer.step()", depth=depth + 1)
        else:
            c.add("optimizer.step()", depth=depth)

    def eval_lines(self, depth: int, roles: list[str], schedule_unit: str | None) -> None:
        """The evaluation event, as dslc records it: the loss window, each held-out split, then its consequences."""
        c, tr = self.code, self.tr
        c.add("values = {\"train_loss\": mean(eval_losses)}", "eval_losses = []", depth=depth)
        for role in roles:
            c.add(f'values.update({{"{PREFIX[role]}_" + k: v for k, v in evaluate(model, splits["{role}"], '
                  f'eval_batch_size).items()}})', depth=depth)
        c.add("last_eval = (step, values)", "report(epoch, step, values)", depth=depth)
        if schedule_unit == "metric":
            c.add('plateau = values.get("val_loss", values["train_loss"])', "if plateau is not None:", depth=depth)
            c.add("schedule.step(plateau)", depth=depth + 1)
        es = tr.early_stopping
        if es:
            delta = f" - {py(es['min_delta'])}" if es["min_delta"] else ""
            better = (f"watched < best_watched{delta}" if es["mode"] == "min"
                      else f"watched > best_watched{delta.replace('-', '+')}")
            c.add(f'watched = values.get("{es["metric"]}")', "if watched is not None:", depth=depth)
            c.add(f"if best_watched is None or {better}:", depth=depth + 1)
            c.add("best_watched, bad_evals = watched, 0", depth=depth + 2)
            c.add("else:", depth=depth + 1)
            c.add("bad_evals += 1", f"stop = bad_evals >= {es['patience']}", "if stop:", depth=depth + 2)
            c.add(f'print(f"early stopping at step {{step}}: {es["metric"]} has not improved for {{bad_evals}} '
                  f'evaluations", flush=True)', depth=depth + 3)

    # -- the whole file

    def source(self) -> str:
        from dslc import __version__
        calls = self.readers()
        self.arrays_function()
        self.load_function(calls)
        self.loss_function()
        if self.evaluating():
            self.evaluate_function()
        self.report_function()
        self.main_function()
        body = "\n".join(self.code.lines)
        header = self.header(__version__)
        return header + body + "\n\n\nif __name__ == \"__main__\":\n    main()\n"

    def header(self, version: str) -> str:
        tr, d = self.tr, self.data
        length = f"{tr.steps} steps" if tr.steps else f"{tr.epochs} epoch{'s' if tr.epochs != 1 else ''}"
        opts = "[--data-root DIR] " if self.paths.get("train", ("",))[0] == "root" else (
            "[--data FILE] " if "train" in self.paths else "")
        lines = [
            f'"""Train {self.cls} as {self.label} says, in plain PyTorch (written by dslc {version}, `dslc emit`).',
            "",
            f"    python train.py {opts}[--{'steps' if tr.steps else 'epochs'} N] [--seed N] [--device cpu|cuda] "
            "[--out model.pt]",
            "",
            f"Data: {d.source.name}; batch {d.batch or 'all'}{', shuffled' if d.shuffle else ''}. "
            f"Loss: {tr.loss.text}. Optimizer: {call_text(OPTIMIZERS[tr.optimizer.name].args, tr.optimizer)}. "
            f"{length}.",
            "The data, seeding, initialisation, batches and loop are dslc's own, so with the same seed this",
            "prints the numbers `dslc train` prints.",
            '"""',
            "",
        ]
        imports = ["import argparse"]
        imports += [f"import {m}" for m in ("bz2", "csv", "gzip") if m in self.code.imports]
        imports.append("import math")
        if "os" in self.code.imports:
            imports.append("import os")
        imports.append("import random")
        if "re" in self.code.imports:
            imports.append("import re")
        if "Counter" in self.code.imports:
            imports.append("from collections import Counter")
        if "Path" in self.code.imports:
            imports.append("from pathlib import Path")
        imports += ["", "import numpy as np", "import torch"]
        if "F" in self.code.imports:
            imports.append("import torch.nn.functional as F")
        if "torchvision" in self.code.imports:
            imports.append("import torchvision")
        imports += [f"from model import {self.cls}"]   # ruff's isort counts `model` as third-party
        if "Image" in self.code.imports:
            imports.append("from PIL import Image")
        imports.append("")
        constants = []
        if "train" in self.paths:
            kind, default = self.paths["train"]
            constants.append(f"{'DATA_ROOT' if kind == 'root' else 'DATA_FILE'} = {py(default)}  # the data dslc reads "
                             "for this spec")
        if d.batch:
            constants.append(f"BATCH_SIZE = {d.batch}")
        return "\n".join(lines + imports + constants) + ("\n" if constants else "")


def when(code: Code, condition: str | None, depth: int) -> int:
    """Open `if condition:` at depth (nothing when it always holds); returns the depth of its body."""
    if condition is None:
        return depth
    code.add(f"if {condition}:", depth=depth)
    return depth + 1


def _reshape(source: TensorShape | None, target: TensorShape) -> str:
    """`.reshape(-1, 28, 28)` when the data's per-sample shape is not the model's; '' when it already is."""
    if source is not None and tuple(source.dims) == tuple(target.dims):
        return ""
    dims = list(target.dims)
    symbolic = [i for i, d in enumerate(dims) if isinstance(d, str)]
    if symbolic:
        known = source.numel() if source is not None else None
        fixed = math.prod(d for d in dims if isinstance(d, int))
        if source is not None and len(source.dims) == len(dims) and all(
                isinstance(t, str) or t == s for s, t in zip(source.dims, dims)):
            return ""
        if len(symbolic) == 1 and known is not None:
            dims[symbolic[0]] = known // fixed
        else:
            return ""
    return f".reshape(-1{''.join(f', {d}' for d in dims)})"


def _column_refs(node) -> list[str]:
    return [n.name for n in walk(node) if isinstance(n, Ref) and n.role == "column"]


def train_source(checked: CheckedSpec, spec_label: str, model_class: str) -> str:
    """The text of train.py (raises EjectError when the spec cannot be trained by it)."""
    return TrainWriter(checked, spec_label, model_class).source()


def readme_source(checked: CheckedSpec, spec_label: str, model_class: str) -> str:
    """A short README for the ejected folder: what each file is, how to run it, where the data comes from."""
    from dslc import __version__
    variant = f" (variant `{checked.variant}`)" if checked.variant else ""
    others = [v.name for v in checked.spec.variants if v.name != checked.variant]
    images = checked.data is not None and checked.data.source.name in ("mnist", "fashion_mnist")
    lines = [
        f"# {model_class}: {spec_label}{variant} as plain PyTorch",
        "",
        f"Written by `dslc emit` (dslc {__version__}). Nothing here needs dslc: only torch and numpy"
        + (", and torchvision to read the images" if images else "") + ".",
        "",
        f"- `model.py`: `{model_class}`, an `nn.Module` whose attribute and parameter names are dslc's, so the",
        "  weights of a dslc run load unchanged:",
        "",
        "  ```python",
        "  import torch",
        f"  from model import {model_class}",
        f"  model = {model_class}()",
        '  model.load_state_dict(torch.load("runs/<spec>/<run>/checkpoints/best.pt")["model"])',
        "  model.eval()",
        "  ```",
    ]
    if checked.train is not None and checked.data is not None:
        paths = _data_paths(checked, checked.data.source)
        lines += [
            "- `train.py`: the data, loss, optimizer and training loop of the spec, step for step as `dslc train`",
            "  runs them, so with the same seed it prints the same losses. It saves the final weights (a plain",
            "  state_dict) to `--out`; `python train.py --help` lists its options.",
        ]
        if paths:
            option = "--data-root DIR" if paths[0] == "root" else "--data FILE"
            where = "the folder holding `MNIST/raw` or `FashionMNIST/raw` (torchvision layout; torchvision " \
                    "downloads the data there when it is missing)" if images else "the data file"
            lines += ["", f"Data: `{option}` is {where}. It defaults to where the spec points: `{paths[1]}`."]
    if others:
        lines += ["", f"The spec has other variants ({', '.join(others)}); eject one with "
                      "`dslc emit SPEC --python DIR --variant NAME`."]
    return "\n".join(lines) + "\n"
