"""Compile-time benchmark: parse, check and build time per spec, and a cold `dslc check`.

    .venv/bin/python bench/compile.py [--runs 7]

Times are medians after imports (targets: under 50 ms each). The cold check
is a fresh `dslc check specs/cnn_mnist.dlspec` process (median of 5; target:
at most 0.25 s of CPU, which a busy machine cannot inflate as it does wall time;
with Python's bytecode cache, as an installed package has it),
and `python -X importtime` confirms it imports neither torch nor matplotlib.
A benchmark, not a test: it prints a table and flags what misses its target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
DSLC = [sys.executable, "-m", "dslc"]
STAGE_TARGET_MS = 50
COLD_TARGET_S = 0.25
HEAVY = ("torch", "torchvision", "matplotlib", "onnx", "onnxruntime", "numpy")    # libraries a check must not load


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def stage_times(runs: int) -> list[tuple[str, float, float, float]]:
    import torch
    torch.set_num_threads(1)
    from dslc.compiler.build import build_model
    from dslc.compiler.check import check
    from dslc.dsl.diagnostics import Source
    from dslc.dsl.parse import parse

    rows = []
    for path in sorted((ROOT / "specs").glob("*.dlspec")):
        text = path.read_text()
        source = Source(str(path), text)
        spec = parse(text, str(path))
        checked = check(spec, source)
        build_model(checked.model, checked.init)          # warm the lazy imports once
        rows.append((path.stem,
                     median_ms(lambda: parse(text, str(path)), runs),
                     median_ms(lambda: check(spec, source), runs),
                     median_ms(lambda: build_model(checked.model, checked.init), runs)))
    return rows


WORST_TARGET_S = 5.0


def worst_cases() -> list[tuple[str, float, str]]:
    """Specs within the size limit made to be slow: (what, seconds to parse and check, outcome)."""
    from dslc.compiler.check import check_all
    from dslc.dsl.diagnostics import Source
    from dslc.dsl.parse import parse
    from dslc.errors import SpecError
    cases = {
        "2,000 mistakes, 2 variants": "let lr = 0.1\nmodel m(x: f32[4]) {\n" + "    linear(q)\n" * 2000
                                      + "}\nvariants {\n    a: lr = 1\n    b: lr = 2\n}\n",
        "49,980 stages": "model m(x: f32[4]) {" + " relu" * 49_980 + " }\n",
        "1 MB of list items": "let a = [" + "1," * 499_990 + "1]\n",
    }
    rows = []
    for what, text in cases.items():
        start = time.perf_counter()
        try:
            check_all(parse(text, "worst.dlspec"), Source("worst.dlspec", text))
            outcome = "ok"
        except SpecError as err:
            outcome = f"{len(err.diagnostics):,} error(s): {err.diagnostics[0].message[:40]}"
        rows.append((what, time.perf_counter() - start, outcome))
    return rows


def cold_check_seconds(runs: int = 5) -> tuple[float, float]:
    """Median wall time and median CPU time of a fresh `dslc check` process (CPU time is what a busy
    machine cannot inflate: it tells slowness from waiting for a core)."""
    import resource
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    # as installed: the bytecode cache is written once (pip does it at install), then used
    subprocess.run(DSLC + ["check", "specs/cnn_mnist.dlspec"], cwd=ROOT, check=True, capture_output=True, env=env)
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(DSLC + ["check", "specs/cnn_mnist.dlspec"], cwd=ROOT, check=True, capture_output=True,
                       env=env)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def heaviest_imports(n: int = 8) -> tuple[list[str], list[tuple[int, str]]]:
    """The heavy libraries `dslc check` imports (it must import none), and its slowest imports (cumulative
    microseconds)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "dslc", "check", "specs/cnn_mnist.dlspec"],
                          cwd=ROOT, check=True, capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = line[len("import time:"):].split("|")
            rows.append((int(cumulative), name[1:]))       # nested imports keep their indent
    heavy = sorted({name.strip().split(".")[0] for _, name in rows} & set(HEAVY))
    top_level = [(us, name) for us, name in rows if not name.startswith(" ")]
    return heavy, sorted(top_level, reverse=True)[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs per stage (median)")
    args = ap.parse_args()

    rows = stage_times(args.runs)
    print(f"{'spec':20s} {'parse ms':>9s} {'check ms':>9s} {'build ms':>9s}")
    slow = False
    for name, p, c, b in rows:
        flag = " <- over target" if max(p, c, b) > STAGE_TARGET_MS else ""
        slow |= bool(flag)
        print(f"{name:20s} {p:9.2f} {c:9.2f} {b:9.2f}{flag}")
    print(f"(median of {args.runs} runs each, after imports; target < {STAGE_TARGET_MS} ms)\n")

    worst = worst_cases()
    print(f"{'worst case':28s} {'seconds':>8s}  outcome")
    for what, seconds, outcome in worst:
        flag = " <- over target" if seconds > WORST_TARGET_S else ""
        slow |= bool(flag)
        print(f"{what:28s} {seconds:8.2f}  {outcome}{flag}")
    print(f"(parse and check of specs within the 1 MB limit; target < {WORST_TARGET_S:.0f} s)\n")

    cold, cpu = cold_check_seconds()
    heavy, top = heaviest_imports()
    load = os.getloadavg()[0]
    print(f"cold `dslc check specs/cnn_mnist.dlspec`: {cold:.3f} s wall, {cpu:.3f} s CPU "
          f"(median of 5; target ≤ {COLD_TARGET_S} s CPU; load average {load:.1f} on {os.cpu_count()} cores)")
    print(f"imports {', '.join(HEAVY)}: {'YES: ' + ', '.join(heavy) + ' (it must not)' if heavy else 'none of them'}")
    print("heaviest imports (cumulative ms):")
    for us, name in top:
        print(f"  {us / 1000:7.1f}  {name}")
    return 1 if heavy or cpu > COLD_TARGET_S or slow else 0


if __name__ == "__main__":
    sys.exit(main())
