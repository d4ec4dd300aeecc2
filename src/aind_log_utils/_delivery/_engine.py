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
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import random
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from .._diagnostics import diagnose
from . import _spool
from ._transport import DeliveryStats, SendOutcome, SendResult, Transport, describe_error

__all__ = ["DeliveryEngine"]

_MIB = 1024 * 1024
#: A server's Retry-After above this is clamped (a misconfigured proxy must not
#: silence a sink for hours; the spool holds the records meanwhile).
RETRY_AFTER_CAP_S = 600.0

_engines: weakref.WeakSet[DeliveryEngine] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for engine in list(_engines):
        engine._reinit_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_at_exit(ref: Callable[[], DeliveryEngine | None]) -> None:
    engine = ref()
    if engine is not None:
        engine.close()


def _int_param(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def _float_param(name: str, value: object, minimum: float, *, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < minimum or (strict and number == minimum):
        raise ValueError(
            f"{name} must be a finite number {'>' if strict else '>='} {minimum:g}, got {value!r}"
        )
    return number


def _transport_limit(transport: object, attr: str) -> int | None:
    value = getattr(transport, attr, None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class DeliveryEngine:
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
        retry_max_s: backoff cap (default 30 s). Each wait is drawn uniformly from
            [0, backoff] (full jitter), and is never shorter than a Retry-After.
        timeout_s: the time one ``send`` may take (default 10 s).
        flush_timeout_s: the default bound of :meth:`flush` and :meth:`close`, and
            of the exit hook (default 10 s).
        spool_dir: the spool directory (default: the user cache directory
            ``aind-log-utils/spool/<name>``, from platformdirs).
        max_spool_bytes: cap on the spool directory's segments, all processes
            together (default 256 MiB); beyond it items are dropped (counted).
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
        retry_max_s: float = 30.0,
        timeout_s: float = 10.0,
        flush_timeout_s: float = 10.0,
        spool_dir: str | os.PathLike[str] | None = None,
        max_spool_bytes: int = 256 * _MIB,
        spool: bool = True,
        replay_on_start: bool = True,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if not name.strip():
            raise ValueError("name must be a non-empty str")
        if not callable(getattr(transport, "send", None)):
            raise TypeError(
                f"transport must have a send(batch, timeout_s) method, got {type(transport).__name__}"
            )
        for flag_name, flag in (("spool", spool), ("replay_on_start", replay_on_start)):
            if not isinstance(flag, bool):
                raise TypeError(f"{flag_name} must be a bool, got {type(flag).__name__}")
        if spool_dir is not None and not isinstance(spool_dir, (str, os.PathLike)):
            raise TypeError(
                f"spool_dir must be a str, a path or None, got {type(spool_dir).__name__}"
            )
        self._max_queue_bytes = _int_param("max_queue_bytes", max_queue_bytes, 1)
        self._max_queue_records = _int_param("max_queue_records", max_queue_records, 1)
        batch_bytes = _int_param("max_batch_bytes", max_batch_bytes, 1)
        batch_records = _int_param("max_batch_records", max_batch_records, 1)
        self._batch_wait_s = _float_param("batch_wait_s", batch_wait_s, 0)
        self._retry_start_s = _float_param("retry_start_s", retry_start_s, 0, strict=True)
        self._retry_factor = _float_param("retry_factor", retry_factor, 1)
        self._retry_max_s = _float_param("retry_max_s", retry_max_s, self._retry_start_s)
        self._timeout_s = _float_param("timeout_s", timeout_s, 0, strict=True)
        self._flush_timeout_s = _float_param("flush_timeout_s", flush_timeout_s, 0)
        min_spool = len(_spool.MAGIC) + _spool.FRAME_OVERHEAD + 1
        self._max_spool_bytes = _int_param("max_spool_bytes", max_spool_bytes, min_spool)
        self._max_batch_bytes = min(
            batch_bytes, _transport_limit(transport, "max_batch_bytes") or batch_bytes
        )
        self._max_batch_records = min(
            batch_records, _transport_limit(transport, "max_batch_records") or batch_records
        )
        self.name = name
        self._transport = transport
        self._spool_enabled = spool
        if spool_dir is None:
            import platformdirs

            cache = platformdirs.user_cache_path("aind-log-utils", appauthor=False)
            spool_dir = cache / "spool" / re.sub(r"[^A-Za-z0-9._-]", "_", name)
        #: Where this engine's spool segments live.
        self.spool_dir = Path(spool_dir)
        self._closed = False
        self._init_state()
        self._replay_pending = spool and replay_on_start
        _engines.add(self)
        # A weakref, so the hook never keeps a dropped engine alive.
        self._atexit_hook = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._atexit_hook)
        with self._lock:
            self._ensure_worker()

    def _init_state(self) -> None:
        # Everything that a fork must re-create: locks, queue, spool writer, counters.
        self._lock = threading.RLock()  # re-entrant: a signal handler may log mid-submit
        self._work = threading.Condition(self._lock)  # wakes the worker
        self._idle = threading.Condition(self._lock)  # wakes flush()/close()
        self._close_lock = threading.Lock()
        self._queue: deque[bytes] = deque()
        self._queue_bytes = 0
        self._head_seq = 0  # submission number of self._queue[0]
        self._oldest_at = 0.0  # when the queue last went from empty to not empty
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

    # ---- the caller's side --------------------------------------------------
    def submit(self, item: bytes) -> None:
        """Queue one encoded item; never blocks on the network, never raises.

        When the queue is full the item is appended to the spool (a local file
        write, no fsync) behind anything spooled before it; it is dropped (counted)
        only when the spool is off, full or failing.

        Args:
            item: one encoded record.
        """
        try:
            if type(item) is not bytes:
                if not isinstance(item, (bytes, bytearray, memoryview)):
                    with self._lock:
                        self._drop("invalid_item", 1)
                    return
                item = bytes(item)
            size = len(item)
            with self._lock:
                self._seq += 1
                if self._stop:
                    self._spool_or_drop(item, self._seq, "closed")
                    return
                if self._worker is None:
                    try:
                        self._ensure_worker()  # lazily, in a forked child
                    except RuntimeError:  # no new threads at interpreter shutdown
                        self._spool_or_drop(item, self._seq, "closed")
                        return
                queue = self._queue
                if not queue and not self._spilling:
                    queue.append(item)
                    self._queue_bytes, self._head_seq, self._oldest_at = (
                        size,
                        self._seq,
                        time.monotonic(),
                    )
                    self._work.notify()
                elif (
                    not self._spilling
                    and self._queue_bytes + size <= self._max_queue_bytes
                    and len(queue) < self._max_queue_records
                ):
                    queue.append(item)
                    self._queue_bytes += size
                    if len(queue) == self._max_batch_records or (
                        self._queue_bytes >= self._max_batch_bytes > self._queue_bytes - size
                    ):
                        self._work.notify()  # a full batch: do not wait for the timer
                else:
                    self._spilling = self._spool_enabled
                    self._spool_or_drop(item, self._seq, "queue_full")
        except Exception as exc:
            self._count_error("submit", exc)

    def _spool_or_drop(self, item: bytes, seq: int, reason: str) -> None:
        why = self._spool.append(item, seq) if self._spool_enabled else reason
        if why is None:
            self._spooled += 1
        else:
            self._errors += why == "spool_error"
            self._drop(why, 1)

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

    def stats(self) -> DeliveryStats:
        """Return a consistent snapshot of the counters.

        Returns:
            The counters (see :class:`~._transport.DeliveryStats`).
        """
        with self._lock:
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
                atexit.unregister(self._atexit_hook)
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

    # ---- the worker's side --------------------------------------------------
    def _run(self) -> None:
        if self._replay_pending:
            self._replay_pending = False
            try:
                self._replay_orphans()
            except Exception as exc:
                self._count_error("replay", exc)
        while True:
            try:
                job = self._next_job()
                if job is None:
                    return
                items, path = job
                if path is None:
                    if not self._deliver(items, from_memory=True):
                        return
                elif not self._replay(path):
                    return
            except Exception as exc:  # a bug must not kill the worker
                self._count_error("worker", exc)
                with self._lock:
                    self._not_before = time.monotonic() + self._retry_start_s

    def _next_job(self) -> tuple[list[bytes], Path | None] | None:
        with self._lock:
            while not self._stop:
                if self._inflight_done < len(self._inflight):  # only after a caught bug
                    return self._inflight[self._inflight_done :], None
                now = time.monotonic()
                if self._queue:
                    if (
                        self._closing
                        or self._flush_waiters
                        or len(self._queue) >= self._max_batch_records
                        or self._queue_bytes >= self._max_batch_bytes
                        or now - self._oldest_at >= self._batch_wait_s
                    ):
                        return self._take_batch(), None
                    self._work.wait(self._oldest_at + self._batch_wait_s - now)
                elif self._spilling:
                    if self._spool.writer.records:
                        self._spool.rotate(fsync=False)  # read back at once: no need to sync
                    if self._spool.own:
                        return [], self._spool.own.popleft()
                    self._spilling = False
                else:
                    self._idle.notify_all()
                    self._work.wait()
            return None

    def _take_batch(self) -> list[bytes]:
        queue, total = self._queue, 0
        batch: list[bytes] = []
        while queue and len(batch) < self._max_batch_records:
            size = len(queue[0])
            if batch and total + size > self._max_batch_bytes:
                break
            batch.append(queue.popleft())
            total += size
        self._queue_bytes -= total
        self._inflight, self._inflight_done, self._inflight_seq = batch, 0, self._head_seq
        self._head_seq += len(batch)
        return batch

    def _send(self, part: list[bytes]) -> SendResult:
        try:
            result = self._transport.send(part, self._timeout_s)
        except Exception as exc:
            with self._lock:
                self._errors += 1
            return SendResult.retry(describe_error(exc))
        if not isinstance(result, SendResult):
            with self._lock:
                self._errors += 1
            return SendResult.retry(f"transport returned {type(result).__name__}, not SendResult")
        return result

    def _deliver(self, items: list[bytes], *, from_memory: bool) -> bool:
        """Send ``items`` (in order) until every one is taken; False once stopped."""
        parts: deque[list[bytes]] = deque([items] if items else [])
        while parts:
            part = parts[0]
            with self._lock:
                while not self._stop and (wait := self._not_before - time.monotonic()) > 0:
                    self._work.wait(wait)
                if self._stop:
                    return False
            result = self._send(part)
            with self._lock:
                outcome, taken = result.outcome, 0
                if outcome is SendOutcome.RETRY:
                    self._retry_later(result)
                    if from_memory and self._spool_enabled:
                        # The server is away: this batch and the queue go to disk,
                        # where a SIGKILL cannot take them; the spool is retried.
                        self._spill(parts)
                        return True
                elif outcome is SendOutcome.SPLIT and len(part) > 1:
                    half = len(part) // 2
                    parts.popleft()
                    parts.extendleft((part[half:], part[:half]))
                else:
                    rejected = len(part) if outcome is SendOutcome.SPLIT else 0
                    if outcome is SendOutcome.REJECTED:
                        rejected = min(result.rejected, len(part))
                    if rejected:
                        self._rejected[result.reason] = (
                            self._rejected.get(result.reason, 0) + rejected
                        )
                        diagnose(
                            f"{self.name}:rejected",
                            f"{self.name}: server rejected {rejected} record(s): {result.reason}",
                        )
                    taken = len(part)
                    self._sent += taken - rejected
                    if not from_memory:
                        self._replayed += taken - rejected
                    parts.popleft()
                    if self._failures:
                        diagnose(f"{self.name}:recovered", f"{self.name}: delivering again")
                    self._failures, self._backoff_s, self._not_before = 0, 0.0, 0.0
                if self._stop:
                    return False  # close() has spooled the batch already
                if from_memory and taken:
                    self._inflight_done += taken
                    if self._inflight_done >= len(self._inflight):
                        self._inflight, self._inflight_done = [], 0
                self._idle.notify_all()
        return True

    def _retry_later(self, result: SendResult) -> None:
        self._retried += 1
        self._failures += 1
        self._backoff_s = min(
            self._retry_max_s,
            self._retry_start_s if self._failures == 1 else self._backoff_s * self._retry_factor,
        )
        delay = random.uniform(0.0, self._backoff_s)  # full jitter
        if result.retry_after_s is not None:
            delay = max(delay, min(result.retry_after_s, RETRY_AFTER_CAP_S))
        self._not_before = time.monotonic() + delay
        if self._failures == 1 or self._failures % 10 == 0:
            diagnose(
                f"{self.name}:retry",
                f"{self.name}: delivery failed ({result.reason}); attempt {self._failures}, "
                f"retrying in {delay:.1f}s; {len(self._queue) + len(self._inflight)} record(s) in memory",
            )

    def _spill(self, parts: deque[list[bytes]]) -> None:
        """The server is away: move what waits in memory to the spool, and spool from now on.

        Records in memory die with the process (SIGKILL, OOM, power); records in
        the spool are replayed, by this process once the server answers or by
        the next start. Order is kept: the rest of the in-flight batch, then the
        queue, go into a segment of their own that is sent BEFORE any segment
        spooled earlier (those hold newer items), and new items are spooled behind.
        """
        spool = self._spool
        if spool.writer.records:
            spool.rotate(fsync=False)  # newer items: they stay queued behind ours
        seq = self._inflight_seq + self._inflight_done
        for part in parts:
            for item in part:
                self._spool_or_drop(item, seq, "queue_full")
                seq += 1
        parts.clear()
        self._inflight, self._inflight_done = [], 0
        queue, seq = self._queue, self._head_seq
        while queue:
            self._spool_or_drop(queue.popleft(), seq, "queue_full")
            seq += 1
        self._queue_bytes = 0
        self._head_seq = seq
        path = spool.writer.rotate(fsync=False)
        if path is not None:
            spool.own.appendleft(path)
        self._spilling = True

    def _replay_orphans(self) -> None:
        paths = self._spool.claim_orphans()
        if paths:
            diagnose(
                f"{self.name}:replay",
                f"{self.name}: replaying {len(paths)} spool file(s) from {self.spool_dir}",
            )
        for path in paths:
            if not self._replay(path):
                return

    def _replay(self, path: Path) -> bool:
        items = self._spool.read(path)
        if items is None:  # unreadable or not a spool file: left where it is
            return True
        if not self._deliver(items, from_memory=False):
            return False
        with self._lock:
            self._spool.remove(path)
        return True
