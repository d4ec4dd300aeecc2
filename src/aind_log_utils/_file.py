"""The JSONL file sink: the durable record of a run."""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._diagnostics import diagnose

__all__ = ["JsonlFileSink"]

_FLAGS = (
    os.O_WRONLY
    | os.O_APPEND
    | os.O_CREAT
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


class JsonlFileSink:
    """Append each record as one JSON line to a file.

    Each line goes out in ONE ``os.write`` on a file opened in append mode, so
    several processes can share the file and a kill never tears a line in two.
    When the file's last byte is not a newline (a previous writer died
    mid-line), the first write starts with one, so the torn line stays alone.
    Parent directories are created. A failed write (a full disk) is counted in
    :attr:`write_errors` and reported on stderr, never raised.

    Args:
        path: the file.
        mode: the permission bits for a new file.

    Raises:
        ValueError: the file cannot be created or opened for writing (the
            message names ``log_file``).
    """

    name = "file"

    def __init__(self, path: str | os.PathLike[str], *, mode: int = 0o644) -> None:
        self.path = Path(path)
        try:
            if str(self.path) != os.devnull:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(self.path, _FLAGS, mode)
        except OSError as exc:
            raise ValueError(
                f"log_file: cannot open {str(self.path)!r} for appending: {exc.strerror or exc}"
            ) from None
        self._needs_newline = self._last_byte_is_not_newline()
        self._lock = threading.RLock()  # re-entrant: a signal handler may log
        self.lines_written = 0
        self.write_errors = 0

    def _last_byte_is_not_newline(self) -> bool:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell() == 0:
                    return False
                handle.seek(-1, os.SEEK_END)
                return handle.read(1) != b"\n"
        except OSError:
            return False

    def handle_event(
        self, event: Mapping[str, Any], line: bytes, record: logging.LogRecord
    ) -> None:
        """Append ``line``; never raises."""
        self.write_line(line)

    def write_line(self, line: bytes) -> bool:
        """Append one already rendered line (ending in a newline); never raises.

        Returns:
            True when the whole line was written.
        """
        fd = self._fd
        if fd is None:
            return False
        if self._needs_newline:
            with self._lock:
                if self._needs_newline:
                    line = b"\n" + line
                    self._needs_newline = False
        try:
            written = os.write(fd, line)
            while written < len(line):  # only for huge lines on some filesystems
                written += os.write(fd, line[written:])
        except OSError as exc:
            self.write_errors += 1
            reason = (
                "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or type(exc).__name__)
            )
            diagnose(f"file:{self.path}:{exc.errno}", f"cannot write to {self.path}: {reason}")
            return False
        self.lines_written += 1
        return True

    def flush(self, timeout_s: float | None = None) -> bool:
        """Make the lines durable (fsync); True on success."""
        fd = self._fd
        if fd is None:
            return True
        try:
            os.fsync(fd)
        except OSError:
            return False  # devnull, pipes and some filesystems cannot fsync
        return True

    def close(self, timeout_s: float | None = None) -> None:
        """Sync and close the file; idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        try:
            os.close(fd)
        except OSError:
            pass
