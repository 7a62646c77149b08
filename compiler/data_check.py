"""Checking the `data` block: the source call, its columns, the input and target expressions, the splits.

Part of the spec checker (compiler/check.py mixes `DataChecks` in). Column
expressions of `generate`/`sequence` sources and the `inputs`/`targets`
expressions are typed into the IR by the shared expression checker, so their
per-sample shapes are known before anything is loaded. A `csv` source's columns
have kinds (numbers, whole numbers, categories: compiler/table_check.py, from its
declarations and the file's own cells); a column of a file that cannot be read
now is a number per row (`f32[]`). What a split source (`validation = csv(...)`)
lacks is an error here, not at training time.
"""

from __future__ import annotations

from dataclasses import dataclass

from dslc.dsl import ast
from dslc.dsl.diagnostics import did_you_mean
from dslc.dsl.format import format_expr

from .data_sources import DATA_SOURCES, GENERATORS, SCALAR
from .expr_check import Bail, ExprChecker, const
from .functions import ELEMENTWISE
from .image_check import ImageFolderChecks
from .ir import DataIR, Generate, ModelIR, Node, Ref, SourceIR
from .shapes import TensorShape
from .table_check import DataExprChecker, TableChecks, category_target_facts
from .values import Facts, NotConstant, Symbol, bind, positive

DATA_KEYS = ("source", "inputs", "targets", "batch", "shuffle", "validation", "test", "seed")


@dataclass(frozen=True)
class _NodeArg:
    """An argument of a generating function, typed: its name (None: positional), node and spans."""

    name: str | None
    value: Node
    span: ast.Span
    where: ast.Span


def data_facts(facts: dict) -> Facts:
    """What `data.NAME` reads: the source's facts that are numbers, names or lists (not its internals)."""
    return Facts("data", {k: v for k, v in facts.items()
                          if isinstance(v, (int, float, str, list)) and not isinstance(v, bool)
                          and k != "columns" and not k.startswith("_")})


