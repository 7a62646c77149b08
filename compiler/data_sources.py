"""The data-source catalog: `source = mnist(root="data/mnist")`, `table(...)`, `text_csv(...)`.

An entry declares its arguments, the facts known before loading (columns and
their per-sample types, classes, vocabulary size: what `data.classes` and
`data.vocab` read, and what shape checks use) and the loader that produces
columns at run time (a function of runtime/data/sources.py, named here, not imported). Sources with
`column_args` take extra keyword arguments as columns: lists of numbers for
`table`, expressions for `generate` and `sequence`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .column_kinds import sort_categories
from .functions import ELEMENTWISE
from .shapes import TensorShape
from .values import Arg, positive

SCALAR = TensorShape("f32", ())
CLASS = TensorShape("i64", ())


@dataclass(frozen=True)
class DataSource:
    name: str
    doc: str
    args: list[Arg]
    facts: Callable[[dict, dict], dict]      # (bound args, columns) -> facts
    loader: str                              # function name in dslc.runtime.data.sources
    column_args: str | None = None           # None | "values" | "expressions" | "kinds" (column declarations)
    functions: tuple[str, ...] = ()          # functions a column expression may call


DATA_SOURCES: dict[str, DataSource] = {}


def register(source: DataSource) -> None:
    DATA_SOURCES[source.name] = source


def _image_facts(labels):
    def facts(args, columns):
        return {"classes": len(labels), "labels": list(labels),
                "columns": {"image": TensorShape("f32", (1, 28, 28)), "label": CLASS},
                "inputs": ["image"], "targets": ["label"], "scale": 1 / 255, "kind": "image"}
    return facts


_IMAGE_ARGS = [Arg("root", "str", "data"), Arg("download", "bool", True)]
register(DataSource("mnist", "Handwritten digits 0-9, 28x28 grey (torchvision layout under root).", _IMAGE_ARGS,
                    _image_facts([str(i) for i in range(10)]), "load_mnist"))
register(DataSource("fashion_mnist", "Zalando's clothing images, 28x28 grey (torchvision layout under root).", _IMAGE_ARGS,
                    _image_facts(["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                                  "bag", "ankle boot"]), "load_fashion_mnist"))


def _table_facts(args, columns):
    names = {n: v for n, v in columns.items() if v and isinstance(v[0], str)}      # names: category columns
    categories = {n: sort_categories(v) for n, v in names.items()}
    facts = {"columns": {name: CLASS if name in names else SCALAR for name in columns},
             "rows": {n: len(v) for n, v in columns.items()}, "kind": "table",
             "kinds": {name: "category" if name in names else "number" for name in columns},
             "categories": categories}
    facts.update({f"{n}_categories": len(v) for n, v in categories.items()})
    return facts


register(DataSource("table", "Columns written in the spec: table(x=[1, 2, 3], y=[2, 4, 6]); a column of names "
                    "(island=[\"Dream\", ...]) is a category column.", [], _table_facts,
                    "load_table", column_args="values"))


def _csv_facts(args, columns):
    cols = {c: SCALAR for c in args["columns"]} if args["columns"] else None
    return {"columns": cols, "kind": "table"}


register(DataSource("csv", "Columns of a CSV file with a header row (.gz/.bz2 read directly): numbers, whole numbers "
                    "or categories, declared as `name = KIND` or read from the file; `fill` is what a missing cell "
                    "does (error or drop), `missing` the cells that mean missing.",
                    [Arg("path", "str"), Arg("columns", "any", None), Arg("delimiter", "str", ","),
                     Arg("fill", "str", "error", choices=("error", "drop")), Arg("missing", "any", None)],
                    _csv_facts, "load_csv", column_args="kinds"))

@dataclass(frozen=True)
class Generator:
    """A function that makes one value per row of a `generate` or `sequence` source."""

    name: str
    doc: str
    args: list[Arg]
    numpy: Callable          # (numpy module, random Generator or None, rows, **args) -> array of `rows` values
    source: str              # the same in ejected code: a format string over `n`, `rng` and the arguments
    random: bool = False     # draws from the source's seeded generator


GENERATORS: dict[str, Generator] = {}


def register_generator(g: Generator) -> None:
    GENERATORS[g.name] = g


register_generator(Generator("linspace", "n evenly spaced values from start to stop", [Arg("start", "any"), Arg("stop", "any")],
                             lambda np, rng, n, start, stop: np.linspace(start, stop, n),
                             "np.linspace({start}, {stop}, n)"))
register_generator(Generator("arange", "start, start + step, ...: one per row", [Arg("start", "any", 0.0), Arg("step", "any", 1.0)],
                             lambda np, rng, n, start, step: start + step * np.arange(n, dtype=np.float64),
                             "{start} + {step} * np.arange(n, dtype=np.float64)"))
register_generator(Generator("normal", "a normal draw per row", [Arg("mean", "any", 0.0), Arg("std", "any", 1.0)],
                             lambda np, rng, n, mean, std: rng.normal(mean, std, size=n),
                             "rng.normal({mean}, {std}, size=n)", random=True))
register_generator(Generator("uniform", "a uniform draw per row on [low, high)", [Arg("low", "any", 0.0), Arg("high", "any", 1.0)],
                             lambda np, rng, n, low, high: rng.uniform(low, high, size=n),
                             "rng.uniform({low}, {high}, size=n)", random=True))

DATA_FUNCTIONS = tuple(GENERATORS) + ELEMENTWISE


def _generate_facts(args, columns):
    return {"columns": {name: SCALAR for name in columns}, "kind": "table"}


register(DataSource("generate", "n rows computed from expressions: generate(n=20, x=linspace(-1, 1), y=x + normal(0, 0.3)).",
                    [Arg("n", "int", check=positive), Arg("seed", "int", None)], _generate_facts, "load_generate",
                    column_args="expressions", functions=DATA_FUNCTIONS))


def _sequence_facts(args, columns):
    shape = TensorShape("f32", (args["length"], 1))
    names = list(columns)
    return {"columns": {name: shape for name in names}, "kind": "sequence",
            "inputs": names[:1], "targets": names[1:2]}


register(DataSource("sequence", "Consecutive windows of functions of t = 0, dt, 2dt, ...: "
                    "sequence(windows=60, length=10, x=sin(t), y=cos(t)); each column is f32[length, 1].",
                    [Arg("windows", "int", check=positive), Arg("length", "int", check=positive),
                     Arg("dt", "float", 0.1, check=positive)], _sequence_facts, "load_sequence",
                    column_args="expressions", functions=DATA_FUNCTIONS))


def _image_folder_facts(args, columns):
    """What the arguments say; the classes come from the folder (compiler/image_check.py) or `classes`."""
    size = args["size"]
    return {"kind": "image", "inputs": ["image"], "targets": ["label"],
            "columns": {"image": TensorShape("f32", (args["channels"], *size)), "label": CLASS}}


register(DataSource("image_folder", "Pictures in one folder per class (root/cat/*.png, root/dog/*.jpg: png, jpeg, bmp, "
                    "gif, webp, tiff) of any size: `channels` 1 (grey) or 3 (RGB), resized to `size` [height, width], "
                    "scaled to 0-1 and normalised per channel with `mean` and `std` when given; the classes are the "
                    "folders' names, sorted (or `classes`, in their order).",
                    [Arg("root", "str"), Arg("size", "size"), Arg("channels", "int", 3, choices=(1, 3)),
                     Arg("mean", "floats", None), Arg("std", "floats", None), Arg("classes", "any", None)],
                    _image_folder_facts, "load_image_folder"))


def _text_facts(args, columns):
    labels = args["labels"]
    facts = {"vocab": args["vocab"] + 2, "max_len": args["max_len"], "kind": "text",
             "columns": {"tokens": TensorShape("i64", (args["max_len"],)), "label": CLASS},
             "inputs": ["tokens"], "targets": ["label"]}
    if labels:
        facts["classes"] = len(labels)
        facts["labels"] = list(labels)
    return facts


register(DataSource("text_csv", "Text and label columns of a CSV file (.gz/.bz2 read directly), tokenised into "
                    "ids: 0 is padding, 1 out-of-vocabulary; `vocab` most frequent tokens (data.vocab = vocab + 2).",
                    [Arg("path", "str"), Arg("text", "str", "text"), Arg("label", "str", "label"),
                     Arg("labels", "any", None), Arg("tokenizer", "str", "word", choices=("word", "char")),
                     Arg("vocab", "int", 20000, check=positive), Arg("min_count", "int", 1, check=positive),
                     Arg("max_len", "int", 200, check=positive), Arg("lowercase", "bool", True)],
                    _text_facts, "load_text_csv"))


def _windows_facts(args, columns):
    shape = TensorShape("i64", (args["length"],))
    return {"vocab": args["vocab"] + 2, "max_len": args["length"], "kind": "text_windows",
            "columns": {"tokens": shape, "next": shape}, "inputs": ["tokens"], "targets": ["next"]}


register(DataSource("text_windows", "A text column of a CSV file (.gz/.bz2 read directly) as one stream of tokens cut "
                    "into windows: tokens [length] and the next token at each step (a language model's data); "
                    "`vocab` most frequent tokens, 0 padding, 1 out-of-vocabulary (data.vocab = vocab + 2).",
                    [Arg("path", "str"), Arg("text", "str", "text"), Arg("length", "int", 64, check=positive),
                     Arg("stride", "int", None, check=positive),
                     Arg("tokenizer", "str", "char", choices=("word", "char")),
                     Arg("vocab", "int", 100, check=positive), Arg("lowercase", "bool", False),
                     Arg("separator", "str", "\n")],
                    _windows_facts, "load_text_windows"))
