"""The `dslc predict` and `dslc serve` verbs: argument parsing only (nothing heavy imported here)."""

from __future__ import annotations

DEFAULT_MAX_BODY = 16 * 1024 * 1024      # the same default as dslc.runtime.serving.serve (not imported: it is heavy)
PROVIDER_HELP = "onnxruntime provider: tensorrt, cuda or cpu (default: CUDA when a GPU is there, else CPU)"


def cmd_predict(args) -> int:
    from dslc.runtime.serving.predict import cmd_predict as run
    if not args.out:
        return run(args)
    return _predict_into_place(args, run)


def _predict_into_place(args, run) -> int:
    """--out FILE is written under a temporary name beside FILE and renamed once complete: a full disk or a
    failure half-way leaves FILE as it was (or absent) and says one line (dslc.files.replacing)."""
    import contextlib
    import io
    from pathlib import Path

    from dslc.files import replacing

    out = Path(args.out)
    printed = io.StringIO()
    with replacing(out) as tmp:
        args.out = str(tmp)
        try:
            with contextlib.redirect_stdout(printed):
                status = run(args)
        finally:
            args.out = str(out)
    print(printed.getvalue().replace(str(tmp), str(out)), end="")     # "wrote N prediction(s) to FILE"
    return status


def cmd_serve(args) -> int:
    from dslc.runtime.serving.serve import serve
    serve(args.model, host=args.host, port=args.port, max_body=args.max_body, provider=args.provider)
    return 0


def add_commands(add, overrides) -> None:
    sp = add("predict", cmd_predict, "run a model on inputs from a file and print or save its predictions")
    sp.add_argument("model", metavar="MODEL", help="an exported .onnx file or a training run directory")
    sp.add_argument("input", metavar="INPUT",
                    help=".npy/.npz arrays, .csv numeric columns, a .png image or .txt (one text per line)")
    sp.add_argument("--provider", help=PROVIDER_HELP)
    sp.add_argument("--batch", type=int, default=256, metavar="N", help="samples per run (default 256)")
    sp.add_argument("--out", metavar="FILE", help="write predictions to FILE (.npy, .npz or .jsonl) instead of printing")
    sp.add_argument("--variant", help="with a run directory: which variant's model")
    sp.add_argument("--checkpoint", choices=("best", "last"), default="best",
                    help="with a run directory: which checkpoint (default best)")

    sp = add("serve", cmd_serve, "serve an exported .onnx model over HTTP (POST /predict, GET /health, GET /metadata)")
    sp.add_argument("model", metavar="MODEL.onnx")
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    sp.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    sp.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES",
                    help="largest request body accepted (default 16 MiB); larger ones get 413")
    sp.add_argument("--provider", help=PROVIDER_HELP)
