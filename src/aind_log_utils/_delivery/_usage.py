"""Accounting for the room a spool directory's files take, every writer together.

The cap (``max_spool_bytes``) is on the whole directory: every process and engine
writing there counts, claimed files included. Scanning the directory on every
append would be slow, so :class:`SpoolUsage` keeps an estimate, adds what this
writer appends and takes off what it deletes, and rescans when the estimate may be
stale: after every rotation, and (at most once a second) when it says the cap is
reached.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

from ._claims import split_name

__all__ = ["SpoolUsage", "directory_usage"]


def directory_usage(directory: Path) -> int:
    """Return the bytes taken by the spool files (segments and claims) in ``directory``.

    Args:
        directory: the spool directory.

    Returns:
        The total size; 0 when the directory cannot be read. Other files are ignored.
    """
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if split_name(entry.name) is not None:
                    with contextlib.suppress(OSError):
                        total += entry.stat().st_size
    except OSError:
        return 0
    return total


class SpoolUsage:
    """An estimate of a spool directory's usage, for one writer's appends.

    Not thread-safe: the spool calls it under the engine's lock.

    Args:
        directory: the spool directory.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._used: int | None = None  # estimate; rescanned on rotation and at the cap
        self._scanned_at = -math.inf

    def fits(self, need: int, max_bytes: int) -> bool:
        """Tell whether ``need`` more bytes stay within ``max_bytes``, rescanning if due.

        Args:
            need: the bytes an append would add.
            max_bytes: the cap on the directory.

        Returns:
            True when the append fits.
        """
        used = self._used
        if used is not None and used + need <= max_bytes:
            return True  # the common case: no clock read, no rescan
        now = time.monotonic()
        if self._used is None or (self._used + need > max_bytes and now - self._scanned_at >= 1.0):
            self._used, self._scanned_at = directory_usage(self.directory), now
        return self._used + need <= max_bytes

    def estimate(self) -> int:
        """The directory's usage in bytes as last counted; scanned now if not known."""
        if self._used is None:
            self._used, self._scanned_at = directory_usage(self.directory), time.monotonic()
        return self._used

    def add(self, size: int) -> None:
        """Count ``size`` bytes this writer has just appended.

        Args:
            size: the bytes added.
        """
        if self._used is not None:
            self._used += size

    def remove(self, size: int) -> None:
        """Take off ``size`` bytes of a file this writer has just deleted.

        Args:
            size: the deleted file's size.
        """
        if self._used is not None:
            self._used = max(0, self._used - size)

    def forget(self) -> None:
        """Rescan before the next append: other processes write here too."""
        self._used = None
