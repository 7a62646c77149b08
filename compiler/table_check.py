"""Checking tables before loading: column declarations of `csv(...)`, the file's columns, data expressions over them.

Part of the spec checker (compiler/data_check.py's `DataChecks` builds on
`TableChecks`). A `csv` source's keyword arguments declare columns
(`island = category`, `bill_length_mm = number(fill=mean)`, catalog in
compiler/column_kinds.py); the file itself, when it can be read now, gives the
header and the kinds and categories of the undeclared columns
(compiler/data_files.py). So `dslc check` knows every column's per-sample type,
each category column's categories (`one_hot(island)` is `f32[3]`,
`data.classes` of a `species` target is 3) and refuses, at the spec's own line,
a column the file does not have, arithmetic on a category, or a fill that does
not suit a kind. What only the data can show — a missing value, a cell that is not
a number, a category the training split never has — the loader reports, naming
the file, row and column.

`DataExprChecker` types the data block's `inputs` and `targets`: the shared
expression checker plus category columns (usable bare, as an index, or through
`one_hot`), feature-vector lists (`[a, b, one_hot(island)]`: the numbers and
vectors side by side) and the fitted transforms `standardize` and `min_max`.
"""

from __future__ import annotations

from dslc.dsl import ast
from dslc.dsl.diagnostics import did_you_mean

from .column_kinds import KINDS, MISSING, NAMES, SHAPES, TEXT_OPTIONS, ColumnKind, category_name, \
    check_fill_option, check_fill_value, sort_categories, whole_number
from .data_files import TableScan, bundled, data_file, env_data_root, scan_table
from .expr_check import Bail, ExprChecker, const
from .ir import Const, Fitted, Node, Op, Ref
from .shapes import TensorShape, result_dtype
from .values import Arg, CallValue, NotConstant, Symbol, bind, positive

_KIND_ARGS = {"number": [Arg("fill", "any", None)], "integer": [Arg("fill", "any", None)],
              "category": [Arg("categories", "any", None), Arg("fill", "any", None)],
              "text": [Arg("max_len", "int", TEXT_OPTIONS["max_len"], check=positive),
                       Arg("vocab", "int", TEXT_OPTIONS["vocab"], check=positive),
                       Arg("tokenizer", "str", "word", choices=("word", "char")),
                       Arg("min_count", "int", 1, check=positive), Arg("lowercase", "bool", True),
                       Arg("fill", "any", None)]}


