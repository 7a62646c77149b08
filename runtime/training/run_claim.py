"""Claiming a run directory: one training process at a time, and `--force` that removes only dslc's files.

`lock_run(RUN)` takes an exclusive flock on RUN/.dslc-run for the rest of the
command (`release_runs` lets go; so does the end of the process, however it
ends), so two `dslc train --resume RUN` cannot both write one run, and
`--force` cannot wipe a run another process is training. The lock file also
marks the folder as one dslc made.

`clear_run(RUN)` (what `--out RUN --force` does) removes the files dslc writes
in a run directory, recognised by name (`dslc_files`), and the folders it made
once they are empty; anything else in the folder stays. A folder that is not
a dslc run is refused even when it holds files with a run's names (a user's own
spec.dlspec or checkpoints/).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:                 # Windows: runs are not locked
    fcntl = None

from dslc.errors import UserError
from dslc.files import fs_error

LOCK_FILE = ".dslc-run"         # marks a folder as a run dslc made, and is what `lock_run` locks
# What `dslc train` writes at the top of a run directory (besides the folders of RUN_DIR_ENTRIES)
RUN_TOP_FILES = ("run.json", "spec.dlspec", "spec.yaml", "resolved.yaml", "metrics.jsonl", "summary.json",
                 "report.html", "model.onnx", "samples.npz", "plot_inputs.npz")


@dataclass
class _Held:
    fd: int
    created: bool                   # this process made the folder (a new run)


_HELD: dict[Path, _Held] = {}


def lock_run(path: Path, created: bool = False) -> None:
    """Hold an exclusive lock (flock) on RUN/.dslc-run until `release_runs`, so that one process at a time
    trains a run: a second `--resume` or `--force` of it is refused with the first one's pid. The
    operating system drops the lock when the process ends, however it ends (SIGKILL included).
    Without fcntl (Windows) runs are not locked."""
    key = path.resolve()
    if key in _HELD:
        return
    marker = path / LOCK_FILE
    try:
        try:
            fd = os.open(marker, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) or not marker.is_file():
                raise
            fd = os.open(marker, os.O_RDONLY)           # a read-only run can still be locked (and read)
    except OSError as err:
        raise fs_error(err, path, "use run directory") from None
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                holder = _pid_in(marker)
                raise UserError(f"{path} is being trained by another dslc process"
                                + (f" (pid {holder})" if holder else "")
                                + "; wait for it to end, or stop it, before training this run again") from None
            # a file system without locks (some network mounts): train unlocked rather than not at all
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[key] = _Held(fd, created)


def made_here(path: Path) -> bool:
    """True when this process created `path` as a new run and holds it: a failure before its first
    checkpoint removes it again (`release_runs`), so nothing about it needs recording."""
    held = _HELD.get(Path(path).resolve())
    return held is not None and held.created


def _pid_in(marker: Path) -> int | None:
    try:
        text = marker.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def release_runs(discard_unstarted: bool = False) -> None:
    """Unlock every run this process locked. With `discard_unstarted` (the command failed), a run this
    process created that has neither a checkpoint nor a summary is removed again (dslc's files only, then
    the folder if it is empty): a failure before training got anywhere leaves no run directory behind."""
    for key, held in list(_HELD.items()):
        try:
            if discard_unstarted and held.created and not any(key.glob("**/checkpoints/last.pt")) \
                    and not any(key.glob("**/summary.json")):
                with contextlib.suppress(UserError, OSError):
                    _remove_dslc_files(key)
                    (key / LOCK_FILE).unlink()
                    key.rmdir()
        finally:
            os.close(held.fd)
            del _HELD[key]


@contextlib.contextmanager
def runs_held():
    """The runs locked inside the block are let go at its end; a new one is removed again when the block
    fails before it trained (the Python API's train and resume; `dslc train` does the same by hand)."""
    ok = False
    try:
        yield
        ok = True
    finally:
        release_runs(discard_unstarted=not ok)


def is_dslc_run(path: Path) -> bool:
    """A folder dslc made a run in: it holds the lock file, or a resolved.yaml that dslc wrote."""
    if (path / LOCK_FILE).is_file():
        return True
    for resolved in [path / "resolved.yaml", *path.glob("variants/*/resolved.yaml")]:
        try:
            with open(resolved, encoding="utf-8") as f:
                if f.readline().startswith("# resolved from "):
                    return True
        except (OSError, UnicodeDecodeError):
            continue
    return False


def clear_run(path: Path) -> None:
    """--force: remove the files a dslc run wrote in `path` (and its folders once empty), nothing else.
    The caller has made sure `path` is a dslc run (`is_dslc_run`) and holds its lock."""
    _remove_dslc_files(path)


def _remove_dslc_files(path: Path) -> None:
    files_, folders = dslc_files(path)
    try:
        for f in files_:
            f.unlink(missing_ok=True)
    except OSError as err:
        raise fs_error(err, f, "remove") from None
    for folder in folders:                              # deepest first; one with other files in it stays
        with contextlib.suppress(OSError):
            folder.rmdir()


def dslc_files(run: Path) -> tuple[list[Path], list[Path]]:
    """(the files dslc writes in a run directory, the folders it makes there, deepest first).

    By name: the run files, checkpoints/{last,best}.pt, plots/*.png and index.json, the exported model
    (model.onnx, or the one summary.json names), each variant's run under variants/, and the temporary
    files of any of them. Links are never followed or removed."""
    found: list[Path] = []
    folders: list[Path] = []

    def plain(p: Path) -> bool:
        return p.is_file() and not p.is_symlink()

    def temporary_of(name: str, names) -> bool:
        return name.startswith(".") and ".tmp" in name and any(name.startswith(f".{n}.") for n in names)

    def visit(folder: Path, keep) -> None:
        if not folder.is_dir() or folder.is_symlink():
            return
        found.extend(p for p in folder.iterdir() if plain(p) and keep(p.name))
        folders.append(folder)

    def visit_run(root: Path) -> None:
        exported = _exported_file(root)
        found.extend(p for p in root.iterdir() if plain(p) and (p.name in RUN_TOP_FILES or p == exported
                                                                or temporary_of(p.name, RUN_TOP_FILES)))
        if exported is not None and exported.parent != root:
            folders.extend(q for q in exported.parents if q.is_relative_to(root) and q != root)
        visit(root / "checkpoints", lambda n: n in ("last.pt", "best.pt") or temporary_of(n, ("last.pt", "best.pt")))
        visit(root / "plots", lambda n: n.endswith(".png") or n == "index.json")
        variants = root / "variants"
        if variants.is_dir() and not variants.is_symlink():
            for v in sorted(variants.iterdir()):
                if v.is_dir() and not v.is_symlink():
                    visit_run(v)
                    folders.append(v)
            folders.append(variants)

    visit_run(run)
    return found, folders


def _exported_file(root: Path) -> Path | None:
    """The model file the run's summary says it exported, when it lies inside the run."""
    try:
        onnx = json.loads((root / "summary.json").read_text(encoding="utf-8")).get("onnx")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(onnx, str):
        return None
    path = Path(onnx)
    for candidate in (path, root / path):
        if candidate.is_file() and not candidate.is_symlink() and candidate.resolve().is_relative_to(root.resolve()):
            return root / candidate.resolve().relative_to(root.resolve())
    return None
