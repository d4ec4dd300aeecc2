"""The interface every sink implements.

A record is enriched, redacted and rendered ONCE by the session's dispatcher; each
sink then receives the same redacted event dict and the same rendered JSON line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["Sink", "SinkHandler"]


@runtime_checkable
class Sink(Protocol):
    r"""Something that receives rendered, redacted records.

    ``event`` is the redacted field dict (``timestamp``, ``level``, ``message``, the
    standard fields, extras); ``line`` is the same record rendered as one strict
    JSON object encoded in UTF-8, ending in ``b"\\n"``. ``record`` is the original
    :class:`logging.LogRecord`, which a sink must never mutate (and must never read
    un-redacted values from). ``handle_event`` must never raise and never do
    network I/O on the caller's thread.
    """

    name: str

    def handle_event(
        self, event: Mapping[str, Any], line: bytes, record: logging.LogRecord
    ) -> None:
        """Take one record; never raises, never blocks on the network."""

    def flush(self, timeout_s: float | None = None) -> bool:
        """Push out what is buffered within ``timeout_s``; True when all of it went."""

    def close(self, timeout_s: float | None = None) -> None:
        """Flush within ``timeout_s`` and release resources; idempotent."""


class SinkHandler(logging.Handler):
    """A stdlib handler around one sink, for use without ``setup_logging``.

    Records are rendered exactly as ``setup_logging`` renders them (standard
    fields, context, redaction) and handed to the sink. Subclasses build the
    sink and call ``super().__init__(sink, static_fields, level)``.

    Args:
        sink: the sink records go to.
        static_fields: fields added to every record.
        level: the handler's level.
    """

    def __init__(self, sink: Sink, static_fields: Mapping[str, Any] | None, level: int) -> None:
        from ._render import Renderer

        super().__init__(level)
        self.sink = sink
        self._renderer = Renderer(static_fields)

    def emit(self, record: logging.LogRecord) -> None:
        """Render and queue the record; never raises, never blocks."""
        try:
            event, line = self._renderer.render(record)
            self.sink.handle_event(event, line, record)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Send what is queued (bounded by the sink's flush timeout)."""
        self.sink.flush()

    def close(self) -> None:
        """Flush, spool what is left, and stop; idempotent."""
        self.sink.close()
        super().close()