class TableChecks:
    """The table methods of SpecChecker (report, ev, lets and spec_dir come from it)."""

    def column_kind(self, a: ast.Argument) -> ColumnKind:
        """`name = number`, `name = category(["a", "b"], fill=mode)`, ... as a ColumnKind."""
        try:
            v = self.ev(a.value)
        except NotConstant:
            raise Bail from None
        if isinstance(v, Symbol):
            v = CallValue(v.name, (), a.value.span, a.value.span)
        if not isinstance(v, CallValue) or v.name not in KINDS:
            self.report.error(f"column '{a.name}' is declared with a kind: {', '.join(KINDS)}", a.value.span,
                              (did_you_mean(v.name, KINDS) if isinstance(v, CallValue) else None)
                              or f"e.g. {a.name} = category, or {a.name} = number(fill=mean)")
            raise Bail
        args = bind(v.name, _KIND_ARGS[v.name], list(v.args), v.span, self.report)
        if args is None:
            raise Bail
        spans = args.pop("__spans__")
        categories = None
        if v.name == "category" and args["categories"] is not None:
            given = args["categories"]
            if not (isinstance(given, list) and given and all(
                    isinstance(c, (str, int, float)) and not isinstance(c, bool) for c in given)):
                self.report.error("the categories are a list of names, e.g. category([\"Biscoe\", \"Dream\"])",
                                  spans["categories"])
                raise Bail
            categories = tuple(category_name(c) for c in given)
            twice = sorted({c for c in categories if categories.count(c) > 1})
            if twice:
                self.report.error(f"category {', '.join(map(repr, twice))} is listed twice", spans["categories"])
                raise Bail
        fill, fill_value = args["fill"], None
        if isinstance(fill, Symbol):
            complaint = check_fill_option(v.name, fill.name)
            if complaint:
                hint = (f'a name of its own is written in quotes: fill="{fill.name}"' if v.name == "category"
                        else None)
                self.report.error(complaint, spans["fill"], hint)
                raise Bail
            fill = fill.name
        elif fill is not None:
            complaint = check_fill_value(v.name, fill)
            if complaint:
                self.report.error(complaint, spans["fill"])
                raise Bail
            fill, fill_value = None, category_name(fill) if v.name == "category" else fill
            if categories is not None and fill_value not in categories:
                self.report.error(f"fill \"{fill_value}\" is not one of the declared categories", spans["fill"],
                                  "add it to the list, or fill with mode")
                raise Bail
        options = tuple((k, args[k]) for k in TEXT_OPTIONS if v.name == "text" and args[k] != TEXT_OPTIONS[k])
        return ColumnKind(v.name, categories, fill, fill_value, options)

    # ------------------------------------------------------------ what the table holds

    def table_facts(self, name: str, args: dict, kinds: dict[str, ColumnKind], spans: dict[str, ast.Span],
                    call: ast.Call) -> dict:
        """The facts of a csv source: columns and their types, kinds, categories, missing-value policies;
        from the declarations and, when the file can be read now, its header and cells."""
        markers = args.get("missing")
        if markers is None:
            markers = MISSING
        elif not (isinstance(markers, list) and all(isinstance(m, str) for m in markers)):
            self.report.error("missing must be a list of strings that mark a missing cell, e.g. missing=[\"\", \"NA\"]",
                              call.span)
            raise Bail
        listed = args.get("columns")
        if listed is not None and not (isinstance(listed, list) and all(isinstance(x, str) for x in listed)):
            self.report.error("columns must be a list of column names as strings", call.span)
            raise Bail
        path = data_file(args["path"], self.spec_dir, env_data_root())
        scan = scan_table(args["path"], bundled(path) or path, args.get("delimiter") or ",", tuple(markers))
        header = scan.header if isinstance(scan, TableScan) else None
        for column in listed or []:
            if header is not None and column not in header:
                self.report.error(f"{args['path']} has no column '{column}'", call.span,
                                  did_you_mean(column, header) or "its columns: " + ", ".join(header))
                raise Bail
        for column, kind in kinds.items():
            if header is not None and column not in header:
                self.report.error(f"{args['path']} has no column '{column}'", spans[column],
                                  did_you_mean(column, header) or "its columns: " + ", ".join(header))
                raise Bail
        names = list(header) if header is not None else list(dict.fromkeys(list(kinds) + list(listed or [])))
        if listed:
            names = list(listed) + [k for k in kinds if k not in listed]
        out_kinds, categories, why = {}, {}, {}
        for column in names:
            scanned = scan.columns.get(column) if isinstance(scan, TableScan) else None
            decl = kinds.get(column)
            kind = decl.kind if decl else (scanned.kind if scanned is not None else "number")
            out_kinds[column] = kind
            if kind != "category":
                continue
            if decl and decl.categories is not None:
                categories[column] = list(decl.categories)
            elif scanned is not None and scanned.values is not None:
                values = set(scanned.values) | ({decl.fill_value} if decl and decl.fill_value is not None else set())
                categories[column] = sort_categories(values)
            else:
                categories[column] = None
                why[column] = (f"{args['path']} cannot be read now ({scan})" if not isinstance(scan, TableScan)
                               else f"{args['path']} holds too many different values in it to be categories "
                                    f"(free text? declare it: {column} = text)")
        facts = {
            "kind": "table",
            "columns": {c: kinds[c].shape if c in kinds else SHAPES[k] for c, k in out_kinds.items()},
            "kinds": out_kinds,
            "categories": categories,
            "_declared": {c: k for c, k in kinds.items()},
            "_open": header is None and not listed,      # other names are number columns, found when loading
            "_why_unknown": why,
            "_scan": scan.to_json() if isinstance(scan, TableScan) else None,
            "_fill": args.get("fill") or "error",
            "_path": args["path"],
            "_unreadable": None if isinstance(scan, TableScan) else scan,
        }
        for column, values in categories.items():
            if values is not None and f"{column}_categories" not in facts:
                facts[f"{column}_categories"] = len(values)
        for column, kind in kinds.items():
            if kind.kind == "text" and column in out_kinds:
                facts[f"{column}_vocab"] = kind.text_options["vocab"] + 2        # + padding and unknown
        return facts


