"""bench/gpu.py stays runnable without a GPU: `--dry-run` runs its code paths on the CPU and prints its table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu.py"


def _run(*args, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_dry_run_measures_every_case_on_the_cpu(tmp_path):
    done = _run("--dry-run")
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for model in ("cnn_mnist", "lstm_mnist"):
        assert re.search(rf"{model}\s+train fp32\s+cpu\s+\d+ samples/s", out)
        assert re.search(rf"{model}\s+train bf16->fp32\s+cpu\s+\d+ samples/s", out)    # no CUDA: fp32, as dslc train
        for batch in ("b1", "b8"):
            line = re.search(rf"^{model}\s+ort CPU {batch}\s+cpu .*$", out, re.M).group(0)
            speedup = float(re.search(r"([\d.]+)x", line).group(1))
            differ = float(re.search(r"max \|ort - torch\| (\S+)", line).group(1))
            assert speedup > 0 and differ < 1e-4
    assert re.search(r"cnn_mnist\s+nproc 2 \(gloo\)\s+cpu\s+\d+ samples/s", done.stdout)
    assert "failed" not in done.stdout and "skipped" not in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the script would run for minutes")
def test_without_a_gpu_it_says_so_in_one_line():
    done = _run(timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == "error: no CUDA GPU is usable here; run with --dry-run to check the script on the CPU"
