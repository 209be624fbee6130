"""Atomic file writes: a crash or a kill mid-write never leaves a broken file behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call `write(tmp_path)` on a temporary file beside `path`, fsync it, then rename it onto `path`.

    The rename is atomic on POSIX, so readers see the old file or the new one, never a partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def atomic_copy(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Make `path` a copy of `source` atomically: a hard link where the filesystem allows (no bytes
    copied; our files are only ever replaced by rename, never rewritten in place, so the two names stay
    independent), else a byte copy."""

    def write(tmp: str) -> None:
        os.unlink(tmp)  # mkstemp's empty file: the link needs the name free
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)

    return atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically (UTF-8)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