def category_target_facts(facts: dict, targets: list[Node]) -> None:
    """A single target that is a category column gives the data its classes and labels (class names)."""
    if len(targets) != 1 or not isinstance(targets[0], Ref) or targets[0].role != "column":
        return
    name = targets[0].name
    kind = (facts.get("kinds") or {}).get(name)
    if kind == "category" and (facts.get("categories") or {}).get(name):
        labels = facts["categories"][name]
        facts["classes"], facts["labels"] = len(labels), list(labels)
    elif kind == "integer":               # whole numbers as class labels 0..k-1: k from the largest in the file
        scanned = ((facts.get("_scan") or {}).get("columns") or {}).get(name) or {}
        numbers = [whole_number(v) for v in scanned.get("values") or ()]
        if numbers and all(n is not None and n >= 0 for n in numbers):
            facts["classes"] = max(numbers) + 1


# ---------------------------------------------------------------- expressions over a table


class DataExprChecker(ExprChecker):
    """The expression checker of the data block's inputs and targets (see the module's doc)."""

    def __init__(self, *args, facts: dict | None = None, fitting: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        facts = facts or {}
        self.kinds = facts.get("kinds") or {}
        self.categories = facts.get("categories") or {}
        self.why_unknown = facts.get("_why_unknown") or {}
        self.unreadable = (facts.get("_path"), facts.get("_unreadable")) if facts.get("_unreadable") else None
        self.fitting = fitting

    def is_category(self, e) -> bool:
        return isinstance(e, ast.Var) and self.kinds.get(e.name) == "category"

    def is_names(self, e) -> bool:
        """A category or text column: names, usable on their own (as indices or token ids), never as numbers."""
        return isinstance(e, ast.Var) and self.kinds.get(e.name) in NAMES

    def check(self, e) -> Node:
        if self.fitting and isinstance(e, ast.ListExpr):
            return self.feature_vector(e)
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Var) and self.fitting:
            if e.func.name == "one_hot":
                return self.one_hot(e)
            if e.func.name in ("standardize", "min_max"):
                return self.fitted(e)
        operands = []
        if isinstance(e, ast.BinOp):
            operands = [e.left, e.right]
        elif isinstance(e, ast.Neg):
            operands = [e.operand]
        elif isinstance(e, ast.Call):
            operands = [a.value for a in e.args]
        for operand in operands:
            self.refuse_category(operand)
        return super().check(e)

    def refuse_category(self, e) -> None:
        if self.is_names(e) and not self.is_category(e):
            self.error(f"'{e.name}' is text (token ids), not a number", e.span,
                       f"give {e.name} on its own as an input, to an embedding")
        if self.is_category(e):
            shown = self.categories.get(e.name)
            what = f" ({', '.join(shown[:5])}{', ...' if len(shown) > 5 else ''})" if shown else ""
            self.error(f"'{e.name}' is a category{what}, not a number", e.span,
                       f"use one_hot({e.name}) for a vector of 0s and 1s, or give {e.name} on its own as an input "
                       f"(its index) to an embedding")

    def category_count(self, e: ast.Var) -> int:
        values = self.categories.get(e.name)
        if values is None:
            why = self.why_unknown.get(e.name, "they are not declared")
            self.error(f"the categories of '{e.name}' are not known before loading: {why}", e.span,
                       f"list them in the source: {e.name} = category([\"...\", \"...\"])")
        return len(values)

    # ------------------------------------------------------------ one_hot, standardize, min_max, [a, b, ...]

    def one_hot(self, e: ast.Call) -> Node:
        values = [a for a in e.args if a.name is None]
        named = {a.name: a for a in e.args if a.name is not None}
        unknown = [n for n in named if n != "n"]
        if unknown or not 1 <= len(values) <= 2 or (len(values) == 2 and "n" in named):
            self.error("one_hot takes a category, or a whole number and how many values it can take: "
                       "one_hot(island), one_hot(digit, 10)", e.span)
        x_expr = values[0].value
        n_expr = values[1].value if len(values) == 2 else (named["n"].value if "n" in named else None)
        if self.is_category(x_expr):
            n = self.category_count(x_expr)
            x = self.names(x_expr)
            if n_expr is not None:                   # as `dslc show --ir` and resolved.yaml write it
                try:
                    given = self.ev(n_expr)
                except NotConstant:
                    raise Bail from None
                if given != n:
                    self.error(f"'{x_expr.name}' has {n} categories, not {given}: one_hot(x_expr.name) takes its "
                               f"count from them".replace("x_expr.name", x_expr.name), n_expr.span)
        else:
            if self.is_names(x_expr):
                self.error(f"'{x_expr.name}' is text: one_hot takes a category", x_expr.span,
                           f"declare it as one if its cells are a few names: {x_expr.name} = category")
            x = self.check(x_expr)
            if not x.shape.is_int:
                hint = (f"declare it as one: csv(..., {x_expr.name} = category)" if isinstance(x_expr, ast.Var)
                        else None)
                if hint and self.unreadable:
                    path, why = self.unreadable
                    hint = (f"{path} cannot be read now ({why}), so its columns count as numbers: declare "
                            f"{x_expr.name} = category([...]), or say where the file is (DSLC_DATA_ROOT)")
                self.error(f"one_hot needs a category or whole numbers, but gets {x.shape}", x_expr.span, hint)
            if n_expr is None:
                self.error("one_hot of whole numbers needs how many values they take: one_hot(x, n)", e.span)
            try:
                n = self.ev(n_expr)
            except NotConstant:
                raise Bail from None
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                self.error("the number of values of one_hot is a positive whole number", n_expr.span)
        if n >= 1 << 24:
            self.error(f"one_hot would make {n} values per sample", e.span)
        shape = TensorShape("f32", x.shape.dims + (n,))
        return Op(name="one_hot", args=(x, const(n)), shape=shape, batched=x.batched)

    def fitted(self, e: ast.Call) -> Node:
        name = e.func.name
        if len(e.args) != 1 or e.args[0].name:
            self.error(f"{name}(...) takes one value: {name}(x), or a vector {name}([a, b])", e.span)
        arg = e.args[0].value
        self.refuse_category(arg)
        x = self.check(arg)
        if not x.batched:
            self.error(f"{name}(...) of a value that is the same for every sample", arg.span)
        if x.shape.rank > 1 or x.shape.symbolic:
            self.error(f"{name}(...) scales a number or a vector per sample, each element by its own statistics; "
                       f"this is {x.shape}", arg.span, "flatten it into a list first: [a, b, ...]")
        if x.shape.dtype not in ("f16", "bf16", "f32", "f64", "i32", "i64"):
            self.error(f"{name}(...) needs numbers, not {x.shape}", arg.span)
        return Fitted(name=name, arg=x, shape=TensorShape("f32", x.shape.dims), batched=True)

    def feature_vector(self, e: ast.ListExpr) -> Node:
        """[a, b, one_hot(c), ...]: numbers and vectors side by side in one vector."""
        if not e.items:
            self.error("a feature vector [...] needs at least one value", e.span)
        parts: list[Node] = []
        run: list[Node] = []
        for item in e.items:
            self.refuse_category(item)
            node = self.check(item)
            if node.shape.rank == 0:
                run.append(node)
                continue
            if node.shape.rank != 1 or node.shape.symbolic:
                self.error(f"a feature vector holds numbers and vectors of a fixed size, not {node.shape}", item.span,
                           "flatten or reshape it in the model instead")
            if run:
                parts.append(self._stack(run))
                run = []
            parts.append(node)
        if run:
            parts.append(self._stack(run))
        if len(parts) == 1:
            return parts[0]
        size = sum(p.shape.dims[0] for p in parts)
        dtype = result_dtype("add", [(p.shape.dtype, isinstance(p, Const)) for p in parts])
        return Op(name="concat", args=tuple(parts), axis=0, shape=TensorShape(dtype, (size,)),
                  batched=any(p.batched for p in parts))

    @staticmethod
    def _stack(nodes: list[Node]) -> Node:
        dtype = result_dtype("add", [(n.shape.dtype, isinstance(n, Const)) for n in nodes])
        return Op(name="stack", args=tuple(nodes), axis=0, shape=TensorShape(dtype, (len(nodes),)),
                  batched=any(n.batched for n in nodes))

