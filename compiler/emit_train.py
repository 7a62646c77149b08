"""The train.py of an ejected spec (`dslc emit --python DIR`): a config block, the spec's data and loss, a short main.

train.py trains with dslc's own training kit, copied beside it as dslc_kit/
(dslc/kit: the loop, seeding, batches, schedules, metrics, tokeniser), so with
the same seed it prints what `dslc train` prints. What it writes itself is what
only the spec says: CONFIG (the settings `dslc train` hands the kit,
compiler/train_config.py), the data readers (compiler/emit_sources.py), the
data block's expressions (`model_arrays`), the splits (`load_data`, with a
table's fitted recipes: compiler/emit_tables.py), the loss (`compute_loss`)
and, for a scaled target, what the metrics compare. Nothing here imports torch.
"""

from __future__ import annotations

import math

from .emit_expr import SourceExpr, py, wrap
from .emit_python import attr, local
from .emit_sources import IMAGE_SOURCES, TEXT_SOURCES, TRAIN_NAMES, Code, EjectError, SourceWriter, data_path
from .emit_tables import TableWriter
from .ir import CheckedSpec, Ref, SourceIR
from .shapes import DTYPES
from .train_config import train_config

__all__ = ["EjectError", "train_source"]

LOSS_LOCALS = TRAIN_NAMES | {"model", "output", "inputs", "targets"}       # compute_loss's own names
NOTES = {      # what a CONFIG line means, where it is not plain
    "batch": "None: the whole training split in one batch",
    "device": "auto: CUDA when there is one",
    "precision": "amp (float16) and bf16 train in mixed precision on CUDA only",
    "optimizer": "a torch.optim class and its arguments",
    "schedule": "dslc_kit/optim.py SCHEDULES",
    "log": "a log line every so many steps or epochs",
    "evaluate": "the held-out splits, every so many steps or epochs",
}


class LossNames:
    """How compute_loss names what a loss reads: `output`, the targets and inputs (unpacked to locals), `model.PARAM`."""

    def __init__(self, checked: CheckedSpec):
        self.targets = {name: i for i, name in enumerate(checked.data.target_names)}
        self.inputs = {name: i for i, name in enumerate(checked.model.inputs)}
        self.used: dict[str, str] = {}           # local -> where it comes from

    def __call__(self, ref: Ref) -> str:
        if ref.role == "output":
            return "output" if ref.index is None else f"output[{ref.index}]"
        if ref.role == "param":
            return attr("model", ref.name)
        name = ref.name if ref.name.isidentifier() else f"target_{self.targets.get(ref.name, 0)}"
        python = local(name, LOSS_LOCALS)
        if ref.role == "target":
            self.used[python] = f"targets[{self.targets[ref.name]}]"
        elif ref.role == "input":
            self.used[python] = f"inputs[{self.inputs[ref.name]}]"
        return python


def _reshape(source, target) -> str:
    """`.reshape(-1, 28, 28)` when the data's per-sample shape is not the model's; '' when it already is."""
    if source is not None and tuple(source.dims) == tuple(target.dims):
        return ""
    dims = list(target.dims)
    symbolic = [i for i, d in enumerate(dims) if isinstance(d, str)]
    if symbolic:
        if source is not None and len(source.dims) == len(dims) and all(
                isinstance(t, str) or t == s for s, t in zip(source.dims, dims)):
            return ""
        if len(symbolic) != 1 or source is None:
            return ""
        dims[symbolic[0]] = source.numel() // math.prod(d for d in dims if isinstance(d, int))
    return f".reshape(-1{''.join(f', {d}' for d in dims)})"


