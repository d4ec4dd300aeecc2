"""The one delivery engine behind every network sink (Loki, SIPE, CloudWatch).

Items (``bytes``, one encoded record each) go from the caller's thread into a
bounded in-memory queue; one daemon worker thread per engine takes them out in
batches and hands each batch to a :class:`~._transport.Transport`. When the queue is
full (the server is slow or away), items are appended to an on-disk spool instead
of being dropped; the spool is replayed when the server answers again, and by the
next process when this one could not finish. See :class:`DeliveryEngine`.

Order guaranteed. Per engine and process, items reach the transport in submission
order: once anything has overflowed to the spool, later items are spooled behind it
(never queued in front of it) until the worker has sent the older in-memory items
and then the spool, oldest segment first; halves of a split batch go in order.
Delivery is at least once: a batch whose attempt failed or timed out is sent again
whole, and what a hung send held at close is also spooled, so the server may see an
item twice (Loki drops exact duplicates). Rejected items are simply absent. At
start, the files of gone writers are replayed BEFORE this process's own items,
oldest writer first, each writer's items in its own submission order (what its
close() spooled sorts before what its overflow spooled later). :meth:`flush` waits
for this engine's own items only, not for that replay.

This module is the engine's public surface and lifecycle: construction, flush,
close, stats, the exit hook and fork safety. The caller's side (submit) is
:mod:`._intake`, the worker thread's side :mod:`._worker`, the shared state and
counters :mod:`._state`, the checking of the constructor's arguments :mod:`._params`.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from .._diagnostics import diagnose
from .._fsync import fsync_files
from . import _spool
from ._intake import EngineIntake
from ._lifecycle import manage, release
from ._params import check_engine_args, default_spool_dir, float_param, int_param, transport_limit
from ._transport import DeliveryStats, Transport
from ._worker import RETRY_AFTER_CAP_S, EngineWorker

__all__ = ["OPTION_DEFAULTS", "RETRY_AFTER_CAP_S", "DeliveryEngine"]

_MIB = 1024 * 1024


class DeliveryEngine(EngineIntake, EngineWorker):
    """Moves opaque items from the caller's thread to a transport, in batches.

    Args:
        name: the sink's name (thread name ``aind-log-<name>``, diagnostics, default
            spool directory).
        transport: what sends a batch; see :class:`~._transport.Transport`.
        max_queue_bytes: in-memory queue cap in bytes (default 32 MiB); beyond it
            (or ``max_queue_records``) items go to the spool.
        max_queue_records: in-memory queue cap in items (default 100,000).
        max_batch_bytes: batch size cap in bytes (default 1 MiB: well under Loki's
            4 MiB push limit and its 6 MB burst). A transport's own
            ``max_batch_bytes`` lowers it. One larger item is sent alone.
        max_batch_records: batch size cap in items (default 5,000; Loki's throughput
            is ~2,800 lines/s at 1 line per push and ~340,000 at 1,000).
        batch_wait_s: the longest an item waits for its batch to fill (default 0.5 s:
            at most two pushes a second from a quiet program, records visible in
            Grafana within a second; busy programs fill batches before it).
        retry_start_s: first backoff (default 0.5 s).
        retry_factor: backoff growth per failed attempt (default 2.0).
        retry_max_s: backoff cap (default 10 s: once the server is back, the first
            retry comes within 10 s, 5 s on average). Each wait is drawn uniformly
            from [0, backoff] (full jitter), and is never shorter than a Retry-After.
        timeout_s: the time one ``send`` may take (default 10 s).
        flush_timeout_s: the default bound of :meth:`flush` and :meth:`close`, and
            of the exit hook (default 10 s).
        spool_dir: the spool directory (default: the user cache directory
            ``aind-log-utils/spool/<name>``, from platformdirs).
        max_spool_bytes: cap on the spool directory's segments, all processes
            together (default 256 MiB), as they are on disk: once the directory
            holds a quarter of it, closed segments are compressed while the worker
            waits out a backoff (JSON lines 5-20x), so it holds over 1 GB of
            records. Beyond it items are dropped (counted).
        spool: use the spool at all (default True). Without it, overflow and what
            close could not send are dropped (counted).
        replay_on_start: replay the files of gone processes when the engine starts
            (default True; needs ``spool``).

    Raises:
        TypeError: a parameter has the wrong type (the message names it).
        ValueError: a parameter is out of range (the message names it).
    """

    def __init__(
        self,
        name: str,
        transport: Transport,
        *,
        max_queue_bytes: int = 32 * _MIB,
        max_queue_records: int = 100_000,
        max_batch_bytes: int = _MIB,
        max_batch_records: int = 5000,
        batch_wait_s: float = 0.5,
        retry_start_s: float = 0.5,
        retry_factor: float = 2.0,
        retry_max_s: float = 10.0,
        timeout_s: float = 10.0,
        flush_timeout_s: float = 10.0,
        spool_dir: str | os.PathLike[str] | None = None,
        max_spool_bytes: int = 256 * _MIB,
        spool: bool = True,
        replay_on_start: bool = True,
    ) -> None:
        options = {k: v for k, v in locals().items() if k in _OPTION_NAMES}
        self._configure(name, transport, options)
        self._closed = False
        self._init_state()
        self._replay_pending = spool and replay_on_start
        self._atexit_hook = manage(self)
        with self._lock:
            self._ensure_worker()

    def _configure(self, name: str, transport: Transport, options: dict[str, Any]) -> None:
        """Check the arguments and set the engine's parameters (nothing starts here)."""
        spool, spool_dir = options["spool"], options["spool_dir"]
        check_engine_args(name, transport, spool, options["replay_on_start"], spool_dir)
        self._max_queue_bytes = int_param("max_queue_bytes", options["max_queue_bytes"], 1)
        self._max_queue_records = int_param("max_queue_records", options["max_queue_records"], 1)
        batch_bytes = int_param("max_batch_bytes", options["max_batch_bytes"], 1)
        batch_records = int_param("max_batch_records", options["max_batch_records"], 1)
        self._batch_wait_s = float_param("batch_wait_s", options["batch_wait_s"], 0)
        self._retry_start_s = float_param("retry_start_s", options["retry_start_s"], 0, strict=True)
        self._retry_factor = float_param("retry_factor", options["retry_factor"], 1)
        self._retry_max_s = float_param("retry_max_s", options["retry_max_s"], 0)
        if self._retry_max_s < self._retry_start_s:
            raise ValueError(
                f"retry_max_s must be >= retry_start_s ({self._retry_start_s!r}), "
                f"got {self._retry_max_s!r}"
            )
        self._timeout_s = float_param("timeout_s", options["timeout_s"], 0, strict=True)
        self._flush_timeout_s = float_param("flush_timeout_s", options["flush_timeout_s"], 0)
        min_spool = len(_spool.MAGIC) + _spool.FRAME_OVERHEAD + 1
        self._max_spool_bytes = int_param("max_spool_bytes", options["max_spool_bytes"], min_spool)
        self._max_batch_bytes = min(
            batch_bytes, transport_limit(transport, "max_batch_bytes") or batch_bytes
        )
        self._max_batch_records = min(
            batch_records, transport_limit(transport, "max_batch_records") or batch_records
        )
        self.name = name
        self._transport = transport
        self._spool_enabled = spool
        if spool_dir is None:
            spool_dir = default_spool_dir(name)
        #: Where this engine's spool segments live.
        self.spool_dir = Path(spool_dir)

    @classmethod
    def check_options(cls, transport: Transport, **options: Any) -> None:
        """Check engine options exactly as the constructor does, without starting anything.

        Raises:
            TypeError: an option has the wrong type, or is unknown.
            ValueError: an option is out of range (the message names it).
        """
        unknown = set(options) - _OPTION_NAMES
        if unknown:
            raise TypeError(f"{sorted(unknown)[0]}: not a delivery option")
        cls.__new__(cls)._configure("check", transport, {**OPTION_DEFAULTS, **options})

    def _reinit_after_fork(self) -> None:
        # The parent still owns its queue, batch and spool files: forget them all.
        old_spool = self._spool
        self._init_state()
        old_spool.writer.abandon()
        self._replay_pending = False  # the parent replays what was there at start

    def _ensure_worker(self) -> None:
        if self._worker is None and not self._stop:
            worker = threading.Thread(target=self._run, name=f"aind-log-{self.name}", daemon=True)
            worker.start()
            self._worker = worker

    def stats(self) -> DeliveryStats:
        """Return a consistent snapshot of the counters.

        Returns:
            The counters (see :class:`~._transport.DeliveryStats`).
        """
        with self._lock:
            self._settle_lost()
            return DeliveryStats(
                sent=self._sent,
                retried=self._retried,
                spooled=self._spooled,
                replayed=self._replayed,
                rejected=dict(self._rejected),
                dropped=dict(self._dropped),
                queued=len(self._queue) + len(self._inflight) - self._inflight_done,
                errors=self._errors,
            )

    def flush(self, timeout_s: float | None = None) -> bool:
        """Send everything queued or spooled by this engine, within ``timeout_s``.

        Partial batches go at once. Items that cannot be sent stay queued; the
        spool is fsynced. Thread-safe; returns False at once on the worker thread.

        Args:
            timeout_s: the bound (default ``flush_timeout_s``).

        Returns:
            True when nothing of this engine's is left to send.
        """
        try:
            timeout = self._flush_timeout_s if timeout_s is None else max(0.0, float(timeout_s))
            if threading.current_thread() is self._worker:
                return False
            with self._lock:
                if not self._stop:
                    self._flush_waiters += 1
                    self._work.notify_all()
                    try:
                        self._idle.wait_for(lambda: self._pending() == 0, timeout)
                    finally:
                        self._flush_waiters -= 1
                self._spool.writer.sync()
                fsync_files(self._spool.take_unsynced())
                return self._pending() == 0
        except Exception as exc:
            self._count_error("flush", exc)
            return False

    def close(self, timeout_s: float | None = None) -> None:
        """Flush within ``timeout_s``, spool (fsynced) what is left, stop the worker.

        Idempotent and thread-safe. Never waits longer than the bound (plus the
        local spool write): a transport still hanging is abandoned (it is a daemon
        thread) and its batch is spooled, so it may be delivered twice. When the
        server is known to be away (the next retry is after the deadline) it does
        not wait at all. Items submitted afterwards go straight to the spool, in files
        that only a later process replays.

        Args:
            timeout_s: the bound (default ``flush_timeout_s``).
        """
        try:
            timeout = self._flush_timeout_s if timeout_s is None else max(0.0, float(timeout_s))
            with self._close_lock:
                if self._closed:
                    return
                deadline = time.monotonic() + timeout
                worker = self._worker
                with self._lock:
                    self._closing = True
                    self._work.notify_all()
                    if (
                        worker is not None
                        and worker is not threading.current_thread()
                        and worker.is_alive()
                    ):
                        self._idle.wait_for(
                            lambda: self._pending() == 0 or self._not_before > deadline, timeout
                        )
                    self._stop = self._closed = True
                    self._work.notify_all()
                    self._spool_leftovers()
                    self._spool.retire()
                release(self._atexit_hook)
                if worker is not None and worker is not threading.current_thread():
                    worker.join(max(0.0, deadline - time.monotonic()))
        except Exception as exc:
            self._count_error("close", exc)

    def _spool_leftovers(self) -> None:
        leftovers = self._inflight[self._inflight_done :] + list(self._queue)
        first_seq = self._inflight_seq + self._inflight_done if self._inflight else self._head_seq
        self._inflight, self._inflight_done = [], 0
        self._queue.clear()
        self._queue_bytes = 0
        if not leftovers:
            return
        if not self._spool_enabled:
            self._drop("close_timeout", len(leftovers))
            return
        # A segment of their own, named after their (lower) numbers, so a later
        # replay sends them before anything spooled earlier by overflow.
        self._spool.rotate(fsync=True)
        spooled = self._spooled
        for offset, item in enumerate(leftovers):
            self._spool_or_drop(item, first_seq + offset, "close_timeout")
        diagnose(
            f"{self.name}:close",
            f"{self.name}: close() spooled {self._spooled - spooled} of {len(leftovers)} "
            f"unsent record(s) to {self.spool_dir}",
        )

    def __enter__(self) -> DeliveryEngine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DeliveryEngine {self.name!r} queued={len(self._queue)} closed={self._closed}>"


#: The engine's options (its constructor's keyword arguments) and their defaults.
OPTION_DEFAULTS: dict[str, Any] = {
    name: param.default
    for name, param in inspect.signature(DeliveryEngine.__init__).parameters.items()
    if param.kind is inspect.Parameter.KEYWORD_ONLY
}
_OPTION_NAMES = frozenset(OPTION_DEFAULTS)
