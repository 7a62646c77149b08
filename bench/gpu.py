"""A GPU benchmark: training epochs with the data on the GPU, `--nproc` over nccl, onnxruntime CUDA/TensorRT vs torch.

One script, meant to finish within 5 minutes on one GPU. For cnn_mnist and
lstm_mnist (MNIST: the data root given, else the bundled 5k sample):

    train     epochs of the loop `dslc train` runs (Trainer._epoch, no evaluation), the data
              resident on the device, precision fp32 and bf16 (autocast); samples/s of the
              fastest epoch after a warm-up epoch
    nproc     `dslc train SPEC --nproc N` with one worker per GPU present (nccl), N >= 2;
              samples/s over the run's training (its steps x batch / its training seconds,
              read from metrics.jsonl; the first epoch's warm-up included)
    infer     the module (seeded, eval, no_grad) in torch eager against the exported, verified
              ONNX file under onnxruntime: TensorRT (where present), CUDA; batch 1 (ms per call)
              and 256 (samples/s); I/O binding on: inputs bound from the torch tensors already
              on the device, outputs left on the device; median call, the runtimes alternating

`--dry-run` runs the same code on the CPU in seconds: 256 samples, CPU
providers, batch 1 and 8, two gloo workers for nproc (cnn only; bf16 falls
back to fp32 there, as `dslc train` does). A test runs it so the script stays runnable.

    python bench/gpu.py [--data-root DIR] [--seconds 1] [--epochs 3] [--models cnn_mnist,lstm_mnist]
    python bench/gpu.py --dry-run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("cnn_mnist", "lstm_mnist")


class Setup:
    """What one run of the benchmark uses: device, sizes, providers."""

    def __init__(self, dry_run: bool, data_root: str | None, seconds: float, epochs: int):
        self.dry_run, self.data_root = dry_run, data_root
        self.device = torch.device("cpu" if dry_run else "cuda")
        self.samples = 256 if dry_run else None            # None: the whole training split
        self.batches = (1, 8) if dry_run else (1, 256)
        self.seconds = 0.05 if dry_run else seconds
        self.epochs = 2 if dry_run else max(2, epochs)
        self.precisions = ("fp32", "bf16")
        self.workers = 2 if dry_run else torch.cuda.device_count()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def configure(name: str, overrides=()):
    from dslc.runtime.training.run_dir import check_configuration, read_spec_text
    path = ROOT / "specs" / f"{name}.dlspec"
    spec, source = read_spec_text(path.read_text(), str(path))
    return check_configuration(spec, source, list(overrides), None)


def load(checked, setup: Setup):
    from dslc.runtime.data.dataset import Split, load_data
    data = load_data(checked, data_root=setup.data_root, download=False)
    if setup.samples is not None:
        cut = lambda s, n: None if s is None else Split([t[:n] for t in s.inputs], [t[:n] for t in s.targets])  # noqa: E731
        data = replace(data, train=cut(data.train, setup.samples), validation=cut(data.validation, 64),
                       test=cut(data.test, 64))
    return data


# ---------------------------------------------------------------- training epochs, data on the device


def train_rows(name: str, setup: Setup) -> list[dict]:
    from dslc.runtime.training.loop import Trainer
    from dslc.runtime.training.progress import Progress
    rows = []
    for precision in setup.precisions:
        checked = configure(name, [f"train.precision={precision}"])
        data = load(checked, setup)
        with tempfile.TemporaryDirectory() as folder:
            trainer = Trainer(checked, data, Path(folder), spec_hash="bench", device=setup.device,
                              progress=Progress("quiet"))
            trainer.total_steps = trainer.total_epochs = 10**9     # never "the end"
            trainer.evaluating = False
            trainer._plan()
            resident = all(t.device.type == setup.device.type for t in trainer.train_split.inputs)
            times = []
            for _ in range(setup.epochs):
                setup.sync()
                start = time.perf_counter()
                trainer._epoch()
                setup.sync()
                times.append(time.perf_counter() - start)
            n = trainer.train_split.n
            loss = float(torch.stack(trainer.losses).float().mean()) if trainer.losses else float("nan")
        ran = precision if trainer.precision == precision else f"{precision}->{trainer.precision}"
        rows.append({"model": name, "case": f"train {ran}", "data": setup.device.type if resident else "host",
                     "samples_s": n / min(times[1:]), "note": f"{n} samples, loss {loss:.3f}"})
    return rows


# ---------------------------------------------------------------- --nproc, one worker per GPU


def nproc_rows(name: str, setup: Setup) -> list[dict]:
    case = f"nproc {setup.workers} ({'gloo' if setup.device.type == 'cpu' else 'nccl'})"
    if setup.workers < 2:
        return [{"model": name, "case": "nproc", "data": "-", "samples_s": None,
                 "note": f"skipped: {setup.workers} GPU (nccl needs one GPU per worker, 2 at least)"}]
    if setup.dry_run and name != MODELS[0]:
        return []                                  # the same code path once is enough to keep it runnable
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        argv = [sys.executable, "-m", "dslc", "train", str(ROOT / "specs" / f"{name}.dlspec"), "--nproc",
                str(setup.workers), "--out", str(run), "--quiet", "--no-export", "--no-plots"]
        argv += ["--set", "train.steps=6"] if setup.dry_run else ["--set", f"train.epochs={setup.epochs}"]
        if setup.data_root:
            argv += ["--data-root", setup.data_root]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "DSLC_PREPARED_DIR": str(Path(folder) / "prepared")}
        if setup.dry_run:
            env["CUDA_VISIBLE_DEVICES"] = ""
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise RuntimeError(f"dslc train --nproc {setup.workers} failed: {last}")
        events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    end = next(e for e in reversed(events) if e.get("event") == "end")
    batch = configure(name).data.batch
    rate = end["step"] * batch / max(1e-9, end["wall_seconds"])
    return [{"model": name, "case": case, "data": setup.device.type, "samples_s": rate,
             "note": f"{end['step']} steps of {batch}, warm-up included; whole command {wall:.1f} s"}]


# ---------------------------------------------------------------- onnxruntime against torch eager


def providers(setup: Setup, folder: Path) -> list[tuple[str, list]]:
    import onnxruntime as ort
    if setup.dry_run:
        return [("CPU", ["CPUExecutionProvider"])]
    found, chosen = ort.get_available_providers(), []
    if "TensorrtExecutionProvider" in found:
        trt = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(folder / "trt"), "trt_fp16_enable": False}
        chosen.append(("TensorRT", [("TensorrtExecutionProvider", trt), "CUDAExecutionProvider"]))
    if "CUDAExecutionProvider" in found:
        chosen.append(("CUDA", ["CUDAExecutionProvider"]))
    return chosen


def session_for(path: Path, chain: list):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=chain)
    first = chain[0] if isinstance(chain[0], str) else chain[0][0]
    if session.get_providers()[0] != first:
        raise RuntimeError(f"{first} did not start")
    return session


def median_call(calls: dict, seconds: float, sync) -> dict[str, float]:
    """Median seconds per call of each function, alternating blocks of calls between them."""
    for fn in calls.values():
        for _ in range(3):
            fn()
        sync()
    per_call = {k: [] for k in calls}
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or min(len(v) for v in per_call.values()) < 5:
        for name, fn in calls.items():
            for _ in range(5):
                t = time.perf_counter()
                fn()
                sync()
                per_call[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in per_call.items()}


def infer_rows(name: str, setup: Setup) -> list[dict]:
    from dslc.compiler.build import build_model
    from dslc.runtime.export.onnx_export import export_module
    checked = configure(name)
    inputs = load(checked, setup).test.inputs
    torch.manual_seed(0)
    module = build_model(checked.model, checked.init).eval()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        path = export_module(module, checked, [x[:64] for x in inputs], Path(folder) / f"{name}.onnx")
        model = module.to(setup.device)
        kind = "cuda" if setup.device.type == "cuda" else "cpu"
        for label, chain in providers(setup, Path(folder)):
            try:
                session = session_for(path, chain)
            except Exception as err:              # noqa: BLE001 - a provider that cannot start is a row, not a stop
                rows.append({"model": name, "case": f"ort {label}", "data": "-", "samples_s": None,
                             "note": f"skipped: {str(err).strip().splitlines()[0][:80]}"})
                continue
            names = [i.name for i in session.get_inputs()]
            out_names = [o.name for o in session.get_outputs()]
            for batch in setup.batches:
                index = torch.arange(batch) % inputs[0].shape[0]
                xs = [x[index].contiguous().to(setup.device) for x in inputs]
                binding = session.io_binding()
                for n, x in zip(names, xs):
                    binding.bind_input(n, kind, 0, np.float32 if x.dtype == torch.float32 else np.int64,
                                       list(x.shape), x.data_ptr())
                for n in out_names:
                    binding.bind_output(n, kind)

                def run_torch(xs=xs):
                    with torch.no_grad():
                        return model(*xs)

                def run_ort(binding=binding):
                    session.run_with_iobinding(binding)

                run_ort()
                differ = float(np.abs(binding.copy_outputs_to_cpu()[0] - run_torch().float().cpu().numpy()).max())
                t = median_call({"torch": run_torch, "ort": run_ort}, setup.seconds, setup.sync)
                rows.append({"model": name, "case": f"ort {label} b{batch}", "data": kind, "batch": batch,
                             "torch": t["torch"], "ort": t["ort"], "speedup": t["torch"] / t["ort"],
                             "note": f"max |ort - torch| {differ:.1e}"})
        module.to("cpu")
    return rows


# ---------------------------------------------------------------- the table


def table(rows: list[dict]) -> str:
    head = f"{'model':<11} {'case':<20} {'data':<6} {'torch':>19} {'dslc / ort':>19} {'ort/torch':>9}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "speedup" in r:
            def cell(sec, batch=r["batch"]):
                return f"{sec * 1e3:8.3f} ms/call" if batch == 1 else f"{batch / sec:8.0f} samples/s"
            mid = f"{cell(r['torch']):>19} {cell(r['ort']):>19} {r['speedup']:>8.2f}x"
        else:
            rate = "-" if r["samples_s"] is None else f"{r['samples_s']:8.0f} samples/s"
            mid = f"{'':>19} {rate:>19} {'':>9}"
        lines.append(f"{r['model']:<11} {r['case']:<20} {r['data']:<6} {mid}  {r.get('note', '')}")
    return "\n".join(lines)


def describe(setup: Setup) -> str:
    import onnxruntime as ort
    where = "CPU (dry run)" if setup.dry_run else \
        ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    return (f"torch {torch.__version__}, onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())}); "
            f"on {where}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="the same code paths on the CPU, tiny sizes, in seconds")
    p.add_argument("--data-root", default=None, help="MNIST in torchvision's layout (default: the bundled sample)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--seconds", type=float, default=1.0, help="timing time per runtime and inference case")
    p.add_argument("--epochs", type=int, default=3, help="training epochs per case (the first is a warm-up)")
    args = p.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA GPU is usable here; run with --dry-run to check the script on the CPU", file=sys.stderr)
        return 1
    torch.set_num_threads(1 if args.dry_run else max(1, torch.get_num_threads()))
    setup = Setup(args.dry_run, args.data_root, args.seconds, args.epochs)
    print(describe(setup), flush=True)
    start, rows = time.perf_counter(), []
    for name in args.models.split(","):
        for part in (train_rows, nproc_rows, infer_rows):
            try:
                rows += part(name, setup)
            except RuntimeError as err:
                rows.append({"model": name, "case": part.__name__.split("_")[0], "data": "-", "samples_s": None,
                             "note": f"failed: {str(err).strip().splitlines()[0][:100]}"})
            print(f"{name}: {part.__name__.split('_')[0]} done ({time.perf_counter() - start:.0f} s)", flush=True)
    print()
    print(table(rows))
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
