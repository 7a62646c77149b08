"""Seeds: every generator at the start of a run, each epoch's shuffle, each rank's own stream.

A run seeds torch, numpy and Python once, then builds its model, so one seed
gives the same initial weights in dslc and in an ejected train.py. Each epoch's
order comes from a generator seeded with (seed, epoch), recomputable, so a
resumed run sees the same batches.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed torch (CPU and CUDA), numpy and Python; optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        torch.backends.cudnn.benchmark = False


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that shuffles epoch `epoch` (0-based): recomputable, so a resumed run sees the same order."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """Each rank's own seed for dropout and other random layers (the model's initial weights are shared)."""
    return (seed * 1_000_003 + 7_919 * (rank + 1) + 104_729 * step) % 2**63
