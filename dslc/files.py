"""Writing files so that a failure leaves nothing half-written and says one clear line.

Every file dslc writes outside a checkpoint (run files, exported models,
predictions) goes through here: the bytes go to a temporary name in the same
folder, are flushed and fsynced, and only then renamed over the target, so a
full disk, a read-only folder or a kill leaves the old file (or none), never
half of a new one. A failure raises `UserError("cannot write PATH: reason")`
and removes the temporary file; cleaning up never raises (a read-only file
system refuses even to delete what is not there).

    write_text(path, text)                    # a whole file at once
    with replacing(path) as tmp:              # for writers that take a file name
        onnx.save(model, str(tmp))            #   (onnx.save, np.save, savefig, ...)

This module imports nothing of dslc but its errors, so any layer may use it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from dslc.errors import UserError


def fs_error(err: OSError, path, action: str = "write") -> UserError:
    """One line for a file-system failure: `cannot write PATH: No space left on device`."""
    return UserError(f"cannot {action} {path}: {err.strerror or err}")


def temporary_path(path: Path) -> Path:
    """A hidden name beside `path` owned by this process, keeping its suffix (writers pick formats by it)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")


def remove_quietly(path: Path) -> None:
    """Remove a file if it is there; never raises."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def replacing(path, what: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends without an error the file written there is
    fsynced and renamed over `path`, otherwise it is removed. OSError (here or in the block) becomes one
    UserError naming `what` (default: the path)."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        raise fs_error(err, what or path) from None
    finally:
        remove_quietly(tmp)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", what: str | None = None):
    """An open file whose content replaces `path` only once it is complete (see `replacing`)."""
    with replacing(path, what) as tmp:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()


def write_text(path, text: str, what: str | None = None) -> None:
    """Write a UTF-8 text file atomically; raises UserError when it cannot be written."""
    with atomic_open(path, "w", what) as f:
        f.write(text)


def write_bytes(path, data: bytes, what: str | None = None) -> None:
    with atomic_open(path, "wb", what) as f:
        f.write(data)


def make_folder(path, what: str = "create") -> Path:
    """mkdir -p, with one clear line when it cannot be made."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise fs_error(err, path, what) from None
    return path


def fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (a no-op where directories cannot be opened or synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    """True when a process `pid` runs on this host (one owned by another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
