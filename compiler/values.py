"""Compile-time values: constant evaluation of spec expressions, and argument binding.

Settings and layer arguments are evaluated once, before any weight exists:
numbers, strings, booleans, lists, `let` variables, `data.*` facts and
arithmetic fold to Python values; a bare unknown name stays a `Symbol`
(`relu`, `word`, `cpu`) and a call stays a `CallValue` (`adam(lr=0.01)`) for
the catalog that owns it. `bind` matches a call's arguments against the
catalog entry's `Arg` list, so every catalog (layers, losses, optimizers,
schedules, metrics, data sources) reports argument mistakes the same way.
"""

from __future__ import annotations

import difflib
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable

from dslc.dsl import ast
from dslc.dsl.diagnostics import Report, did_you_mean


@dataclass(frozen=True)
class Symbol:
    """A bare name that is not a variable: a choice (`word`), a catalog entry (`mse`)."""

    name: str
    span: ast.Span = field(default=ast.NO_SPAN, compare=False)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Arg:
    """One argument of a catalog entry."""

    name: str
    kind: str = "any"       # int, float, bool, str, size, ints, floats, name, any
    default: Any = ...      # ... means required
    choices: tuple = ()
    check: Callable[[Any], str | None] | None = None   # returns a complaint or None
    variadic: bool = False  # takes all remaining positional arguments (reshape)
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is ... and not self.variadic


@dataclass(frozen=True)
class Value:
    """An evaluated argument: its name (None for positional), value, the value's span and the
    whole argument's span (`name=value`), where mistakes in the name are shown."""

    name: str | None
    value: Any
    span: ast.Span
    arg_span: ast.Span = ast.NO_SPAN

    @property
    def where(self) -> ast.Span:
        return self.arg_span if self.arg_span.known else self.span


@dataclass(frozen=True)
class CallValue:
    name: str
    args: tuple[Value, ...]
    span: ast.Span = ast.NO_SPAN
    name_span: ast.Span = ast.NO_SPAN


def positive(v) -> str | None:
    values = v if isinstance(v, (list, tuple)) else [v]
    return None if all(x > 0 for x in values) else "must be positive"


def non_negative(v) -> str | None:
    values = v if isinstance(v, (list, tuple)) else [v]
    return None if all(x >= 0 for x in values) else "must not be negative"


def probability(v) -> str | None:
    return None if 0 <= v < 1 else "must be at least 0 and below 1"


KIND_NAMES = {"value": "a value of the model", "int": "a whole number", "float": "a number", "bool": "true or false", "str": "a name or string",
              "size": "a whole number or a list of them", "ints": "a list of whole numbers",
              "floats": "a list of numbers", "name": "a name", "any": "a value"}


def describe(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Symbol):
        return f"the name '{v.name}'"
    if isinstance(v, CallValue):
        return f"a call of {v.name}(...)"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(describe(x) for x in v) + "]"
    return repr(v)


def _coerce(kind: str, v):
    """The value as `kind`, or raise TypeError."""
    is_int = isinstance(v, int) and not isinstance(v, bool)
    if kind == "any":
        return v
    if kind == "int" and is_int:
        return v
    if kind == "float" and (is_int or isinstance(v, float)):
        return float(v)
    if kind == "bool" and isinstance(v, bool):
        return v
    if kind in ("str", "name") and isinstance(v, Symbol):
        return v.name
    if kind == "str" and isinstance(v, str):
        return v
    if kind == "size":
        if is_int:
            return v
        if isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            return tuple(v)
    if kind == "ints" and isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return list(v)
    if kind == "floats" and isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        return [float(x) for x in v]
    raise TypeError


