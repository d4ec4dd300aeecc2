"""The delivery engine shared by the network sinks, its transport protocol and spool.

A sink encodes each record to ``bytes`` and calls :meth:`DeliveryEngine.submit`; a
:class:`Transport` sends batches; the engine does the rest (queue, worker thread,
batching, retry with backoff, on-disk spool and replay, bounded flush at exit, fork
safety, counters).
"""

from ._engine import RETRY_AFTER_CAP_S, DeliveryEngine
from ._spool import FOREIGN_HOST_STALE_S
from ._transport import DeliveryStats, SendOutcome, SendResult, Transport, describe_error

__all__ = [
    "FOREIGN_HOST_STALE_S",
    "RETRY_AFTER_CAP_S",
    "DeliveryEngine",
    "DeliveryStats",
    "SendOutcome",
    "SendResult",
    "Transport",
    "describe_error",
]
