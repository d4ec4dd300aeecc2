"""Best-effort fsync of a file or directory, shared by the spool and run directories."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_and_close", "fsync_files", "fsync_path"]


def fsync_path(path: Path, flags: int) -> None:
    """Open ``path`` with ``flags``, fsync it and close it; best effort, never raises.

    Args:
        path: a file (``os.O_RDWR``) or a directory (``os.O_RDONLY``; Windows
            cannot open one, and its renames are durable anyway).
        flags: the ``os.open`` flags.
    """
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    fsync_and_close(fd)


def fsync_and_close(fd: int) -> None:
    """Fsync ``fd`` (best effort: an error is ignored), then close it."""
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_files(paths: list[Path]) -> None:
    """Fsync files, best effort (one deleted or renamed meanwhile is skipped).

    Args:
        paths: the files (closed spool segments).
    """
    for path in paths:
        fsync_path(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
