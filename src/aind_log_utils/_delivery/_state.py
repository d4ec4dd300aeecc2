"""The delivery engine's mutable state and its counters, shared by both of its sides.

:class:`EngineState` is the base of :class:`~._engine.DeliveryEngine`: it creates
what a fork must re-create (locks, queue, spool writer, counters) and holds the
bookkeeping that the caller's side and the worker's side both do (spool an item or
count its drop, count an internal error, tell what is still pending). Every method
here is called with the engine's lock held, except :meth:`EngineState._count_error`.
"""

from __future__ import annotations

import threading
from collections import deque
from pathlib import Path

from .._diagnostics import diagnose
from . import _spool
from ._transport import Transport, describe_error

__all__ = ["EngineState"]


class EngineState:
    """The state of one delivery engine; see :class:`~._engine.DeliveryEngine`.

    The configuration below is set by the engine's constructor; everything else by
    :meth:`_init_state`.
    """

    name: str
    spool_dir: Path
    _transport: Transport
    _max_queue_bytes: int
    _max_queue_records: int
    _max_batch_bytes: int
    _max_batch_records: int
    _batch_wait_s: float
    _retry_start_s: float
    _retry_factor: float
    _retry_max_s: float
    _timeout_s: float
    _flush_timeout_s: float
    _max_spool_bytes: int
    _spool_enabled: bool
    _closed: bool
    _replay_pending: bool

    def _init_state(self) -> None:
        # Everything that a fork must re-create: locks, queue, spool writer, counters.
        self._lock = threading.RLock()  # re-entrant: a signal handler may log mid-submit
        self._work = threading.Condition(self._lock)  # wakes the worker
        self._idle = threading.Condition(self._lock)  # wakes flush()/close()
        self._close_lock = threading.Lock()
        self._queue: deque[bytes] = deque()
        self._queue_bytes = 0
        self._head_seq = 0  # submission number of self._queue[0]
        self._oldest_at = 0.0  # when the queue's batch wait began (empty -> not, or a take)
        self._seq = 0
        self._inflight: list[bytes] = []  # the memory batch being sent
        self._inflight_done = 0
        self._inflight_seq = 0
        self._spilling = False  # True: new items go to the spool, behind the older ones
        self._spool = _spool.Spool(self.spool_dir, max_bytes=self._max_spool_bytes, label=self.name)
        self._not_before = 0.0
        self._backoff_s = 0.0
        self._failures = 0
        self._flush_waiters = 0
        self._closing = False
        self._stop = self._closed
        self._worker: threading.Thread | None = None
        self._sent = self._retried = self._spooled = self._replayed = self._errors = 0
        self._rejected: dict[str, int] = {}
        self._dropped: dict[str, int] = {}

    def _spool_or_drop(self, item: bytes, seq: int, reason: str) -> None:
        closed = len(self._spool.own)
        why = self._spool.append(item, seq) if self._spool_enabled else reason
        if why is None:
            self._spooled += 1
            if len(self._spool.own) > closed:
                self._work.notify()  # a segment closed: the worker may compress it
        else:
            self._errors += why == "spool_error"
            self._drop(why, 1)
            self._settle_lost()

    def _write_gathered(self) -> None:
        """Write the frames the spool has gathered (see :mod:`._writer`)."""
        if not self._spool.write_pending():
            self._errors += 1
        self._settle_lost()

    def _settle_lost(self) -> None:
        """Count the records of failed gathered spool writes as dropped, not spooled."""
        lost = self._spool.take_lost()
        if lost:
            self._spooled -= lost
            self._drop("spool_error", lost)

    def _drop(self, reason: str, count: int) -> None:
        self._dropped[reason] = self._dropped.get(reason, 0) + count
        diagnose(
            f"{self.name}:dropped:{reason}", f"{self.name}: dropped {count} record(s): {reason}"
        )

    def _count_error(self, where: str, exc: BaseException) -> None:
        try:
            with self._lock:
                self._errors += 1
            diagnose(
                f"{self.name}:error:{where}",
                f"{self.name}: internal error in {where}: {describe_error(exc)}",
            )
        except Exception:
            pass

    def _pending(self) -> int:
        return len(self._queue) + len(self._inflight) - self._inflight_done + int(self._spilling)
