"""The one root handler a session installs: render once, fan out to every sink."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ._diagnostics import diagnose
from ._render import Renderer
from ._sink import Sink, is_internal

__all__ = ["DispatchHandler"]


class DispatchHandler(logging.Handler):
    """Render each record once and hand the same event and line to every sink.

    Enrichment, redaction and serialisation happen here, once per record,
    whatever the number of sinks, so no sink can see an unredacted value and
    every sink carries the same fields. ``emit`` never raises.

    Args:
        renderer: the configured renderer.
        sinks: the sinks, in order.
        level: the handler's threshold.
    """

    def __init__(
        self, renderer: Renderer, sinks: Sequence[Sink], level: int = logging.NOTSET
    ) -> None:
        super().__init__(level)
        self.renderer = renderer
        self.sinks: tuple[Sink, ...] = tuple(sinks)
        #: Each sink's ``handle_event`` and threshold, looked up once.
        self._targets = tuple(
            (sink.handle_event, int(getattr(sink, "level", 0) or 0)) for sink in self.sinks
        )
        self.counts: dict[str, int] = {}
        self.first_error: str | None = None
        self.render_errors = 0
        self.set_name("aind_log_utils")

    def emit(self, record: logging.LogRecord) -> None:
        """Render ``record`` once and pass it to each sink; never raises."""
        try:
            if is_internal(record):
                return  # requests/urllib3 chatter from our own delivery workers: never loop
            event, line = self.renderer.render(record)
            # Handler.handle holds self.lock (an RLock) around emit: counts stay exact.
            level = record.levelname
            counts = self.counts
            counts[level] = counts.get(level, 0) + 1
            levelno = record.levelno
            if levelno >= logging.ERROR and self.first_error is None:
                self.first_error = str(event.get("message", ""))
            for handle_event, threshold in self._targets:
                if levelno >= threshold:
                    handle_event(event, line, record)
        except Exception as exc:
            self.render_errors += 1
            diagnose("dispatch", f"a record could not be handled: {type(exc).__name__}")

    def counts_snapshot(self) -> dict[str, int]:
        """Records seen so far, per level name."""
        with self.lock:  # type: ignore[union-attr]
            return dict(self.counts)

    def flush(self, timeout_s: float | None = None) -> bool:  # type: ignore[override]
        """Flush every sink; True when all of them flushed completely."""
        ok = True
        for sink in self.sinks:
            try:
                ok = bool(sink.flush(timeout_s)) and ok
            except Exception as exc:
                ok = False
                diagnose(f"flush:{sink.name}", f"flushing {sink.name} failed: {type(exc).__name__}")
        return ok

    def close_sinks(self, timeout_s: float | None = None) -> None:
        """Close every sink (each bounded by ``timeout_s``); idempotent."""
        for sink in self.sinks:
            try:
                sink.close(timeout_s)
            except Exception as exc:
                diagnose(f"close:{sink.name}", f"closing {sink.name} failed: {type(exc).__name__}")

    def close(self) -> None:
        """Close the handler and its sinks (``logging.shutdown`` calls this)."""
        self.close_sinks()
        super().close()

    def sink_counter(self, name: str) -> Any:
        """Sum a counter attribute over the sinks that have it."""
        return sum(int(getattr(s, name, 0) or 0) for s in self.sinks)