def bind(owner: str, specs: list[Arg], values: list[Value], span: ast.Span, report: Report,
         known_names: list[str] = ()) -> dict | None:
    """Match positional and keyword values to `specs`; report every mistake; None if any."""
    by_name = {a.name: a for a in specs}
    out: dict[str, Any] = {}
    spans: dict[str, ast.Span] = {}
    misspelt: set[str] = set()     # arguments an unknown keyword probably meant
    ok = True
    positional = [a for a in specs if not a.variadic]
    variadic = next((a for a in specs if a.variadic), None)
    i = 0
    for v in values:
        if v.name is None:
            if i < len(positional):
                target = positional[i]
            elif variadic:
                out.setdefault(variadic.name, []).append(v)
                continue
            else:
                names = ", ".join(a.name for a in positional)
                report.error(f"{owner} takes at most {len(positional)} positional argument"
                             f"{'s' if len(positional) != 1 else ''}", v.span,
                             f"its arguments are: {names}" if names else f"{owner} takes no arguments")
                ok = False
                continue
            i += 1
        else:
            target = by_name.get(v.name)
            if target is None or target.variadic:
                report.error(f"{owner} has no argument '{v.name}'", v.where,
                             did_you_mean(v.name, by_name) or f"{owner} takes no arguments")
                misspelt.update(difflib.get_close_matches(v.name, list(by_name), n=1, cutoff=0.6))
                ok = False
                continue
        if target.name in out:
            report.error(f"argument '{target.name}' of {owner} is given twice", v.where)
            ok = False
            continue
        out[target.name] = v
    result: dict[str, Any] = {}
    for a in specs:
        given = out.get(a.name)
        if a.variadic:
            items = given or []
            coerced = []
            for v in items:
                c = _check_one(owner, a, v, report, known_names)
                ok = ok and c is not _BAD
                coerced.append(c)
            result[a.name] = coerced
            continue
        if given is None:
            if a.default is ... and a.name not in misspelt:
                report.error(f"{owner} needs argument '{a.name}'", span,
                             f"write {owner}({', '.join(x.name + '=...' for x in specs if x.required)})")
                ok = False
            elif a.default is not ...:
                result[a.name] = a.default
            continue
        c = _check_one(owner, a, given, report, known_names)
        if c is _BAD:
            ok = False
        result[a.name] = c
        spans[a.name] = given.span
    if not ok:
        return None
    result["__spans__"] = spans
    return result


_BAD = object()


def _subject(owner: str, a: Arg) -> str:
    """How an argument is named in messages; a setting is checked as a call of one argument of its own name."""
    return f"'{a.name}'" if a.name == owner else f"argument '{a.name}' of {owner}"


def _check_one(owner: str, a: Arg, v: Value, report: Report, known_names) -> Any:
    if a.kind == "value":                  # a model value by name (a layer's memory=...): the checker resolves it
        if isinstance(v.value, Symbol):
            return v.value
        report.error(f"{_subject(owner, a)} names a value of the model (an input or a binding), not "
                     f"{describe(v.value)}", v.span)
        return _BAD
    if isinstance(v.value, Symbol) and a.kind not in ("str", "name", "any"):
        report.error(f"unknown name '{v.value.name}'", v.span,
                     did_you_mean(v.value.name, known_names) or "define it with `let NAME = value`")
        return _BAD
    if v.value is None and a.default is None:
        return None
    try:
        c = _coerce(a.kind, v.value)
    except TypeError:
        report.error(f"{_subject(owner, a)} must be {KIND_NAMES[a.kind]}, not {describe(v.value)}", v.span)
        return _BAD
    if a.choices and c not in a.choices:
        report.error(f"{_subject(owner, a)} must be one of: {', '.join(map(str, a.choices))}", v.span,
                     did_you_mean(str(c), map(str, a.choices)))
        return _BAD
    if a.check:
        complaint = a.check(c)
        if complaint:
            report.error(f"{_subject(owner, a)} {complaint} (got {describe(v.value)})", v.span)
            return _BAD
    return c


# ---------------------------------------------------------------- evaluation

MAX_INT_BITS = 64     # whole numbers beyond this are mistakes, and would make arithmetic slow

_BINOPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "**": operator.pow}
CONST_FUNCTIONS = {"sqrt": math.sqrt, "exp": math.exp, "log": math.log, "abs": abs, "min": min, "max": max,
                   "int": int, "float": float, "round": round}


class Facts:
    """`data.*` facts known at check time (classes, vocab, ...), reported like variables."""

    def __init__(self, owner: str, facts: dict[str, Any]):
        self.owner = owner
        self.facts = facts


class NotConstant(Exception):
    pass


