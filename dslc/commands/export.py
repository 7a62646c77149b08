"""The `dslc export` verb: a trained run to a verified ONNX file (and, on request, a Triton repository entry).

    dslc export RUN_DIR [--out FILE] [--opset N] [--variant V] [--triton REPO_DIR] [--max-batch N]

Nothing heavy is imported until the command runs, so `dslc check` stays fast.
"""

from __future__ import annotations

from pathlib import Path


def add_commands(add, overrides) -> None:
    sp = add("export", cmd_export, "export a trained run to ONNX, verified against PyTorch on real samples")
    sp.add_argument("run", metavar="RUN_DIR", help="a run directory written by `dslc train`")
    sp.add_argument("--out", metavar="FILE", help="where to write the .onnx file "
                    "(default: the spec's export.file, else RUN_DIR/model.onnx)")
    sp.add_argument("--opset", type=int, metavar="N", help="ONNX opset (default: the spec's export.opset, else 18)")
    sp.add_argument("--variant", help="which trained variant (default: every variant of the run)")
    sp.add_argument("--triton", metavar="REPO_DIR", help="also write REPO_DIR/<name>/1/model.onnx and config.pbtxt")
    sp.add_argument("--max-batch", type=int, default=64, metavar="N",
                    help="Triton max_batch_size (default 64; with --triton)")


def cmd_export(args) -> int:
    from dslc.errors import UserError
    from dslc.runtime.export.onnx_export import export_run, run_variants
    run = Path(args.run)
    if run.is_file():
        raise UserError(f"{run} is a file; `dslc export` takes a run directory written by `dslc train`")
    if not run.is_dir():
        raise UserError(f"run directory not found: {run}")
    variants = [args.variant] if args.variant else (run_variants(run) or [None])
    if args.out and len(variants) > 1:
        raise UserError(f"this run trained {len(variants)} variants ({', '.join(variants)}); "
                        "--out names one file, so pick one with --variant")
    for variant in variants:
        path = export_run(run, out=args.out, opset=args.opset, variant=variant, log=print)
        print(f"wrote {path}" + (f" (variant {variant})" if variant else ""))
        if args.triton:
            from dslc.runtime.export.triton import write_triton_model
            folder = write_triton_model(path, args.triton, max_batch_size=args.max_batch)
            print(f"wrote Triton model {folder.name}: {folder / 'config.pbtxt'}, {folder / '1' / 'model.onnx'}")
    return 0
