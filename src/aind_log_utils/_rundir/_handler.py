"""The run's log handler: every record, into ``log.jsonl`` and notata's ``log.txt``.

One :class:`RunLogHandler` sits on the root logger while a run is open. It
renders each record with the active session's renderer (the same standard
fields and redaction as every other sink; a plain :class:`Renderer` when no
session is set up), appends the JSON line to ``log.jsonl`` and notata's text
line ``[YYYY-MM-DDTHH:MM:SS] LEVEL message`` to ``log.txt``: each in ONE
``os.write`` on a file opened in append mode, so processes sharing a run never
interleave inside a line. Records are never mutated; ``emit`` never raises.

Loggers that do not propagate (``propagate=False``) are reached through
:meth:`RunLogHandler.subscribe`, which puts a small forwarding handler on them; a
record seen by both paths is written once.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._file import JsonlFileSink
from .._redact import redact_text
from .._render import Renderer
from .._session import active_session

__all__ = ["RunLogHandler", "root_level_guard", "text_line"]

_ts_cache: tuple[int, str] = (-1, "")


def _local_second(created: float) -> str:
    global _ts_cache
    secs = int(created)
    cached = _ts_cache
    if cached[0] != secs:
        cached = (secs, time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(secs)))
        _ts_cache = cached
    return cached[1]


def text_line(created: float, level: str, message: str, stack_trace: str | None = None) -> bytes:
    r"""Format one line of notata's ``log.txt``.

    Args:
        created: the record's time (Unix seconds); written in local time, to
            the second, as notata does.
        level: the level name.
        message: the (already redacted) message.
        stack_trace: a (redacted) traceback, written on the following lines.

    Returns:
        ``[YYYY-MM-DDTHH:MM:SS] LEVEL message\n`` encoded in UTF-8.
    """
    text = f"[{_local_second(created)}] {level} {message}\n"
    if stack_trace:
        text += stack_trace.rstrip("\n") + "\n"
    return text.encode("utf-8", "replace")


class _Forwarder(logging.Handler):
    """Put on a subscribed logger: hands its records to the run's handler."""

    def __init__(self, target: RunLogHandler, level: int) -> None:
        super().__init__(level)
        self._target = target

    def emit(self, record: logging.LogRecord) -> None:
        self._target.write(record)


