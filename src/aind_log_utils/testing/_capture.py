"""Capture rendered records in tests."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from .._args import parse_level
from .._render import Renderer

__all__ = ["CapturedRecords", "capture_logs", "read_jsonl"]


class CapturedRecords(list[dict[str, Any]]):
    """The parsed JSON records a :func:`capture_logs` block saw, in order.

    Attributes:
        lines: the raw JSON lines (bytes), in the same order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[bytes] = []

    def messages(self) -> list[str]:
        """The ``message`` of every record."""
        return [str(r.get("message", "")) for r in self]

    def at_level(self, level: str) -> list[dict[str, Any]]:
        """The records of one level name (e.g. ``"ERROR"``)."""
        return [r for r in self if r.get("level") == level.upper()]


class _CaptureHandler(logging.Handler):
    def __init__(self, renderer: Renderer, records: CapturedRecords, level: int) -> None:
        super().__init__(level)
        self._renderer = renderer
        self._records = records
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _, line = self._renderer.render(record)
            parsed = orjson.loads(line)
            with self._lock2:
                self._records.lines.append(line)
                self._records.append(parsed)
        except Exception:
            self.handleError(record)


@contextmanager
def capture_logs(
    logger: str | logging.Logger | None = None, level: int | str = logging.DEBUG
) -> Iterator[CapturedRecords]:
    """Collect the records logged inside the block, as the sinks would render them.

    The active session's static fields are included when a session is set up.
    The logger's level is lowered to ``level`` for the block and restored after.

    Args:
        logger: the logger to listen on (default: the root logger, i.e. all).
        level: the lowest level to capture.

    Yields:
        A list that fills with the parsed records.
    """
    from .._session import active_session

    target = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)
    session = active_session()
    renderer = session.handler.renderer if session is not None else Renderer()
    records = CapturedRecords()
    levelno = parse_level(level)
    handler = _CaptureHandler(renderer, records, levelno)
    previous_level = target.level
    target.addHandler(handler)
    if target.level == logging.NOTSET or target.level > levelno:
        target.setLevel(levelno)
    try:
        yield records
    finally:
        target.removeHandler(handler)
        target.setLevel(previous_level)


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Parse every line of a JSONL log file (strict JSON; blank lines skipped).

    Args:
        path: the file.

    Returns:
        One dict per line, in order.

    Raises:
        orjson.JSONDecodeError: a line is not valid JSON.
    """
    with open(path, "rb") as handle:
        return [orjson.loads(line) for line in handle.read().splitlines() if line.strip()]
