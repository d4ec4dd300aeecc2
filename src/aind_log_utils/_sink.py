"""The interface every sink implements.

A record is enriched, redacted and rendered ONCE by the session's dispatcher; each
sink then receives the same redacted event dict and the same rendered JSON line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pathlib import Path

    from ._delivery import DeliveryEngine
    from ._delivery._link import ProcessLink

__all__ = [
    "DELIVERY_MODES",
    "INTERNAL_THREAD_PREFIX",
    "EngineSink",
    "Sink",
    "SinkHandler",
    "is_internal",
]

#: Where a network sink does its work: ``"process"`` (a sender process of its own,
#: see :mod:`aind_log_utils._delivery._link`), ``"thread"`` (a worker thread in
#: this process), or ``"auto"`` (process where supported, else thread).
DELIVERY_MODES = ("auto", "process", "thread")

#: The delivery engines' worker threads are named ``aind-log-<sink>``.
INTERNAL_THREAD_PREFIX = "aind-log-"


def is_internal(record: logging.LogRecord) -> bool:
    """True for a record made on one of the library's own worker threads.

    Such records (requests/urllib3/botocore chatter of a delivery worker) must
    never reach a sink: sending them would make more of them, forever.
    """
    name = record.threadName
    return name is not None and name.startswith(INTERNAL_THREAD_PREFIX)


@runtime_checkable
class Sink(Protocol):
    r"""Something that receives rendered, redacted records.

    ``event`` is the redacted field dict (``timestamp``, ``level``, ``message``, the
    standard fields, extras); ``line`` is the same record rendered as one strict
    JSON object encoded in UTF-8, ending in ``b"\\n"``. ``record`` is the original
    :class:`logging.LogRecord`, which a sink must never mutate (and must never read
    un-redacted values from). ``handle_event`` must never raise and never do
    network I/O on the caller's thread. The library's handlers never pass a sink a
    record of the library's own worker threads (:func:`is_internal`), so a network
    sink need not check for one on every record.
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
        """Render and queue the record; never raises, never blocks.

        Records of the library's own worker threads are dropped here, before the
        sink (see :func:`is_internal`), as :class:`DispatchHandler` drops them.
        """
        try:
            if is_internal(record):
                return  # requests/urllib3/botocore chatter of our own workers: never loop
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


class EngineSink:
    """What every network sink on the delivery engine shares: counters, flush, close.

    A subclass builds its transport and calls :meth:`_start_delivery`, which sets
    ``engine``: a :class:`~aind_log_utils._delivery.DeliveryEngine` (thread mode)
    or a :class:`~aind_log_utils._delivery._link.ProcessLink` (process mode, where
    the same sink runs in a sender process and this one only packs records).
    """

    name: str
    engine: DeliveryEngine | ProcessLink
    _transport: Any
    #: The sender process's link (process mode), else None.
    _link: ProcessLink | None = None

    def _start_delivery(
        self,
        transport: Any,
        spec: tuple[str, str, tuple[Any, ...], dict[str, Any]],
        delivery: str,
        spool_dir: Path,
        engine_options: dict[str, Any],
    ) -> None:
        """Start delivery in the mode asked for (see :data:`DELIVERY_MODES`).

        Raises:
            ValueError: ``delivery`` is not a mode, or an engine option is out of range.
            TypeError: an engine option has the wrong type.
        """
        from ._delivery import DeliveryEngine
        from ._delivery._engine import OPTION_DEFAULTS
        from ._delivery._link import ProcessLink
        from ._delivery._sender import process_delivery_supported

        if delivery not in DELIVERY_MODES:
            raise ValueError(f"delivery: expected one of {DELIVERY_MODES}, got {delivery!r}")
        if delivery == "auto":
            delivery = "process" if process_delivery_supported() else "thread"
        #: The mode in use: "process" or "thread".
        self.delivery = delivery
        if delivery == "thread":
            self.engine = DeliveryEngine(
                self.name, transport, spool_dir=spool_dir, **engine_options
            )
            return
        DeliveryEngine.check_options(transport, **engine_options)
        options = {**OPTION_DEFAULTS, **engine_options}
        self._link = self.engine = ProcessLink(
            self.name,
            spec,
            spool_dir=spool_dir,
            flush_timeout_s=float(options["flush_timeout_s"]),
            max_buffer_bytes=int(options["max_queue_bytes"]),
        )

    def _thread_engine(self) -> DeliveryEngine:
        """This sink's own engine (thread delivery).

        Only a thread-mode sink (in a sender process, or a program's fallback)
        hosts records and counts them itself; a process-mode sink hands records
        to its sender, and asks it for the counts.

        Raises:
            RuntimeError: this sink delivers through a sender process.
        """
        from ._delivery import DeliveryEngine

        engine = self.engine
        if not isinstance(engine, DeliveryEngine):
            raise RuntimeError(f"{self.name}: delivers through a sender process")
        return engine

    def counters(self) -> dict[str, Any]:
        """The delivery counters: sent, retried, spooled, replayed, rejected, dropped, ..."""
        if self._link is not None:
            return self._link.counters()
        stats = self._thread_engine().stats()
        return {
            "sent": stats.sent,
            "retried": stats.retried,
            "spooled": stats.spooled,
            "replayed": stats.replayed,
            "rejected": dict(stats.rejected),
            "dropped": dict(stats.dropped),
            "queued": stats.queued,
            "errors": stats.errors,
        }

    @property
    def records_dropped(self) -> int:
        """Records lost on purpose (spool off, full or failing; a sink turned off)."""
        dropped: dict[str, int] = self.counters()["dropped"]
        return sum(dropped.values())

    def flush(self, timeout_s: float | None = None) -> bool:
        """Send everything queued within ``timeout_s``; True when nothing is left."""
        return self.engine.flush(timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        """Flush within ``timeout_s``, spool the rest, stop the worker; idempotent."""
        self.engine.close(timeout_s)
        self._transport.close()
