"""Shared test set-up: one thread (two cores, often shared), paths to specs and samples."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DSLC_NO_PLOTS", "1")      # `dslc train` in tests skips its plots; tests/test_plots.py draws them

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_configure(config):
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
