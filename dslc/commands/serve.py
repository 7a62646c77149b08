"""The `dslc predict` and `dslc serve` verbs: argument parsing, and which kind of model to open.

Nothing heavy is imported here. `dslc predict RUN_DIR` opens the run's trained
torch module through dslc/commands/run_model.py; everything else runs in
runtime/serving, which never imports torch.
"""

from __future__ import annotations

DEFAULT_MAX_BODY = 16 * 1024 * 1024      # the same default as dslc.runtime.serving.limits (not imported: it is heavy)
DEFAULT_MAX_MEMORY_MIB = 512
PROVIDER_HELP = "onnxruntime provider: tensorrt, cuda or cpu (default: CUDA when a GPU is there, else CPU)"


def cmd_predict(args) -> int:
    from dslc.commands.run_model import open_model
    from dslc.runtime.serving.predict import predict_file

    def run(args) -> int:
        model = open_model(args.model, args.provider, args.variant, args.checkpoint)
        return predict_file(model, args.input, batch=args.batch, out=args.out)
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
    serve(args.model, host=args.host, port=args.port, max_body=args.max_body, provider=args.provider,
          max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
          max_memory_mib=args.max_memory, threads=args.threads, access_log=not args.quiet)
    return 0


def cmd_generate(args) -> int:
    from pathlib import Path

    from dslc.runtime.serving.generate import generate
    from dslc.runtime.serving.inference import exported_model
    from dslc.runtime.serving.predict import open_model
    path = Path(args.model)
    model = open_model(exported_model(path) if path.is_dir() else path, args.provider)
    print(generate(model, args.prompt, args.tokens, args.temperature, args.top_k, args.seed))
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

    sp = add("serve", cmd_serve, "serve an exported .onnx model over HTTP: POST /predict (batched), "
                                 "GET /health, /metadata, /openapi.json, /docs")
    sp.add_argument("model", metavar="MODEL.onnx")
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    sp.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    sp.add_argument("--max-batch", type=int, metavar="N",
                    help="most samples per onnxruntime call when gathering concurrent requests "
                         "(default: from the model's input size, at most 128); 1 turns batching off")
    sp.add_argument("--max-wait-ms", type=float, metavar="MS",
                    help="how long a batch may wait for requests still being read (default 2; "
                         "a lone request never waits)")
    sp.add_argument("--max-queue", type=int, metavar="N",
                    help="requests that may wait for the model (default 256); more get 503")
    sp.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES",
                    help="largest request body accepted (default 16 MiB); larger ones get 413")
    sp.add_argument("--max-memory", type=int, metavar="MiB",
                    help=f"memory the requests in flight may take together (default {DEFAULT_MAX_MEMORY_MIB}); "
                         "a request that would pass it gets 503, one that alone would gets 413")
    sp.add_argument("--threads", type=int, metavar="N",
                    help="onnxruntime intra-op threads (default: OMP_NUM_THREADS, else every core)")
    sp.add_argument("--provider", help=PROVIDER_HELP)
    sp.add_argument("--quiet", action="store_true", help="no access line per request on stderr")

    sp = add("generate", cmd_generate, "continue a prompt with an exported language model (onnxruntime only)")
    sp.add_argument("model", metavar="RUN_OR_ONNX", help="an exported .onnx file, or a run directory with one")
    sp.add_argument("--prompt", default="", help="the text to continue (default: start afresh)")
    sp.add_argument("--tokens", type=int, default=200, metavar="N", help="how many tokens to add (default 200)")
    sp.add_argument("--temperature", type=float, default=0.8, metavar="T",
                    help="sampling temperature: lower is more predictable, 0 always picks the best (default 0.8)")
    sp.add_argument("--top-k", type=int, default=None, metavar="K", help="draw only among the K best tokens")
    sp.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the draws: the same seed, the same text")
    sp.add_argument("--provider", help=PROVIDER_HELP)