class RunLogHandler(logging.Handler):
    """Write every record to a run's ``log.jsonl`` and ``log.txt``.

    Args:
        jsonl_path: the run's ``log.jsonl``.
        txt_path: the run's ``log.txt``.
        level: the threshold for records reaching it through the root logger.

    Raises:
        ValueError: a file cannot be opened for appending.
    """

    def __init__(self, jsonl_path: Path, txt_path: Path, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.jsonl = JsonlFileSink(jsonl_path)
        try:
            self.txt = JsonlFileSink(txt_path)
        except BaseException:
            self.jsonl.close()
            raise
        self._default_renderer = Renderer()
        self._local = threading.local()
        self._count_lock = threading.RLock()  # re-entrant: a signal handler may log
        self.counts: dict[str, int] = {}
        self.first_error: str | None = None
        self._subscriptions: dict[str, tuple[_Forwarder, int]] = {}
        self.set_name("aind_log_utils.rundir")

    def _renderer(self) -> Renderer:
        session = active_session()
        if session is not None and not session.closed:
            renderer = getattr(session.handler, "renderer", None)
            if isinstance(renderer, Renderer):
                return renderer
        return self._default_renderer

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` to both files; never raises."""
        self.write(record)

    def write(self, record: logging.LogRecord) -> None:
        """Render ``record`` once and append it to both files, unless already written.

        Args:
            record: the record (read, never modified).
        """
        try:
            local = self._local
            last = getattr(local, "last", None)
            if last is not None and last() is record:
                return  # reached through a subscribed logger and then the root
            # A weak reference: holding the record would keep its traceback alive.
            local.last = weakref.ref(record)
            event, line = self._renderer().render(record)
            self.jsonl.write_line(line)
            self.txt.write_line(
                text_line(
                    record.created,
                    record.levelname,
                    _message(event, record),
                    event.get("stack_trace"),
                )
            )
            level = record.levelname
            with self._count_lock:
                self.counts[level] = self.counts.get(level, 0) + 1
                if self.first_error is None and record.levelno >= logging.ERROR:
                    self.first_error = _message(event, record)
        except Exception:
            self.handleError(record)

    def counts_snapshot(self) -> dict[str, int]:
        """Records written so far, per level name."""
        with self._count_lock:
            return dict(self.counts)

    # -- subscriptions ---------------------------------------------------------
    def subscribe(self, name: str, level: int) -> None:
        """Capture the records of logger ``name`` at ``level`` and above.

        Works when the logger does not propagate. The logger's own level is
        lowered to ``level`` when it is stricter, and restored by
        :meth:`unsubscribe`.

        Args:
            name: the logger's name.
            level: the lowest level captured.
        """
        self.unsubscribe(name)
        logger = logging.getLogger(name)
        forwarder = _Forwarder(self, level)
        previous_level = logger.level
        if logger.getEffectiveLevel() > level:
            logger.setLevel(level)
        logger.addHandler(forwarder)
        self._subscriptions[name] = (forwarder, previous_level)

    def unsubscribe(self, name: str) -> None:
        """Stop capturing logger ``name`` (unknown names are ignored).

        Args:
            name: the logger's name.
        """
        entry = self._subscriptions.pop(name, None)
        if entry is None:
            return
        forwarder, previous_level = entry
        logger = logging.getLogger(name)
        logger.removeHandler(forwarder)
        logger.setLevel(previous_level)

    @property
    def subscriptions(self) -> list[str]:
        """The names of the subscribed loggers."""
        return sorted(self._subscriptions)

    def flush(self) -> None:
        """Make both files durable (fsync)."""
        self.jsonl.flush()
        self.txt.flush()

    def close(self) -> None:
        """Remove the subscriptions, sync and close both files; idempotent."""
        for name in list(self._subscriptions):
            self.unsubscribe(name)
        self.jsonl.close()
        self.txt.close()
        super().close()


def _message(event: Mapping[str, Any], record: logging.LogRecord) -> str:
    message = event.get("message")
    if isinstance(message, str):
        return message
    try:  # the session renames "message": render it here, redacted
        return redact_text(str(record.getMessage()))
    except Exception:
        return redact_text(str(record.msg))


class _RootLevelGuard:
    """Lower a stricter root level to INFO while at least one run is open.

    Handlers already on the root keep seeing what they saw before: each one
    below the old root level is raised to it while the root is lowered, so a
    console that showed WARNING and above does not start showing INFO.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = 0
        self._saved: tuple[int, list[tuple[logging.Handler, int]]] | None = None
        self._session: object = None

    def acquire(self, exclude: logging.Handler) -> None:
        with self._lock:
            self._open += 1
            if self._open > 1:
                return
            root = logging.getLogger()
            previous = root.level
            if previous <= logging.INFO:
                return
            raised: list[tuple[logging.Handler, int]] = []
            for handler in list(root.handlers):
                if handler is not exclude and handler.level < previous:
                    raised.append((handler, handler.level))
                    handler.setLevel(previous)
            root.setLevel(logging.INFO)
            self._saved = (previous, raised)
            self._session = active_session()

    def release(self) -> None:
        with self._lock:
            self._open = max(0, self._open - 1)
            if self._open or self._saved is None:
                return
            previous, raised = self._saved
            self._saved = None
            root = logging.getLogger()
            # Someone set the level since (another value, or a new setup_logging
            # session that chose INFO itself): theirs wins.
            if root.level == logging.INFO and active_session() is self._session:
                root.setLevel(previous)
            for handler, level in raised:
                if handler.level == previous:
                    handler.setLevel(level)


root_level_guard = _RootLevelGuard()
