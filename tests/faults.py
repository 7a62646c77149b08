"""File-system faults for tests, injected so that they work as root too (CI runs as root, and root ignores
a folder's read-only permission bits).

    with read_only(folder): ...          # every change under folder fails with EROFS
    with full_disk(folder): ...          # every write under folder fails with ENOSPC
    with full_disk(folder, when=lambda path: path.endswith(".onnx")): ...

While one is active, a Python audit hook (PEP 578) makes each operation that would change something under
`folder` raise the OSError the kernel raises there: opening a file for writing, creating a folder,
renaming, removing, truncating, changing modes. Reads are left alone. The hook sees every file operation
made through Python (`open`, `os.open`, `os.mkdir`, `os.replace`, `os.remove`, `shutil.rmtree`, ...): all
of dslc's writes and those of the libraries it hands a path or an open file (onnx.save, numpy.save,
torch.save on a file object). A write made by C code on its own (torch.save given a path string) would
not be seen.

An audit hook cannot be removed, so one hook is installed on first use and consults the faults active now.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys

_ACTIVE: list[tuple[str, int, object]] = []      # (folder, errno, when)
_INSTALLED = False

# audit event -> the positions of its path arguments
_CHANGES = {"os.mkdir": (0,), "os.rename": (0, 1), "os.remove": (0,), "os.rmdir": (0,), "os.truncate": (0,),
            "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,), "os.symlink": (1,), "os.link": (1,),
            "shutil.rmtree": (0,), "shutil.move": (1,), "shutil.copyfile": (1,)}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _inside(path, folder: str) -> bool:
    if not isinstance(path, (str, bytes, os.PathLike)):
        return False                             # a file descriptor
    path = os.path.abspath(os.fsdecode(path))
    return path == folder or path.startswith(folder + os.sep)


def _hook(event: str, args) -> None:
    if not _ACTIVE:
        return
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None, 0))[:3]
        writes = bool(mode and any(c in str(mode) for c in "wax+")) or bool((flags or 0) & _WRITE_FLAGS)
        paths = [path] if writes else []
    elif event in _CHANGES:
        paths = [args[i] for i in _CHANGES[event] if i < len(args)]
    else:
        return
    for path in paths:
        for folder, code, when in _ACTIVE:
            if _inside(path, folder) and (when is None or when(os.fsdecode(path))):
                raise OSError(code, os.strerror(code), os.fsdecode(path))


@contextlib.contextmanager
def _fault(folder, code: int, when=None):
    global _INSTALLED
    if not _INSTALLED:
        sys.addaudithook(_hook)
        _INSTALLED = True
    entry = (os.path.abspath(os.fspath(folder)), code, when)
    _ACTIVE.append(entry)
    try:
        yield
    finally:
        _ACTIVE.remove(entry)


def read_only(folder):
    """`folder` (and everything in it) behaves as on a read-only file system: EROFS on any change."""
    return _fault(folder, errno.EROFS)


def full_disk(folder, when=None):
    """Writing under `folder` fails with ENOSPC (only for paths where `when(path)` holds, if given)."""
    return _fault(folder, errno.ENOSPC, when)
