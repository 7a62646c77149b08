"""Inference speed of an exported file under onnxruntime against the torch module it came from.

For cnn_mnist and lstm_mnist, in one process: the module is built (seeded),
exported with `export_module` (verified as always) and timed two ways on the
same inputs (real MNIST test digits, tiled up to the batch size):

    torch     eager, eval mode, under no_grad, torch.set_num_threads(THREADS)
    ort       onnxruntime CPUExecutionProvider: graph optimisation ORT_ENABLE_ALL,
              sequential execution, intra_op_num_threads = THREADS (as torch), no spinning

Latency is the median time of one call at batch 1; throughput is samples per
second at batch 256 (median call). Calls alternate between the two runtimes in
blocks, so drifts in machine load hit both. Targets on CPU: ort/torch speedup
>= 2x at batch 1, >= 1x at batch 256. When a CUDA GPU and onnxruntime's
CUDAExecutionProvider are both usable, the same is measured on the GPU (numpy
in and out for both runtimes). Prints a table; not a test.

    OMP_NUM_THREADS=1 python bench/inference.py [--threads 1] [--seconds 2] [--models cnn_mnist,lstm_mnist]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("cnn_mnist", "lstm_mnist")
TARGETS = {1: 2.0, 256: 1.0}             # batch -> minimum speedup of ort over torch on CPU


def build(name: str, folder: Path):
    """The spec's module (seeded), real test inputs and the exported, verified file."""
    from dslc.errors import UserError
    from dslc.compiler.check import check_file as load
    from dslc.compiler.build import build_model
    from dslc.runtime.export.onnx_export import export_module
    checked = load(str(ROOT / "specs" / f"{name}.dlspec"))
    torch.manual_seed(0)
    module = build_model(checked.model, checked.init).eval()
    try:
        from dslc.runtime.data.dataset import load_data
        inputs = load_data(checked, download=False).test.inputs
        where = "real test digits"
    except UserError as err:
        from dslc.runtime.export.onnx_verify import sampled_inputs
        inputs = sampled_inputs(checked.model, n=256)
        where = f"sampled inputs ({err})"
    path = export_module(module, checked, [x[:64] for x in inputs], folder / f"{name}.onnx")
    return module, inputs, path, where


def batch_of(inputs: list[torch.Tensor], n: int) -> list[torch.Tensor]:
    index = torch.arange(n) % inputs[0].shape[0]
    return [x[index].contiguous() for x in inputs]


def ort_session(path: Path, provider: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=[provider])
    if session.get_providers()[0] != provider:
        raise RuntimeError(f"{provider} did not start")
    return session


def timings(calls: dict, seconds: float) -> dict[str, float]:
    """Median seconds per call of each function, alternating blocks of calls between them."""
    for fn in calls.values():              # warm-up (allocators, lazy initialisation, cuDNN choice)
        for _ in range(3):
            fn()
    per_call = {k: [] for k in calls}
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or min(len(v) for v in per_call.values()) < 5:
        for name, fn in calls.items():
            for _ in range(5):
                t = time.perf_counter()
                fn()
                per_call[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in per_call.items()}


def measure(name: str, module, inputs, path: Path, device: str, threads: int, seconds: float) -> list[dict]:
    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    session = ort_session(path, provider, threads)
    model = module.to(device)
    names = [i.name for i in session.get_inputs()]
    rows = []
    for batch in TARGETS:
        xs = batch_of(inputs, batch)
        feed = {n: x.numpy() for n, x in zip(names, xs)}

        def run_torch(xs=xs):
            with torch.no_grad():
                out = model(*[x.to(device) for x in xs])
                return out.cpu() if device == "cuda" else out          # .cpu() waits for the GPU

        def run_ort(feed=feed):
            return session.run(None, feed)

        np.testing.assert_allclose(run_ort()[0], run_torch().numpy(), atol=1e-4)
        t = timings({"torch": run_torch, "ort": run_ort}, seconds)
        rows.append({"model": name, "device": device, "batch": batch, "torch": t["torch"], "ort": t["ort"],
                     "speedup": t["torch"] / t["ort"]})
    module.to("cpu")
    return rows


def table(rows: list[dict]) -> str:
    head = f"{'model':<11} {'device':<6} {'batch':>5}  {'torch':>21}  {'onnxruntime':>21}  {'ort/torch':>9}  target"
    lines = [head, "-" * len(head)]
    for r in rows:
        def cell(sec, batch=r["batch"]):
            return f"{sec * 1e3:9.3f} ms/call" if batch == 1 else f"{batch / sec:9.0f} samples/s"
        target = TARGETS[r["batch"]] if r["device"] == "cpu" else None
        verdict = "" if target is None else f">= {target:g}x " + ("ok" if r["speedup"] >= target else "MISSED")
        lines.append(f"{r['model']:<11} {r['device']:<6} {r['batch']:>5}  {cell(r['torch']):>21}  "
                     f"{cell(r['ort']):>21}  {r['speedup']:>8.2f}x  {verdict}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--threads", type=int, default=1, help="threads for both runtimes (default 1)")
    p.add_argument("--seconds", type=float, default=2.0, help="timing time per runtime and case")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = ["cpu"]
    if torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers():
        devices.append("cuda")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} thread(s); "
          f"devices: {', '.join(devices)}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            module, inputs, path, where = build(name, Path(folder))
            print(f"{name}: exported and verified {path.name} ({path.stat().st_size / 1e6:.2f} MB); timing on {where}")
            for device in devices:
                try:
                    rows += measure(name, module, inputs, path, device, args.threads, args.seconds)
                except RuntimeError as err:
                    print(f"{name} on {device}: skipped ({str(err).splitlines()[0]})")
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
