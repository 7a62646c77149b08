"""The `dslc data` commands: `dslc data prepare` writes a spec's data as shards that training streams from.

    dslc data prepare SPEC [--variant NAME] [--set NAME=VALUE]... [--data-root DIR] [--out DIR] [--force]
                      [--shard-mb N]

The data is loaded once, as `dslc train` would load it (split, fitted,
computed, cast to the model's inputs), and written as plain .npy
shards (runtime/data/prepared.py) into --out DIR, else the default place
($DSLC_PREPARED_DIR, else <dslc cache>/prepared/<spec>-<key>), where `dslc
train SPEC` finds it by itself and streams from it with a bounded memory
footprint. A second prepare of unchanged data has nothing to do. A spec with
variants prepares each distinct data block once. Nothing here imports torch
at module level.
"""

from __future__ import annotations

import sys

from dslc.commands.train import positive_int
from dslc.errors import UserError


def add_commands(add, overrides) -> None:
    sp = add("data", None, "prepare a spec's data on disk, for training on data larger than memory")
    sub = sp.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    help_ = ("load a spec's data once and write it as .npy shards that `dslc train` streams from "
             "(found by itself in the default place, or with --prepared DIR)")
    p = sub.add_parser("prepare", help=help_, description=help_)
    p.set_defaults(func=cmd_prepare)
    p.add_argument("spec", metavar="SPEC")
    overrides(p)
    p.add_argument("--variant", metavar="NAME", help="prepare only this variant's data")
    p.add_argument("--data-root", metavar="DIR", help="where the data lives (default: $DSLC_DATA_ROOT, then the spec)")
    p.add_argument("--out", metavar="DIR",
                   help="write the shards here (default: $DSLC_PREPARED_DIR, else the dslc cache's prepared/ "
                        "folder, where `dslc train` looks by itself)")
    p.add_argument("--force", action="store_true", help="prepare again even when the prepared data is current")
    p.add_argument("--shard-mb", type=positive_int, default=256, metavar="N",
                   help="rows per shard: about N MiB of every column (default 256)")


def cmd_prepare(args) -> int:
    from dslc.compiler.data_files import data_root
    from dslc.dsl.read import read_spec
    from dslc.runtime.data.prepared import describe, prepare
    from dslc.runtime.training.run_dir import check_configuration

    spec, source = read_spec(args.spec)
    names = [args.variant] if args.variant else [v.name for v in spec.variants] or [None]
    with data_root(args.data_root):           # the checker reads a table's header where the loader will
        configs = [check_configuration(spec, source, list(args.set or []), name) for name in names]
    configs = [c for c in configs if c.data is not None]
    if not configs:
        raise UserError(f"{args.spec} has no data block, so there is nothing to prepare")
    blocks: list[dict] = []
    if args.out and len({_key(describe(c)) for c in configs}) > 1:
        raise UserError(f"the variants of {args.spec} read different data; prepare one at a time with "
                        f"--variant NAME (each into its own --out), or leave --out out")
    for checked in configs:
        block = describe(checked)
        if block in blocks:
            continue
        blocks.append(block)
        label = f" [{checked.variant}]" if checked.variant else ""
        done = prepare(checked, args.data_root, args.out, args.force, args.shard_mb * 2**20)
        m = done.manifest
        counts = ", ".join(f"{s['rows']:,} {role}" for role, s in m["splits"].items())
        shards = sum(len(c["shards"]) for s in m["splits"].values() for c in s["columns"])
        train = f"dslc train {args.spec}" + (f" --prepared {done.path}" if args.out else "")
        if done.wrote:
            if done.why and done.why != "--force":
                print(f"note: preparing again: {done.why}", file=sys.stderr)
            print(f"{args.spec}{label}: prepared {counts} samples ({_size(m['bytes'])} in {shards} shards, "
                  f"{m.get('seconds', 0):.1f} s) in {done.path}")
        else:
            print(f"{args.spec}{label}: already prepared ({counts} samples, {_size(m['bytes'])}; the data is "
                  f"unchanged) in {done.path}")
        print(f"  `{train}` streams from it")
    return 0


def _key(block: dict) -> str:
    import json
    return json.dumps(block, sort_keys=True)


def _size(nbytes: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:,} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TiB"
