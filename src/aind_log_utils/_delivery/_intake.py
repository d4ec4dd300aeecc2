"""The caller's side of a delivery engine: each item queued, spooled or dropped.

:class:`EngineIntake` is a base of :class:`~._engine.DeliveryEngine`. ``submit``
and ``submit_many`` put items in the bounded queue under the engine's lock and wake
the worker when a batch is full; once the queue is full or the server is away
(the engine *spills*), items go to the spool behind everything spooled before
them, a sender process's whole read framed at once (:meth:`EngineIntake._spool_batch`);
an item is dropped, and counted, only when the spool is off, full or failing.
Nothing here blocks on the network or raises into the caller.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TypeGuard

from ._state import EngineState

__all__ = ["EngineIntake"]

_BYTES_ONLY = {bytes}


def _all_bytes(items: Iterable[object]) -> TypeGuard[list[bytes]]:
    """True for a non-empty list of bytes: what ``submit_many`` spools as one batch."""
    return type(items) is list and bool(items) and set(map(type, items)) == _BYTES_ONLY


class EngineIntake(EngineState):
    """The caller's methods of a delivery engine, a mixin (the engine starts the worker)."""

    def _ensure_worker(self) -> None:
        raise NotImplementedError

    def submit(self, item: bytes) -> None:
        """Queue one encoded item; never blocks on the network, never raises.

        When the queue is full the item is appended to the spool (a local file
        write, no fsync) behind anything spooled before it; it is dropped (counted)
        only when the spool is off, full or failing.

        Args:
            item: one encoded record.
        """
        try:
            with self._lock:
                if type(item) is bytes:  # no tuple and loop of submit_many: a record's call
                    self._queue_one(item)
                else:
                    self._queue_odd(item)
        except Exception as exc:
            self._count_error("submit", exc)

    def submit_many(self, items: Iterable[bytes]) -> None:
        """Queue encoded items in order under one lock; as :meth:`submit` for each.

        Args:
            items: encoded records (a sender process hands over all it has read).
        """
        try:
            with self._lock:
                if self._spilling and self._spool_enabled and not self._stop and _all_bytes(items):
                    self._spool_batch(items)
                    return
                for item in items:
                    if type(item) is bytes:
                        self._queue_one(item)
                    else:
                        self._queue_odd(item)
        except Exception as exc:
            self._count_error("submit", exc)

    def _queue_odd(self, item: object) -> None:
        """Queue a bytes-like item as bytes; drop (and count) anything else."""
        if isinstance(item, (bytes, bytearray, memoryview)):
            self._queue_one(bytes(item))
        else:
            self._drop("invalid_item", 1)

    def _queue_one(self, item: bytes) -> None:
        """Queue, spool or drop one item (under the lock)."""
        self._seq += 1
        if self._spilling and not self._stop:  # the server is away: straight to the spool
            self._spool_or_drop(item, self._seq, "queue_full")
            return
        size = len(item)
        if self._stop:
            self._spool_or_drop(item, self._seq, "closed")
            return
        if self._worker is None:
            try:
                self._ensure_worker()  # lazily, in a forked child
            except RuntimeError:  # no new threads at interpreter shutdown
                self._spool_or_drop(item, self._seq, "closed")
                return
        queue = self._queue  # not spilling here: behind the spool is where it would go
        if not queue:
            queue.append(item)
            self._queue_bytes, self._head_seq, self._oldest_at = size, self._seq, time.monotonic()
            self._work.notify()
        elif (
            self._queue_bytes + size <= self._max_queue_bytes
            and len(queue) < self._max_queue_records
        ):
            queue.append(item)
            self._queue_bytes += size
            if len(queue) == self._max_batch_records or (
                self._queue_bytes >= self._max_batch_bytes > self._queue_bytes - size
            ):
                self._work.notify()  # a full batch: do not wait for the timer
        else:
            if self._spool_enabled and not self._spilling:
                self._spilling = True
                # The worker may be waiting out a batch (up to batch_wait_s): woken,
                # it waits at most SPOOL_WRITE_S while spilling, and writes the spool.
                self._work.notify()
            self._spool_or_drop(item, self._seq, "queue_full")

    @property
    def spilling(self) -> bool:
        """True while new items go to the spool (the server is away, or the queue was full).

        Read without the lock, so only a hint: a sink may prepare an item for the
        spool differently (SIPE spools records packed, unencoded), but any item
        may still land in the queue or the spool.
        """
        return self._spilling

    def _spool_batch(self, items: list[bytes]) -> None:
        """Spool items in order, as :meth:`_spool_or_drop` does each, with few calls.

        What the spool does not take at once (its cap, a failed write) goes one by
        one, each spooled or dropped and counted with its reason.
        """
        first = self._seq + 1
        self._seq += len(items)
        closed = len(self._spool.own)
        taken = self._spool.append_many(items, first)
        self._spooled += taken
        if len(self._spool.own) > closed:
            self._work.notify()  # a segment closed: the worker may compress it
        self._settle_lost()
        for index in range(taken, len(items)):
            self._spool_or_drop(items[index], first + index, "queue_full")

    def write_spool_buffer(self) -> None:
        """Write what the spool has gathered now, not within the worker's 0.1 s; never raises.

        A sender process calls it whenever it has handled its input.
        """
        try:
            with self._lock:
                self._write_gathered()
        except Exception as exc:
            self._count_error("spool", exc)
