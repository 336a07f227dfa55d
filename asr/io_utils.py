"""Atomic file writes: a reader never sees half a checkpoint, report or manifest.

Every file the toolkit produces goes through :func:`atomic_write`: the bytes land in a
temporary file in the same folder, are flushed and fsync'ed, then renamed over the target.
A crash at any moment leaves either the old file or the new one, never a torn mix.

The result gets the permissions a plain ``open(path, "w")`` would give it: a new file
``0o666`` less the umask, a replaced file the permission bits it had (not the owner-only
``0o600`` of :func:`tempfile.mkstemp`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = _create_temporary(path)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            _keep_mode(fd, tmp_name, path)  # before a byte is written
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


# What open(path, "w+") passes, plus O_EXCL: a fresh name is never someone else's file.
_TEMP_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new empty ``.<name>.<random>.tmp`` beside ``path``: (descriptor, file name).

    Created with mode ``0o666`` like any file ``open()`` makes, so the kernel applies the
    umask (and a default ACL, if the folder has one) itself: nothing reads or changes the
    process-wide umask, which other threads may be relying on at the same moment.
    """
    for _ in range(100):
        name = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(name, _TEMP_FLAGS, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name for {path}")


def _keep_mode(fd: int, tmp_name: str, path: Path) -> None:
    """Give the temporary the permission bits of the file it will replace, if there is one.

    Only the rwx bits: set-user-ID and friends are dropped, as the kernel drops them when a
    file is modified. Ownership stays the writer's (only root could change it).
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode) & 0o777
    except OSError:  # no old file (or none we may look at): the new file's mode stands
        return
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:  # Windows before Python 3.13
        os.chmod(tmp_name, mode)


def _fsync_dir(folder: Path) -> None:
    # The rename is only durable once the directory entry is on disk too.
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporaries that a killed :func:`atomic_write` left in ``folder``.

    Only call this where no other process is writing (e.g. when a training run starts).
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_write(path, "w") as handle:
        handle.write(text)