class DataChecks(TableChecks, ImageFolderChecks):
    """The data-block methods of SpecChecker (report, ev, lets, settings, typed, value come from it)."""

    def check_data(self) -> DataIR | None:
        block = self.spec.block("data")
        if block is None:
            return None
        s = self.settings(block, DATA_KEYS)
        source_open = False
        try:
            if "source" not in s:
                self.report.error("the data block needs a `source`", block.span,
                                  "e.g. source = mnist(root=\"data/mnist\"); sources: " + ", ".join(DATA_SOURCES))
                raise Bail
            source = self.source_call(s["source"].value)
            source_open = bool(source.facts.get("_unreadable"))
            self.lets["data"] = data_facts(source.facts)
            try:
                targets, target_names = self.column_exprs(s.get("targets"), source, "targets")
            except Bail:
                targets = None
            if targets is not None:
                category_target_facts(source.facts, targets)      # classes and labels, before the inputs can fail
                self.lets["data"].facts.update(data_facts(source.facts).facts)
            inputs, input_names = self.column_exprs(s.get("inputs"), source, "inputs")
            if targets is None:
                raise Bail
            batch = None
            if "batch" in s:
                v = self.value(s["batch"])
                if isinstance(v, Symbol) and v.name == "all":
                    batch = None
                else:
                    batch = self.typed(s["batch"], "int", check=positive)
            shuffle = self.typed(s.get("shuffle"), "bool", source.facts.get("kind") != "sequence")
            validation = self.split(s.get("validation"))
            test = self.split(s.get("test"))
            if isinstance(validation, float) and isinstance(test, float) and validation + test >= 1:
                self.report.error("validation and test fractions leave nothing to train on", s["test"].span)
            seed = self.typed(s.get("seed"), "int", 0)
            data = DataIR(source, inputs, targets, input_names, target_names, batch, shuffle, validation, test, seed,
                          inputs_span=s["inputs"].span if "inputs" in s else ast.NO_SPAN)
            for role, setting in (("validation", s.get("validation")), ("test", s.get("test"))):
                split = getattr(data, role)
                if isinstance(split, SourceIR):
                    self.split_has_columns(split, data, role, setting)
            return data
        except Bail:
            if "data" not in self.lets or (isinstance(self.lets["data"], Facts) and source_open):
                self.ev.failed.add("data")       # the source (or the file it cannot read) failed: data.* is quiet
            self.lets.setdefault("data", Facts("data", {}))
            return None

    # ------------------------------------------------------------ sources

    def source_call(self, e) -> SourceIR:
        if isinstance(e, ast.Var):
            e = ast.Call(func=e, args=[], span=e.span)
        if not isinstance(e, ast.Call) or not isinstance(e.func, ast.Var):
            self.report.error("a data source is a call such as mnist(root=\"data\")", e.span,
                              "sources: " + ", ".join(DATA_SOURCES))
            raise Bail
        name = e.func.name
        src = DATA_SOURCES.get(name)
        if src is None:
            self.report.error(f"unknown data source '{name}'", e.func.span,
                              did_you_mean(name, DATA_SOURCES) or "sources: " + ", ".join(DATA_SOURCES))
            raise Bail
        declared = {a.name for a in src.args}
        plain, columns, spans = [], {}, {}
        for a in e.args:
            if src.column_args and a.name and a.name not in declared:
                if a.name in columns:
                    self.report.error(f"column '{a.name}' is defined twice", a.span)
                    raise Bail
                spans[a.name] = a.span
                if src.column_args == "values":
                    columns[a.name] = self.table_column(a)
                elif src.column_args == "kinds":
                    columns[a.name] = self.column_kind(a)
                else:
                    known = {k: SCALAR for k in columns}
                    if name == "sequence":
                        known["t"] = SCALAR
                    node = self.column_checker(known, generators=True, what="a column").check(a.value)
                    if node.shape.rank != 0:
                        self.report.error(f"column '{a.name}' must be one number per row, but is {node.shape}",
                                          a.value.span)
                        raise Bail
                    columns[a.name] = node
            elif src.column_args and a.name is None and name in ("table", "generate"):
                self.report.error(f"{name} takes named columns: {name}(x=..., y=...)", a.span)
                raise Bail
            else:
                plain.append(a)
        values = self.ev.values(plain)
        if values is None:
            raise Bail
        args = bind(name, src.args, values, e.span, self.report, known_names=list(self.lets))
        if args is None:
            raise Bail
        args.pop("__spans__")
        if src.column_args == "kinds":
            facts = self.table_facts(name, args, columns, spans, e)
            args["kinds"] = columns
            return SourceIR(name, args, facts, e.span)
        if src.column_args and not columns:
            self.report.error(f"{name} needs at least one column", e.span, f"e.g. {name}(x=..., y=...)")
            raise Bail
        if src.column_args == "values":
            lengths = {len(v) for v in columns.values()}
            if len(lengths) > 1:
                self.report.error("the columns of a table must have the same length: "
                                  + ", ".join(f"{k} has {len(v)}" for k, v in columns.items()), e.span)
                raise Bail
        if name == "text_csv" and args["labels"] is not None and not (
                isinstance(args["labels"], list) and args["labels"] and all(isinstance(x, str) for x in args["labels"])):
            self.report.error("labels must be a list of strings, e.g. labels=[\"neg\", \"pos\"]", e.span)
            raise Bail
        if name == "csv" and args["columns"] is not None and not (
                isinstance(args["columns"], list) and all(isinstance(x, str) for x in args["columns"])):
            self.report.error("columns must be a list of column names as strings", e.span)
            raise Bail
        facts = src.facts(args, columns)
        if name == "image_folder":
            facts.update(self.image_folder_facts(args, e))
            facts = {**facts, **src.facts(args, columns)}          # the size as checked
        args["columns"] = columns if src.column_args else args.get("columns")
        return SourceIR(name, args, facts, e.span)

    def table_column(self, a: ast.Argument) -> list[float] | list[str]:
        """A column written in the spec: numbers, or names (a category column)."""
        try:
            v = self.ev(a.value)
        except NotConstant:
            raise Bail from None
        if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
            return [x.strip() for x in v]
        if not (isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
            self.report.error(f"column '{a.name}' must be a list of numbers, or of names (a category column)",
                              a.value.span)
            raise Bail
        return [float(x) for x in v]

    # ------------------------------------------------------------ expressions over columns

    def column_checker(self, columns: dict[str, TensorShape] | None, generators: bool, what: str,
                       facts: dict | None = None) -> ExprChecker:
        """The expression checker of a data context: names are columns (any name, a number per row, when the
        columns are not known before loading) and `let` numbers; `facts` (a source's) add category columns,
        feature vectors and the fitted transforms (inputs and targets)."""
        facts = facts or {}
        open_columns = columns is None or facts.get("_open", False)

        def name(e: ast.Var) -> Node:
            if columns is not None and e.name in columns:
                return Ref(name=e.name, role="row_index" if e.name == "t" and generators else "column",
                           shape=columns[e.name], batched=True)
            if e.name in self.ev.failed:
                raise Bail
            v = self.lets.get(e.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.ev.used.add(e.name)
                return const(v)
            if open_columns and e.name not in self.lets:
                return Ref(name=e.name, role="column", shape=SCALAR, batched=True)
            names = sorted(columns or ())
            where = f"{facts['_path']} has no column '{e.name}'" if facts.get("_scan") else \
                f"unknown column '{e.name}'"
            self.report.error(where, e.span, did_you_mean(e.name, names) or
                              ("columns: " + ", ".join(names) if names else None))
            raise Bail

        def call(e: ast.Call) -> Node | None:
            gen = GENERATORS.get(e.func.name)
            if gen is None:
                return None
            if not generators:
                self.report.error(f"{e.func.name}(...) makes one value per row, so it belongs in a column of "
                                  f"generate(...) or sequence(...)", e.span)
                raise Bail
            values = []
            for a in e.args:
                node = checker.check(a.value)
                if node.shape.rank != 0:
                    self.report.error(f"{e.func.name}(...) takes numbers or columns of numbers", a.value.span)
                    raise Bail
                values.append(_NodeArg(a.name, node, a.value.span, a.span))
            args = self.bind_nodes(e, gen.args, values)
            return Generate(name=e.func.name, args=tuple(args.items()), shape=SCALAR, batched=True)

        functions = ELEMENTWISE + (tuple(GENERATORS) if generators else ())
        if generators:
            checker = ExprChecker(self.report, self.ev, name, call, f"in {what}", functions=functions)
        else:
            checker = DataExprChecker(self.report, self.ev, name, call, f"in {what}", functions=functions, facts=facts)
        return checker

    def bind_nodes(self, e: ast.Call, specs, values) -> dict:
        """Match a generating function's arguments (IR nodes) to its parameters; defaults become constants."""
        by_name = {a.name: a for a in specs}
        out: dict[str, Node] = {}
        i = 0
        for v in values:
            if v.name is None:
                if i >= len(specs):
                    self.report.error(f"{e.func.name} takes at most {len(specs)} values", v.span,
                                      f"its arguments are: {', '.join(a.name for a in specs)}")
                    raise Bail
                key = specs[i].name
                i += 1
            else:
                key = v.name
                if key not in by_name:
                    self.report.error(f"{e.func.name} has no argument '{key}'", v.where,
                                      did_you_mean(key, by_name))
                    raise Bail
            if key in out:
                self.report.error(f"argument '{key}' of {e.func.name} is given twice", v.where)
                raise Bail
            out[key] = v.value
        for a in specs:
            if a.name not in out:
                if a.required:
                    self.report.error(f"{e.func.name} needs argument '{a.name}'", e.span,
                                      f"write {e.func.name}({', '.join(x.name + '=...' for x in specs if x.required)})")
                    raise Bail
                out[a.name] = const(a.default)
        return {a.name: out[a.name] for a in specs}

    def column_exprs(self, s, source: SourceIR, what: str) -> tuple[list[Node], list[str]]:
        """The `inputs`/`targets` expressions as IR (the source's own columns when not given), and their names."""
        columns = source.columns
        if s is None:
            default = source.facts.get(what)
            if default is None:
                if columns is not None and what == "inputs":
                    self.report.error("this source needs `inputs = [...]` naming its input columns",
                                      self.spec.block("data").span, "columns: " + ", ".join(columns))
                    raise Bail
                return [], []
            return [Ref(name=c, role="column", shape=columns[c], batched=True) for c in default], list(default)
        e = s.value
        items = e.items if isinstance(e, ast.ListExpr) else [e]
        if not items:
            self.report.error(f"`{what}` is empty", e.span)
            raise Bail
        checker = self.column_checker(columns, generators=False, what="a data expression", facts=source.facts)
        nodes = [checker.check(item) for item in items]
        for item, node in zip(items, nodes):
            if not node.batched:
                self.report.error(f"this {what[:-1]} is the same number for every sample; it must read a column",
                                  item.span)
                raise Bail
        names = [i.name if isinstance(i, ast.Var) else format_expr(i) for i in items]
        return nodes, names

    def split(self, s):
        if s is None:
            return None
        e = s.value
        if isinstance(e, ast.Call):
            return self.source_call(e)
        return self.typed(s, "float", check=lambda v: None if 0 < v < 1 else "must be a fraction between 0 and 1")

    def split_has_columns(self, split: SourceIR, data: DataIR, role: str, setting) -> None:
        """A validation/test source gives every column the inputs and targets read, of the same types."""
        columns = split.columns
        if columns is None or split.facts.get("_open"):
            return
        for name in data.columns_read:
            if name not in columns:
                self.report.error(f"the {role} source has no column '{name}', which the data's inputs or targets read",
                                  setting.value.span, did_you_mean(name, columns) or
                                  f"its columns: {', '.join(columns)}")
                return
            main = (data.source.columns or {}).get(name)
            if main is not None and main != columns[name] and split.name not in ("text_csv", "csv"):
                # texts and tables: read and encoded like the training source
                self.report.error(f"the {role} source's column '{name}' is {columns[name]}, but the training "
                                  f"source's is {main}", setting.value.span)
                return

    # ------------------------------------------------------------ data against the model

    def check_data_fits_model(self, data: DataIR, model: ModelIR) -> None:
        inputs = data.inputs
        span_of = {i.name: i.span for m in self.spec.models if m.name == model.name for i in m.inputs}
        if len(inputs) != len(model.inputs):
            several = len(inputs) > 1 and len(model.inputs) == 1 and all(n.shape.rank == 0 for n in inputs)
            hint = (f"to feed the columns as one feature vector, stack them: inputs = [stack({', '.join(data.input_names)})]"
                    if several else "make the data block's `inputs` list match the model's inputs")
            self.report.error(f"model {model.name} takes {len(model.inputs)} input(s) but the data gives "
                              f"{len(inputs)} ({', '.join(data.input_names)})",
                              data.inputs_span if data.inputs_span.known else model.span, hint)
            return
        for (name, want), node in zip(model.inputs.items(), inputs):
            got = node.shape
            span = span_of.get(name, model.span)
            if want.is_int != got.is_int:
                self.report.error(f"input {name} is {want} but the data gives {got}", span,
                                  "token ids are i64; measurements and pixels are f32")
                continue
            wn, gn = want.numel(), got.numel()
            if wn is not None and gn is not None and wn != gn:
                self.report.error(f"input {name} is {want} ({wn} values) but the data gives {got} ({gn} values)",
                                  span, f"declare the input as {got.with_dims(got.dims, want.dtype)}")