class TrainWriter:
    """Writes train.py for the trained model of a checked spec."""

    def __init__(self, checked: CheckedSpec, spec_label: str, model_class: str):
        if checked.train is None or checked.data is None:
            raise EjectError("train.py needs the spec's data and train blocks")
        self.checked, self.data, self.tr = checked, checked.data, checked.train
        self.label, self.cls = spec_label, model_class
        self.code = Code()
        self.tables = TableWriter(checked, self.code)
        self.path = data_path(checked, self.data.source)      # (root | path, default) of the main source

    def source(self) -> str:
        from dslc import __version__
        c = self.code
        c.imports.update({"from dslc_kit import script", "from dslc_kit.batches import Split"})
        self.config()
        self.tables.constants()
        calls = self.readers()
        self.arrays()
        self.tables.fit_function()
        self.load(calls)
        self.loss()
        operands = self.operands()
        arg = {"root": "args.data_root", "path": "args.data"}.get(self.path[0] if self.path else "", "")
        option = "" if not self.path else f", ({py('--data-root' if self.path[0] == 'root' else '--data')}, " \
            f"{'DATA_ROOT' if self.path[0] == 'root' else 'DATA_FILE'})"
        c.function("main()", "Train as the spec says: the options, then dslc's loop (dslc_kit/loop.py).",
                   f'args = script.options(CONFIG, "Train {self.cls} as {self.label} says."{option})',
                   f"script.train(CONFIG, args, {self.cls}, load_data({arg}), compute_loss{operands})")
        c.add("", "", 'if __name__ == "__main__":', "    main()")
        return self.header(__version__) + "\n".join(c.lines) + "\n"

    def header(self, version: str) -> str:
        tr, d = self.tr, self.data
        length = f"{tr.steps} steps" if tr.steps else f"{tr.epochs} epoch{'s' if tr.epochs != 1 else ''}"
        data = "" if not self.path else "[--data-root DIR] " if self.path[0] == "root" else "[--data FILE] "
        imports = _sorted_imports(self.code.imports | {f"from model import {self.cls}"})
        return "\n".join([
            f'"""Train {self.cls} as {self.label} says, in plain PyTorch (written by dslc {version}, `dslc emit`).',
            "",
            f"    python train.py {data}[--{'steps' if tr.steps else 'epochs'} N] [--seed N] [--device cpu|cuda|auto] "
            "[--out model.pt]",
            "",
            f"Data: {d.source.name}; batch {d.batch or 'all'}{', shuffled' if d.shuffle else ''}. Loss: {tr.loss.text}. "
            f"{length}.",
            "CONFIG holds the training settings; the loop, seeding, batches, schedules and metrics are dslc's own",
            "(dslc_kit/, the code `dslc train` runs), so with the same seed this prints the numbers it prints.",
            '"""', "", *imports, ""]) + "\n"

    def config(self) -> None:
        c = self.code
        if self.path:
            kind, default = self.path
            c.add(f"{'DATA_ROOT' if kind == 'root' else 'DATA_FILE'} = {py(default)}  # the data dslc reads for this spec",
                  "")
        c.add("CONFIG = {  # how `dslc train` trains this spec (dslc_kit/loop.py TrainConfig)")
        for key, value in train_config(self.checked).items():
            line, note = f'"{key}": {py(value)},', f"  # {NOTES[key]}" if key in NOTES and (
                key != "batch" or value is None) else ""
            c.add(*([line + note] if len(line + note) <= 110 else [note.strip(), line] if note else [line]), depth=1)
        c.add("}")

    def readers(self) -> dict[str, str]:
        """Write the source readers; role -> the call that reads that role's columns."""
        writer = SourceWriter(self.checked, self.code, raw=self.tables.plans is not None)
        seed = self.data.split_seed & (2 ** 63 - 1)
        main = self.data.source
        calls = {"train": writer.write("read_data", main, seed)}
        for i, role in enumerate(("validation", "test"), start=1):
            v = getattr(self.data, role)
            if not isinstance(v, SourceIR):
                continue
            if v.name in IMAGE_SOURCES and v.name == main.name:      # the same reader, perhaps another folder
                calls[role] = calls["train"]
            elif v.name == main.name == "generate" and v.args["columns"] == main.args["columns"]:
                seed_i = v.args["seed"] if v.args.get("seed") is not None else (self.data.split_seed, i)
                calls[role] = f"read_data(n={v.args['n']}, seed={py(seed_i)})"     # other rows of the same columns
            else:
                calls[role] = writer.write(f"read_{role}_data", v, (seed, i))
            if v.name in IMAGE_SOURCES:                 # an image source used as a split gives its own test set
                calls[role] = calls[role].replace("train=True", "train=False")
            p = data_path(self.checked, v)
            if p and p != self.path:
                calls[role] = calls[role].replace("data_root", py(p[1])).replace("data_path", py(p[1]))
            if v.name in TEXT_SOURCES:
                calls[role] = calls[role][:-1] + ", like=fitted)[0]"
        if self.data.test is None and main.name in IMAGE_SOURCES:
            calls["test"] = calls["train"].replace("train=True", "train=False")
        return calls

    def arrays(self) -> None:
        """`model_arrays(columns)`: inputs and targets computed from the columns, cast and shaped for the model."""
        d, m = self.data, self.checked.model
        writer = SourceExpr("numpy", lambda ref: local(ref.name, TRAIN_NAMES), fitted=self.tables.scaled)
        inputs = []
        for node, shape in zip(d.inputs, m.inputs.values()):
            text, precedence = writer(node)
            inputs.append(f"{wrap(text, precedence < 9)}.astype(np.{DTYPES[shape.dtype]}){_reshape(node.shape, shape)}")
        targets = []
        for node in d.targets:
            text, precedence = writer(node)
            targets.append(f"{wrap(text, precedence < 9)}.astype({'np.int64' if node.shape.is_int else 'np.float32'})")
        self.code.imports.add("import numpy as np")
        self.code.function(
            "model_arrays(columns)", f"Inputs [{', '.join(d.input_names)}] and targets [{', '.join(d.target_names)}] "
            "from the columns, cast and shaped as the model takes them.",
            *[f'{local(name, TRAIN_NAMES)} = columns["{name}"]' for name in sorted(d.columns_read)],
            f"return [{', '.join(inputs)}], [{', '.join(targets)}]")

    def load(self, calls: dict[str, str]) -> None:
        """`load_data(...)`: every split as a Split, its fitted recipes and statistics from the training rows only."""
        d, tables = self.data, self.tables
        fractions = {r: getattr(d, r) for r in ("validation", "test") if isinstance(getattr(d, r), float)}
        text = d.source.name in TEXT_SOURCES
        fitted = text and any("like=fitted" in call for call in calls.values())
        lines = [f"{'columns, fitted' if fitted else 'columns'} = {calls['train']}{'' if fitted or not text else '[0]'}"]
        lines += tables.drop_lines()
        if fractions or tables.fitting:
            lines.append("n = len(next(iter(columns.values())))")
        if fractions:
            self.code.imports.add("from dslc_kit.batches import split_rows")
            lines.append(f"parts = split_rows(n, {py(fractions)}, seed={d.split_seed}, keep_order={not d.shuffle})")
        elif tables.fitting:
            lines.append('parts = {"train": np.arange(n)}')
        lines += tables.fit_lines() + ["whole = Split.of(*model_arrays(columns))"]
        lines.append("splits = {role: whole.take(rows) for role, rows in parts.items()}"
                     if fractions or tables.fitting else 'splits = {"train": whole}')
        held = [role for role in ("validation", "test") if role in calls]
        for role in held:
            lines.append(f'splits["{role}"] = Split.of(*model_arrays({tables.encoded(calls[role])}))')
        if lines == [f"columns = {calls['train']}", "whole = Split.of(*model_arrays(columns))",
                     'splits = {"train": whole}']:
            lines = [f'splits = {{"train": Split.of(*model_arrays({calls["train"]}))}}']
        roles = ", ".join(["train"] + [r for r in ("validation", "test") if r in fractions or r in held])
        note = " (fitted on the training rows only)" if tables.fitting else ""
        arg = {"root": "data_root", "path": "data_path"}.get(self.path[0] if self.path else "", "")
        self.code.function(f"load_data({arg})", f"The splits as the model reads them{note}: {roles}.",
                           *lines, "return splits")

    def loss(self) -> None:
        loss, names = self.tr.loss, LossNames(self.checked)
        writer = SourceExpr("torch", names, cast_targets=self.tr.precision != "fp32")
        body = writer(loss.node)[0]
        self.code.imports.update({"torch": "import torch", "F": "import torch.nn.functional as F"}[u]
                                 for u in writer.uses & {"torch", "F"})
        self.code.function("compute_loss(model, output, inputs, targets)", f"loss = {loss.text}",
                           *[f"{name} = {where}" for name, where in names.used.items()], f"return {body}")

    def operands(self) -> str:
        """`metric_operands` for metrics of a scaled target (in its column's units): ', metric_operands' or ''."""
        units = next((m for m in self.tr.metrics if not isinstance(m.output, Ref)), None)
        if units is None:
            return ""
        writer = SourceExpr("torch", lambda ref: "output" if ref.role == "output" else "targets[0]",
                            fitted=self.tables.scaled)
        output, target = writer(units.output)[0], writer(units.target)[0]
        self.code.imports.update({"torch": "import torch", "F": "import torch.nn.functional as F"}[u]
                                 for u in writer.uses & {"torch", "F"})
        self.code.function("metric_operands(output, targets)", "What the metrics compare: the output and the target "
                           "in the units of the target's column.", f"return {output}, {target}")
        return ", metric_operands"


def _sorted_imports(lines: set[str]) -> list[str]:
    """Import lines as ruff's isort orders them (every module third-party here): `import` lines, then one
    `from` line per module with its names, each by module name."""
    plain = sorted((line for line in lines if line.startswith("import ")), key=lambda line: line.split()[1].lower())
    names: dict[str, set[str]] = {}
    for line in lines - set(plain):
        module, name = line[len("from "):].split(" import ")
        names.setdefault(module, set()).add(name)
    kind = lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n)     # constants, classes, the rest
    return plain + [f"from {m} import {', '.join(sorted(names[m], key=kind))}" for m in sorted(names, key=str.lower)]


def train_source(checked: CheckedSpec, spec_label: str, model_class: str) -> str:
    """The text of train.py (raises EjectError when the spec cannot be trained by it)."""
    return TrainWriter(checked, spec_label, model_class).source()

