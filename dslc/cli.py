"""The `dslc` command line: one verb per pipeline stage.

    dslc check SPEC...        parse and check (shapes included); no torch import
    dslc show SPEC            layer table with output shapes and parameter counts
    dslc fmt SPEC             canonical text (or --to yaml)
    dslc layers               the layer catalog

Spec mistakes print `file:line:col: error: ...` with the line, a caret and a
hint, and exit with status 2. Other failures (missing data, bad checkpoints)
exit with status 1 and one clear message. Heavy imports happen inside the
command that needs them, so `dslc check` starts fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from dslc.errors import SpecError, UserError

# Modules that add the later pipeline verbs (train, eval, export, predict, serve, ...).
# Each has `add_commands(add, overrides)` and imports nothing heavy at module level.
COMMAND_MODULES: tuple[str, ...] = ("dslc.commands.train", "dslc.commands.serve",
                                   "dslc.commands.export", "dslc.commands.emit",
                                   "dslc.commands.pictures", "dslc.commands.lsp", "dslc.commands.data")

EXIT_SPEC_ERROR = 2
EXIT_FAILURE = 1


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def load(path: str, overrides=(), variant: str | None = None):
    """Parse and check one spec file; returns the CheckedSpec (raises SpecError)."""
    from dslc.compiler.check import check_file
    return check_file(path, overrides, variant)


# ---------------------------------------------------------------- commands


MAX_SHOWN_DIAGNOSTICS = 50


def shown(err: SpecError) -> str:
    """The diagnostics of a SpecError as printed: the first MAX_SHOWN_DIAGNOSTICS, then how many more."""
    text = [d.render() for d in err.diagnostics[:MAX_SHOWN_DIAGNOSTICS]]
    more = len(err.diagnostics) - MAX_SHOWN_DIAGNOSTICS
    if more > 0:
        text.append(f"... and {more:,} more (dslc check --format json lists every one)")
    return "\n".join(text)


def cmd_check(args) -> int:
    from dslc.compiler.check import check_all, parse_override
    from dslc.errors import SpecError
    from dslc.dsl.diagnostics import render_json
    from dslc.dsl.read import read_spec
    failed = False
    diagnostics = []
    for path in args.specs:
        try:
            spec, source = read_spec(path)
            results = check_all(spec, source, [parse_override(o) for o in args.set or []])
        except SpecError as err:
            failed = True
            diagnostics += err.diagnostics
            if args.format == "text":
                _err(shown(err))
            continue
        warnings = {w.render(): w for r in results for w in r.warnings}
        diagnostics += warnings.values()
        if args.format == "text":
            for text in warnings:
                _err(text)
            for r in results:
                m = r.model
                label = f" [{r.variant}]" if r.variant else ""
                ins = ", ".join(str(s) for s in m.inputs.values())
                outs = ", ".join(str(s) for s in m.output_shapes)
                print(f"{path}{label}: ok — model {m.name}: {ins} -> {outs}")
    if args.format == "json":
        print(render_json(diagnostics))
    return EXIT_SPEC_ERROR if failed else 0


def cmd_show(args) -> int:
    if args.resolved:
        from dslc.runtime.session.plan import plan_new, resolved_config
        sys.stdout.write(resolved_config(plan_new(args.spec, list(args.set or []), args.variant)))
        return 0
    checked = load(args.spec, args.set or [], args.variant)
    if args.ir:
        print("\n".join(checked.ir_lines()))
        return 0
    from dslc.compiler.show import model_table
    print(model_table(checked, args.model))
    if args.graph:
        from dslc.compiler.show import write_graph
        write_graph(checked, args.graph, args.model)
        print(f"diagram written to {args.graph}")
    return 0


def cmd_fmt(args) -> int:
    from dslc.dsl.format import format_spec
    from dslc.dsl.read import read_spec
    spec, _ = read_spec(args.spec)
    if args.to == "yaml":
        from dslc.dsl.yaml_face import to_yaml
        text = to_yaml(spec)
    else:
        from dslc.compiler.layers import LINE_STARTERS
        text = format_spec(spec, LINE_STARTERS)
    if args.write:
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_layers(args) -> int:
    from dslc.compiler.layers import LAYERS
    for layer in LAYERS.values():
        def default(v):
            return "true" if v is True else "false" if v is False else "none" if v is None else str(v)
        params = ", ".join(a.name + ("..." if a.variadic else "") + ("" if a.required or a.variadic else f"={default(a.default)}")
                           for a in layer.args)
        print(f"{layer.name}({params})\n    {layer.doc}")
    return 0


# ---------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    from dslc import __version__
    p = argparse.ArgumentParser(prog="dslc", description="Declarative model specs, compiled to PyTorch and ONNX.")
    p.add_argument("--version", action="version", version=f"dslc {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=fn)
        return sp

    def overrides(sp):
        sp.add_argument("--set", action="append", metavar="NAME=VALUE",
                        help="override a `let` variable or a block setting (train.epochs=3); repeatable")

    sp = add("check", cmd_check, "parse and check specs, shapes included")
    sp.add_argument("specs", nargs="+", metavar="SPEC")
    sp.add_argument("--format", choices=("text", "json"), default="text", help="diagnostics as text or JSON")
    overrides(sp)

    sp = add("show", cmd_show, "print a model's layers, output shapes and parameter counts")
    sp.add_argument("spec", metavar="SPEC")
    sp.add_argument("--model", help="which model (default: the trained one)")
    sp.add_argument("--variant", help="show this variant")
    sp.add_argument("--graph", metavar="FILE", help="also draw the model to FILE (.svg or .png)")
    sp.add_argument("--ir", action="store_true",
                    help="print every expression of the spec as typed IR (per-sample types; B marks the batch axis)")
    sp.add_argument("--resolved", action="store_true",
                    help="print the resolved configuration instead (variables substituted, defaults filled; "
                         "the same as `dslc train SPEC --print-config`)")
    overrides(sp)

    sp = add("fmt", cmd_fmt, "print the spec in canonical form")
    sp.add_argument("spec", metavar="SPEC")
    sp.add_argument("--to", choices=("dlspec", "yaml"), default="dlspec")
    sp.add_argument("--write", metavar="FILE", help="write to FILE instead of printing")

    add("layers", cmd_layers, "list the layer catalog")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(add, overrides)
    return p


def main(argv=None) -> int:
    """Run one command; returns its exit status. Called as the program (`argv` None), it ends the process
    itself (see `_leave`)."""
    code = _run(argv)
    if argv is None:
        _leave(code)
    return code


def _leave(code: int) -> None:
    """End the program: atexit handlers run and the streams are flushed, then the process exits without
    tearing the interpreter down. Deallocating torch's (and matplotlib's, onnx's) objects one by one at
    shutdown takes 0.3-1.2 s of every command that imported them, and nothing is left to clean up then."""
    import atexit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _run(argv) -> int:
    """One command's exit status. A torch.distributed worker (`dslc train` under torchrun or
    --nproc) ends here instead, once its output is flushed (runtime/training/distributed.py: end_process)."""
    try:
        status = _main(argv)
    except SystemExit as stop:
        if isinstance(stop.code, str) and sys.modules.get("dslc.runtime.training.distributed"):
            _err(stop.code)                         # what Python would print on the way out
        _end_worker(stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1)
        raise
    _end_worker(status)
    return status


def _end_worker(status: int) -> None:
    distributed = sys.modules.get("dslc.runtime.training.distributed")     # imported only by `dslc train`
    if distributed is not None:
        distributed.end_process(status)


def _main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except SpecError as err:
        _err(shown(err))
        return EXIT_SPEC_ERROR
    except UserError as err:
        _err(f"error: {err}")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as err:
        if err.errno not in MACHINE_ERRNOS or os.environ.get("DSLC_DEBUG"):
            return _internal_error(err)
        _err(f"error: {_os_error_line(err)}")       # the machine's doing (disk, permissions), not dslc's
        return EXIT_FAILURE
    except Exception as err:  # a bug in dslc, not in the spec
        return _internal_error(err)


def _internal_error(err: Exception) -> int:
    if os.environ.get("DSLC_DEBUG"):
        raise err
    _err(f"internal error: {type(err).__name__}: {err}\n(this is a bug in dslc; set DSLC_DEBUG=1 for the traceback)")
    return 70


# File-system failures that say something about the machine, not about dslc: a full disk or quota, a
# read-only file system, missing permissions, an I/O error, too many open files, a name that is too long.
MACHINE_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EIO", "EFBIG", "EMFILE", "ENFILE", "ENAMETOOLONG",
    "ENOTDIR", "EISDIR", "ELOOP", "ETXTBSY", "ESTALE") if hasattr(errno, name))


def _os_error_line(err: OSError) -> str:
    """`cannot write FILE: No space left on device` where the OSError names its file."""
    reason = err.strerror or str(err)
    if err.filename is None:
        return reason
    target = f"{err.filename}" + (f" -> {err.filename2}" if err.filename2 else "")
    return f"{target}: {reason}"