class Evaluator:
    """Folds expressions to Python values in an environment of variables and facts."""

    def __init__(self, env: dict[str, Any], report: Report):
        self.env = env
        self.report = report
        self.used: set[str] = set()
        self.failed: set[str] = set()     # variables whose value had an error (reported): using them is quiet
        self.pending: dict[str, ast.Span] = {}   # `let`s not evaluated yet (while the lets are, in order)
        self.current: str | None = None           # the `let` being evaluated

    def __call__(self, e) -> Any:
        """The expression's value; reports and raises NotConstant when it has none."""
        if isinstance(e, ast.Number):
            return e.value
        if isinstance(e, (ast.String, ast.Bool)):
            return e.value
        if isinstance(e, ast.ListExpr):
            return [self(i) for i in e.items]
        if isinstance(e, ast.Var):
            if e.name in self.failed:
                raise NotConstant
            if e.name in self.env:
                self.used.add(e.name)
                v = self.env[e.name]
                if isinstance(v, Facts):
                    self.report.error(f"'{e.name}' needs a field, as in {e.name}.classes", e.span,
                                      "known: " + ", ".join(sorted(v.facts)) if v.facts else None)
                    raise NotConstant
                return v
            if e.name in self.pending:
                self._not_yet_defined(e)
            return Symbol(e.name, e.span)
        if isinstance(e, ast.Attr):
            base = e.value
            if isinstance(base, ast.Var) and base.name in self.failed:     # its mistake was reported once
                raise NotConstant
            if isinstance(base, ast.Var) and isinstance(self.env.get(base.name), Facts):
                self.used.add(base.name)
                facts = self.env[base.name]
                if e.name not in facts.facts:
                    self.report.error(f"{facts.owner} has no fact '{e.name}'", e.span,
                                      did_you_mean(e.name, facts.facts) or
                                      ("known: " + ", ".join(sorted(facts.facts)) if facts.facts else
                                       f"{facts.owner} provides no facts"))
                    raise NotConstant
                return facts.facts[e.name]
            if isinstance(base, ast.Var) and base.name == "data":
                self.report.error(f"data.{e.name} needs a `data` block", e.span,
                                  "add one: data { source = mnist(root=\"data\") }, or write the number")
                raise NotConstant
            self.report.error("'.' is only used for data facts such as data.classes here", e.span)
            raise NotConstant
        if isinstance(e, ast.Neg):
            v = self(e.operand)
            return -self._number(v, e.operand)
        if isinstance(e, ast.BinOp):
            a, b = self(e.left), self(e.right)
            a, b = self._number(a, e.left), self._number(b, e.right)
            if e.op == "**" and isinstance(b, int) and abs(a) > 1 and b * math.log2(abs(a)) > MAX_INT_BITS:
                self.report.error("number too large", e.span)
                raise NotConstant
            try:
                v = _BINOPS[e.op](a, b)
            except ZeroDivisionError:
                self.report.error("division by zero", e.span)
                raise NotConstant from None
            except OverflowError:
                self.report.error("number too large", e.span)
                raise NotConstant from None
            if isinstance(v, complex):
                self.report.error("result is not a real number", e.span)
                raise NotConstant
            if (isinstance(v, float) and not math.isfinite(v)) or (isinstance(v, int) and v.bit_length() > MAX_INT_BITS):
                self.report.error("number too large", e.span)
                raise NotConstant
            return v
        if isinstance(e, ast.Call):
            if not isinstance(e.func, ast.Var):
                self.report.error("only named functions can be called", e.span)
                raise NotConstant
            args = tuple(Value(a.name, self(a.value), a.value.span, a.span) for a in e.args)
            name = e.func.name
            if name in CONST_FUNCTIONS and all(isinstance(a.value, (int, float)) and not isinstance(a.value, bool)
                                               and a.name is None for a in args):
                try:
                    return CONST_FUNCTIONS[name](*(a.value for a in args))
                except (ValueError, TypeError, OverflowError) as err:
                    self.report.error(f"{name}(...) cannot be computed: {err}", e.span)
                    raise NotConstant from None
            return CallValue(name, args, e.span, e.func.span)
        if isinstance(e, ast.Index):
            v, i = self(e.value), self(e.index)
            if isinstance(v, list) and isinstance(i, int) and not isinstance(i, bool):
                if -len(v) <= i < len(v):
                    return v[i]
                self.report.error(f"index {i} is out of range for a list of {len(v)}", e.index.span)
                raise NotConstant
            self.report.error("only lists can be indexed here", e.span)
            raise NotConstant
        raise NotConstant

    def _not_yet_defined(self, e: ast.Var):
        """A `let` that uses itself, or a variable defined further down: a located error, not 'unknown name'."""
        if e.name == self.current:
            self.report.error(f"'{e.name}' refers to itself: a variable's value cannot use its own name", e.span,
                              "give a value, e.g. a number, or another variable defined above")
        else:
            line = self.pending[e.name].line
            self.report.error(f"'{e.name}' is used before it is defined (at line {line})", e.span,
                              f"a variable can use only the variables above it: move `let {e.name} = ...` above "
                              f"this line")
        raise NotConstant

    def _number(self, v, e):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return v
        if isinstance(v, Symbol):
            self.report.error(f"unknown name '{v.name}'", e.span,
                              did_you_mean(v.name, [k for k, x in self.env.items() if not isinstance(x, Facts)])
                              or "define it with `let NAME = value`")
        else:
            self.report.error(f"arithmetic needs numbers, not {describe(v)}", e.span)
        raise NotConstant

    def values(self, args: list[ast.Argument]) -> list[Value] | None:
        """Evaluate call arguments; None if any failed (already reported)."""
        out, ok = [], True
        for a in args:
            try:
                out.append(Value(a.name, self(a.value), a.value.span, a.span))
            except NotConstant:
                ok = False
        return out if ok else None
