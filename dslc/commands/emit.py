"""The `dslc emit` and `dslc schema` verbs: eject a spec to plain PyTorch source, print the YAML face's JSON Schema.

    dslc emit SPEC --python DIR [--variant V] [--set NAME=VALUE]   model.py, train.py, dslc_kit/, README.md in DIR
    dslc schema [--out FILE]                                        JSON Schema of a spec's YAML form

Imports nothing heavy at module level (the CLI loads this module at start-up).
"""

from __future__ import annotations

import sys
from pathlib import Path

EJECTED_FILES = ("model.py", "train.py", "dslc_kit", "README.md")


def cmd_emit(args) -> int:
    from dslc.errors import UserError
    from dslc.compiler.check import check_file as load
    from dslc.compiler.emit import eject
    from dslc.compiler.emit_train import EjectError
    checked = load(args.spec, args.set or [], args.variant)
    out = Path(args.python)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; --python takes a folder to write model.py, train.py, dslc_kit/ and "
                        "README.md in")
    if not args.force:
        existing = [str(out / name) for name in EJECTED_FILES if (out / name).exists()]
        if existing:
            raise UserError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                            "pass --force to overwrite, or choose another folder")
    try:
        paths = eject(checked, out, args.spec)
    except EjectError as err:
        raise UserError(f"cannot eject {args.spec}: {err}") from None
    except OSError as err:
        raise UserError(f"cannot write to {out}: {err.strerror or err}") from None
    label = f" [{checked.variant}]" if checked.variant else ""
    print(f"{args.spec}{label}: wrote {', '.join(str(p) for p in paths)}")
    return 0


def cmd_schema(args) -> int:
    from dslc.errors import UserError
    from dslc.editor.schema import schema_text
    text = schema_text()
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as err:
            raise UserError(f"cannot write {args.out}: {err.strerror or err}") from None
        print(f"JSON Schema written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def add_commands(add, overrides) -> None:
    sp = add("emit", cmd_emit, "eject a spec to plain PyTorch source: model.py, train.py (with dslc's training kit, "
                              "dslc_kit/) and a README")
    sp.add_argument("spec", metavar="SPEC")
    sp.add_argument("--python", required=True, metavar="DIR", help="the folder to write the PyTorch source into")
    sp.add_argument("--variant", help="eject this variant (default: the spec as written)")
    sp.add_argument("--force", action="store_true", help="overwrite model.py, train.py, dslc_kit/ and README.md in DIR")
    overrides(sp)

    sp = add("schema", cmd_schema, "print the JSON Schema of the YAML form of specs (for editor completion)")
    sp.add_argument("--out", metavar="FILE", help="write the schema to FILE instead of printing it")
