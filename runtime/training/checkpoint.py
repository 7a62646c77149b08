"""Checkpoints: safe to load, written atomically, refused when they belong to another spec.

A checkpoint is a dict of tensors and plain Python values only (model,
optimizer and scheduler state, the RNG states of torch, CUDA, numpy and
Python, the loop's position: epoch, step and batch within the epoch, the
spec hash and a format version), so it loads with
`torch.load(weights_only=True)`: a file carrying any other pickled object is
refused without running it. Files are written to a temporary name in the same
folder, flushed and fsynced, then renamed over the old one, so a crash never
leaves a half-written `last.pt`; a write that fails (a full disk, a read-only
folder) raises one UserError naming the file and the reason, and the previous
checkpoint stays as it was. Temporary files that a killed writer left behind
are removed at the next save.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from dslc.errors import UserError
from dslc.files import fsync_dir, process_alive

FORMAT = "dslc-checkpoint"
VERSION = 1


# ---------------------------------------------------------------- random number generators


def rng_state() -> dict:
    """Every RNG the loop may touch, as tensors and lists."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "state": list(mt), "gauss": gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][:torch.cuda.device_count()])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


# ---------------------------------------------------------------- writing


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write `state` (plus the format marker) to `path` atomically; raises UserError when it cannot be written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            writer = _Writer(f)
            torch.save({"format": FORMAT, "version": VERSION, **state}, writer)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        cause = err if isinstance(err, OSError) else writer.error if writer is not None else None
        if cause is None:
            raise
        kept = "; the previous checkpoint there is unchanged" if path.exists() else ""
        raise UserError(f"cannot write checkpoint {path}: {cause.strerror or cause}{kept}") from None
    fsync_dir(path.parent)
    _remove_stale(path)


class _Writer:
    """The file torch.save writes to, keeping the OSError that torch reports only as `unexpected pos`."""

    def __init__(self, file):
        self.file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.file.flush()


def _remove_stale(path: Path) -> None:
    """Temporary files of `path` whose writer died (SIGKILL mid-write)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:-len(".tmp")]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


# ---------------------------------------------------------------- reading


def load_checkpoint(path: str | Path, spec_hash: str | None = None, force: bool = False,
                    map_location="cpu") -> dict:
    """Read a checkpoint safely; raises UserError when it is missing, corrupt, unsafe or for another spec.

    With `spec_hash`, a checkpoint written for a different spec (text,
    overrides or variant) is refused unless `force`.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}")
    try:
        with warnings.catch_warnings():          # e.g. "Detected pickle protocol 4": the verdict below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "global" in str(err).lower():         # a class or function to import: what a code payload needs
            raise UserError(f"refusing to load {path}: it holds Python objects other than tensors and plain "
                            f"values, and loading them could run code (only dslc checkpoints are accepted)") from None
        raise UserError(f"checkpoint {path} is corrupt (not a readable checkpoint file); "
                        f"use an older checkpoint or train again") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError, KeyError,
            IndexError, TypeError, UnicodeDecodeError) as err:
        raise UserError(f"checkpoint {path} is corrupt or truncated ({_first_line(err)}); "
                        f"use an older checkpoint or train again") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a dslc checkpoint")
    if state.get("version") != VERSION:
        raise UserError(f"checkpoint {path} has format version {state.get('version')}; "
                        f"this dslc reads version {VERSION}")
    if spec_hash is not None and state.get("spec_hash") != spec_hash and not force:
        raise UserError(f"checkpoint {path} was written for a different spec (its spec, --set overrides or variant "
                        f"changed since: hash {str(state.get('spec_hash'))[:12]}, now {spec_hash[:12]}); "
                        f"pass --force to load its weights anyway")
    return state


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
