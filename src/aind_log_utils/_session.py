"""The handle :func:`setup_logging` returns, and the session's lifecycle.

A session owns one :class:`DispatchHandler` on the root logger. It writes the
"Starting" line at setup and the run-level canonical "Stopping" line at the end
(interpreter exit, SIGTERM or :meth:`LoggingSession.close`), and flushes every
sink within ``flush_timeout_s``.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import _reentry
from ._diagnostics import diagnose
from ._dispatch import DispatchHandler

__all__ = ["LoggingSession"]

#: The logger the start and stop lines come from.
SESSION_LOGGER = "aind_log_utils.session"


class LoggingSession:
    """What :func:`setup_logging` installed: its sinks, paths and counters.

    Use it to flush or close explicitly, or as a context manager::

        with setup_logging("my-capsule") as session:
            ...
        # the "Stopping" line is written and every sink flushed here

    Attributes:
        program: the program's name (Loki's ``service_name``, SIPE's ``project``).
        fields: the standard and static fields added to every record.
        level: the root level the session set.
        log_file: the JSONL file it writes, or None.
        started_at: when the session started (Unix time).
    """

    def __init__(
        self,
        *,
        handler: DispatchHandler,
        program: str,
        fields: Mapping[str, Any],
        level: int,
        log_file: Path | None,
        send_start_log: bool,
        flush_timeout_s: float,
    ) -> None:
        self.handler = handler
        self.program = program
        self.fields = dict(fields)
        self.level = level
        self.log_file = log_file
        self.send_start_log = send_start_log
        self.flush_timeout_s = flush_timeout_s
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self._closed = False
        self._close_lock = threading.RLock()
        self._summary: dict[str, Any] = {}
        self._failure: BaseException | None = None
        self._failure_reason: str | None = None
        self._restore: list[Callable[[], None]] = []
        self._logger = logging.getLogger(SESSION_LOGGER)

    # -- public surface -------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once the session has been closed."""
        return self._closed

    @property
    def paths(self) -> dict[str, Path]:
        """The files the session writes, by sink name."""
        found: dict[str, Path] = {}
        for sink in self.handler.sinks:
            path = getattr(sink, "path", None)
            if isinstance(path, Path):
                found[sink.name] = path
        return found

    @property
    def counts(self) -> dict[str, int]:
        """Records handled so far, per level name."""
        return self.handler.counts_snapshot()

    @property
    def records_dropped(self) -> int:
        """Records some sink could not keep (write errors, spool cap reached)."""
        return int(self.handler.sink_counter("write_errors")) + int(
            self.handler.sink_counter("records_dropped")
        )

    @property
    def sinks(self) -> list[Any]:
        """The sinks, in order."""
        return list(self.handler.sinks)

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters: per level, dropped, and per sink."""
        per_sink: dict[str, Any] = {}
        for sink in self.handler.sinks:
            counters = getattr(sink, "counters", None)
            if callable(counters):
                try:
                    per_sink[sink.name] = counters()
                except Exception:
                    per_sink[sink.name] = {}
        return {
            "records": self.counts,
            "records_dropped": self.records_dropped,
            "render_errors": self.handler.render_errors,
            "sinks": per_sink,
        }

    def add(self, **fields: Any) -> None:
        """Add fields to the session's closing canonical line."""
        self._summary.update(fields)

    def mark_failed(self, reason: str | BaseException) -> None:
        """Record that the run failed; the stop line then says ``status: fail``."""
        if isinstance(reason, BaseException):
            self._failure = reason
            self._failure_reason = f"{type(reason).__name__}: {reason}"
        else:
            self._failure_reason = str(reason)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Flush every sink within ``timeout_s`` (default ``flush_timeout_s``).

        Returns:
            True when everything buffered went out.
        """
        return self.handler.flush(self.flush_timeout_s if timeout_s is None else timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        """Write the stop line (if enabled), flush and close every sink; idempotent.

        Args:
            timeout_s: the bound for flushing (default ``flush_timeout_s``).
        """
        self._stop(timeout_s=timeout_s, stop_line=True)

    def __enter__(self) -> LoggingSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, (KeyboardInterrupt, GeneratorExit)):
            self.mark_failed(exc)
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        sinks = ",".join(s.name for s in self.handler.sinks)
        return f"<LoggingSession {self.program!r} {state} sinks=[{sinks}]>"

    # -- lifecycle --------------------------------------------------------------
    def start(self, *, handle_sigterm: bool, hook_exceptions: bool = True) -> None:
        """Install the handler's exit hooks and write the start line."""
        atexit.register(self._atexit)
        self._restore.append(lambda: atexit.unregister(self._atexit))
        if hook_exceptions:
            self._hook_excepthook()
        if handle_sigterm:
            self._hook_sigterm()
        if self.send_start_log:
            self._logger.info("Starting", extra={"event_type": "stage_start"})

    def _stop_fields(self) -> tuple[int, dict[str, Any]]:
        failed = self._failure_reason is not None
        fields: dict[str, Any] = {
            "status": "fail" if failed else "success",
            "event_type": "stage_failure" if failed else "stage_complete",
            "duration_s": round(time.monotonic() - self._t0, 6),
            "records": self.counts,
        }
        if self.handler.first_error is not None:
            fields["first_error"] = self.handler.first_error
        if self._failure is not None:
            fields["error_type"] = type(self._failure).__name__
        if self._failure_reason is not None:
            fields["failure_reason"] = self._failure_reason
        fields.update(self._summary)
        return (logging.ERROR if failed else logging.INFO), fields

    def _stop(self, *, timeout_s: float | None, stop_line: bool) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            if stop_line and self.send_start_log:
                level, fields = self._stop_fields()
                self._logger.log(level, "Stopping", extra=fields)
        except Exception as exc:
            diagnose("session:stop", f"the stop line could not be written: {type(exc).__name__}")
        root = logging.getLogger()
        root.removeHandler(self.handler)
        for restore in reversed(self._restore):
            try:
                restore()
            except Exception:
                pass
        self._restore.clear()
        self.handler.close_sinks(self.flush_timeout_s if timeout_s is None else timeout_s)
        logging.Handler.close(self.handler)
        _forget(self)

    def _atexit(self) -> None:
        self._stop(timeout_s=None, stop_line=True)

    def _hook_excepthook(self) -> None:
        previous = sys.excepthook

        def excepthook(
            exc_type: type[BaseException], exc: BaseException, tb: types.TracebackType | None
        ) -> None:
            if not self._closed and not issubclass(exc_type, KeyboardInterrupt):
                self.mark_failed(exc)
                try:
                    self._logger.critical("Uncaught exception", exc_info=(exc_type, exc, tb))
                except Exception:
                    pass
            previous(exc_type, exc, tb)

        sys.excepthook = excepthook

        def restore() -> None:
            if sys.excepthook is excepthook:
                sys.excepthook = previous

        self._restore.append(restore)

    def _hook_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                return  # the program handles SIGTERM itself: leave it alone
        except (ValueError, AttributeError):
            return

        watchdog: threading.Timer | None = None
        deferred = False

        def on_sigterm(signum: int, frame: types.FrameType | None) -> None:
            nonlocal watchdog, deferred
            # The stop line and the flush run right here, on the main thread (every
            # lock on the path is re-entrant); a watchdog ends the process should
            # they ever exceed the bound, so SIGTERM can never hang the exit.
            if watchdog is None:
                watchdog = threading.Timer(
                    self.flush_timeout_s + 2.0, os._exit, args=(128 + signal.SIGTERM,)
                )
                watchdog.name = "sigterm-watchdog"
                watchdog.daemon = True
                watchdog.start()
            if _reentry.busy():
                # Interrupted inside a sender link's locked work: that work ends first,
                # then this runs (once, however many SIGTERMs came meanwhile).
                if not deferred:
                    deferred = True
                    _reentry.when_left(lambda: on_sigterm(signum, None))
                return
            self.mark_failed("terminated by SIGTERM")
            try:
                self._stop(timeout_s=None, stop_line=True)
            finally:  # the process ends by the signal, whatever the stop raised
                watchdog.cancel()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)

        def restore() -> None:
            if (
                threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) is on_sigterm
            ):
                signal.signal(signal.SIGTERM, signal.SIG_DFL)

        self._restore.append(restore)


_active_lock = threading.RLock()
_active: LoggingSession | None = None


def active_session() -> LoggingSession | None:
    """The session the last :func:`setup_logging` installed, if still open."""
    return _active


def _replace_active(session: LoggingSession) -> None:
    global _active
    with _active_lock:
        previous, _active = _active, session
    if previous is not None and previous is not session:
        # Replaced, not ended: close quietly (no stop line), flushing its sinks.
        previous._stop(timeout_s=None, stop_line=False)


def _forget(session: LoggingSession) -> None:
    global _active
    with _active_lock:
        if _active is session:
            _active = None
