"""Wall time of whole `dslc` commands, against `python -c "import torch"` as the floor.

    OMP_NUM_THREADS=1 .venv/bin/python bench/commands.py [--runs 3] [--specs cnn_mnist,thermometer,...]

Two tables:

1. The tail of `dslc train` for each shipped spec: from the line that ends
   training ("... completed after N steps ...") to the process's exit — the
   ONNX export, its verification and the plots (target: under 1.5 s). Data,
   model, export and plots are the shipped sizes; only the training length is
   cut where the spec would take minutes (the tail does not depend on it;
   the row says so).
2. Cold commands on a trained cnn_mnist run (a fresh process each):
   `dslc check`, `eval`, `export`, `plot`, `report`, `predict` (target: eval,
   export and plot under 3 s).

Each command runs `--runs` times, interleaved with the floor; the table gives
the fastest wall time (the run least disturbed on a shared machine), the
median, the CPU time (user + sys of the process and its children, which a
busy machine inflates far less than the wall time; for `dslc train`, of the
whole command) and the ratio of the fastest wall time to the fastest floor. A benchmark, not a test: it prints
tables and flags what misses its target; the exit status is 1 when something
does.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DSLC = [sys.executable, "-m", "dslc"]
FLOOR = [sys.executable, "-c", "import torch"]
TAIL_TARGET_S = 1.5
COLD_TARGET_S = 3.0
COLD_TARGETS = {"eval", "export", "plot"}

# spec -> extra `dslc train` arguments: the shipped sizes; a shorter run where the spec takes minutes
TRAIN_ARGS = {
    "thermometer": [],
    "cnn_mnist": [],
    "cnn_batchnorm": [],
    "lstm_mnist": [],
    "rnn_sin_cos": [],
    "autoencoder_mnist": ["--epochs", "2"],
    "dropout_overfit": [],
    "gru_text": ["--steps", "20", "--data-root", str(SHARED / "rt_polarity")],
}


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(argv, cwd, env=None) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds, the finished process) of one command."""
    cpu = _cpu_children()
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, _cpu_children() - cpu, proc


def train_tail(spec: str, out: Path, env) -> tuple[float, float, float]:
    """(tail seconds, whole command seconds, CPU seconds): the tail runs from the arrival of the line that
    ends training to the process's exit."""
    argv = DSLC + ["train", f"specs/{spec}.dlspec", "--out", str(out), "--force", *TRAIN_ARGS[spec]]
    cpu = _cpu_children()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ended: list[float] = []
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    for line in proc.stdout:
        if " after " in line and " steps in " in line and not ended:
            ended.append(time.perf_counter())
    proc.wait()
    done = time.perf_counter()
    reader.join()
    if proc.returncode != 0 or not ended:
        raise SystemExit(f"dslc train {spec} failed ({proc.returncode}): {''.join(err)[-2000:]}")
    return done - ended[0], done - start, _cpu_children() - cpu


def row(name: str, walls: list[float], cpus: list[float], floor: float, target: float | None) -> tuple[str, bool]:
    best = min(walls)
    miss = target is not None and best > target
    flag = f"  < {target:g} s: {'MISSED' if miss else 'ok'}" if target is not None else ""
    return (f"{name:44s} {best:7.2f} {statistics.median(walls):7.2f} {statistics.median(cpus):7.2f} "
            f"{best / floor:6.2f}x{flag}"), miss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of each command (fastest and median reported)")
    ap.add_argument("--specs", default=",".join(TRAIN_ARGS), help="comma-separated specs for the tail table")
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("DSLC_NO_PLOTS", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)    # an installed package runs from its bytecode cache; so do we
    specs = [s for s in args.specs.split(",") if s]
    if "gru_text" in specs and not (SHARED / "rt_polarity").is_dir():
        print(f"gru_text skipped: {SHARED / 'rt_polarity'} is missing")
        specs.remove("gru_text")

    floors, floor_cpus = [], []

    def floor_once():
        wall, cpu, _ = timed(FLOOR, ROOT, env)
        floors.append(wall)
        floor_cpus.append(cpu)

    missed = False
    with tempfile.TemporaryDirectory(prefix="dslc-bench-") as tmp:
        tmp = Path(tmp)
        tails: dict[str, list[tuple[float, float, float]]] = {s: [] for s in specs}
        for _ in range(args.runs):
            for spec in specs:
                floor_once()
                tails[spec].append(train_tail(spec, tmp / spec, env))
        run = tmp / "cnn_mnist"
        if not run.is_dir():
            train_tail("cnn_mnist", run, env)
        onnx = run / "model.onnx"
        digit = ROOT / "runtime" / "data" / "samples" / "digit7.png"
        commands = {
            "check": ["check", "specs/cnn_mnist.dlspec"],
            "eval": ["eval", str(run)],
            "export": ["export", str(run), "--out", str(tmp / "cold.onnx")],
            "plot": ["plot", str(run), "--out", str(tmp / "plots")],
            "report": ["report", str(run), "--out", str(tmp / "report.html")],
            "predict": ["predict", str(onnx), str(digit)],
        }
        cold: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                floor_once()
                wall, cpu, proc = timed(DSLC + argv, ROOT, env)
                if proc.returncode != 0:
                    raise SystemExit(f"dslc {' '.join(argv)} failed: {proc.stderr[-2000:]}")
                cold[name].append((wall, cpu))
        plots = sorted(p.name for p in (tmp / "plots").glob("*.png"))

    floor = min(floors)
    load = os.getloadavg()[0]
    head = f"{'':44s} {'fastest':>7s} {'median':>7s} {'CPU':>7s} {'/floor':>7s}"
    print(f"floor: `python -c \"import torch\"` fastest {floor:.2f} s, median {statistics.median(floors):.2f} s "
          f"wall, {statistics.median(floor_cpus):.2f} s CPU ({len(floors)} runs; load average {load:.1f} on "
          f"{os.cpu_count()} cores)\n")
    print("dslc train: export, verification and plots after training (the tail), seconds; CPU is the whole "
          "command's")
    print(head)
    for spec, results in tails.items():
        cut = f" ({' '.join(a for a in TRAIN_ARGS[spec] if not a.startswith(str(SHARED)))})" \
            if TRAIN_ARGS[spec] else ""
        text, miss = row(f"{spec}{cut} tail", [r[0] for r in results], [r[2] for r in results], floor,
                         TAIL_TARGET_S)
        missed |= miss
        print(text + f"   (whole command {min(r[1] for r in results):.1f} s)")
    print("\ncold commands on a cnn_mnist run, seconds")
    print(head)
    for name, results in cold.items():
        text, miss = row(f"dslc {name}", [r[0] for r in results], [r[1] for r in results], floor,
                         COLD_TARGET_S if name in COLD_TARGETS else None)
        missed |= miss
        print(text)
    print(f"\n(plot drew: {', '.join(plots)})")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
