"""run.json: what a run is, written before its first step, so a run killed before it ends can be continued.

    {"spec": "specs/cnn_mnist.dlspec", "spec_path": "/abs/specs/cnn_mnist.dlspec", "spec_file": "spec.dlspec",
     "overrides": ["train.epochs=5"], "variant": null, "configurations": [null],
     "data_root": null, "device": null, "nan": "stop", "prepared": null, "created": "...", "updated": "...",
     "pid": 1234, "host": "name", "resumed": 0, "dslc_version": "0.1.0"}

`dslc train --resume RUN` reads it to continue with the stored spec text and
overrides (and the data root, prepared data, device and NaN policy given when the run
started), and `dslc runs` reads it to list runs that never wrote a
summary.json: a live `pid` on this host is a run in progress, anything else
stopped without a word (killed). Older runs without run.json fall back to their
summary.json. No torch.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from dslc.errors import UserError
from dslc.files import process_alive

from dslc.runtime.training.run_dir import spec_file_name, write_json

MANIFEST = "run.json"


def write_manifest(run: Path, *, spec: str, overrides: list[str], variant: str | None,
                   configurations: list[str | None], data_root=None, device: str | None = None,
                   nan: str = "stop", resumed: bool = False, prepared=None) -> dict:
    """Write (or, resuming, update) RUN/run.json; returns what was written."""
    from dslc import __version__
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    old = read_manifest(run) if resumed else None
    record = {
        "spec": str(spec), "spec_path": str(Path(spec).resolve()), "spec_file": spec_file_name(spec),
        "overrides": list(overrides), "variant": variant, "configurations": list(configurations),
        "data_root": str(data_root) if data_root is not None else None, "device": device, "nan": nan,
        "prepared": str(prepared) if prepared is not None else None,
        "created": (old or {}).get("created", now), "updated": now,
        "pid": os.getpid(), "host": socket.gethostname(),
        "resumed": int((old or {}).get("resumed", 0)) + (1 if resumed else 0),
        "dslc_version": __version__,
    }
    if old and old.get("spec_path"):
        record["spec"], record["spec_path"] = old["spec"], old["spec_path"]     # where the run came from
    write_json(run / MANIFEST, record)
    return record


def read_manifest(run: Path) -> dict | None:
    """RUN/run.json, or None when the run has none (runs made before dslc wrote it)."""
    path = Path(run) / MANIFEST
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    if not isinstance(record, dict) or "overrides" not in record:
        raise UserError(f"{path} is not a dslc run manifest")
    return record


def is_alive(record: dict) -> bool:
    """True when the process that wrote the manifest still runs on this host."""
    pid = record.get("pid")
    if not isinstance(pid, int) or record.get("host") != socket.gethostname() or pid == os.getpid():
        return False
    return process_alive(pid)
