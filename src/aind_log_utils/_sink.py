"""The interface every sink implements.

A record is enriched, redacted and rendered ONCE by the session's dispatcher; each
sink then receives the same redacted event dict and the same rendered JSON line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["Sink"]


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
