"""The delivery engine's worker thread: batching, sending, backoff, spill and replay.

:class:`EngineWorker` is the worker's side of :class:`~._engine.DeliveryEngine`. Its
one daemon thread takes items out of the queue in batches, hands each batch to the
transport, waits out a backoff after a failure (never shorter than the server's
Retry-After), splits a batch the server finds too large, and counts what was sent,
retried or rejected. While the server is away it moves what waits in memory to the
spool (:meth:`EngineWorker._spill`), compresses the spool's closed segments while it
waits out the backoff (:mod:`._compress`), and replays the spool, oldest segment
first and in batches bounded like the queue's, once the server answers again; at
start it first replays the files of gone processes.
"""

from __future__ import annotations

import random
import time
from bisect import bisect_right
from collections import deque
from itertools import accumulate, islice
from pathlib import Path

from .._diagnostics import diagnose
from .._fsync import fsync_files
from ._compress import compress_segment, discard
from ._state import EngineState
from ._transport import SendOutcome, SendResult, describe_error
from ._writer import SPOOL_WRITE_S

__all__ = ["RETRY_AFTER_CAP_S", "EngineWorker"]

#: A server's Retry-After above this is clamped (a misconfigured proxy must not
#: silence a sink for hours; the spool holds the records meanwhile).
RETRY_AFTER_CAP_S = 600.0


class EngineWorker(EngineState):
    """The worker thread's side of a delivery engine; runs :meth:`_run` on that thread."""

    def _run(self) -> None:
        if self._replay_pending:
            self._replay_pending = False
            try:
                self._replay_orphans()
            except Exception as exc:
                self._count_error("replay", exc)
        while True:
            try:
                self._sync_closed()
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
                    self._wait_work(self._oldest_at + self._batch_wait_s - now)
                elif self._spilling:
                    # (also queues what a failed write closed; read back at once: no sync)
                    self._spool.rotate(fsync=False)
                    if self._spool.own:
                        return [], self._spool.own.popleft()
                    self._spilling = False
                else:
                    self._idle.notify_all()
                    self._wait_work(None)
            return None

    def _wait_work(self, timeout: float | None) -> None:
        """Wait (under the lock) until woken or ``timeout``.

        The spool's gathered frames go to disk first, and while the engine spools
        the wait ends within :data:`SPOOL_WRITE_S`, to write what came meanwhile.
        """
        if self._spool.writer.pending:
            self._write_gathered()
        if self._spilling:
            timeout = SPOOL_WRITE_S if timeout is None else min(timeout, SPOOL_WRITE_S)
        self._work.wait(timeout)

    def _take_batch(self) -> list[bytes]:
        queue = self._queue
        # How many items fit: sizes summed in C, the first item alone if it is too big.
        sizes = list(accumulate(map(len, islice(queue, self._max_batch_records))))
        count = bisect_right(sizes, self._max_batch_bytes)
        popleft = queue.popleft
        batch = [popleft() for _ in range(count or 1)]
        self._queue_bytes -= sizes[count - 1] if count else sizes[0]
        self._inflight, self._inflight_done, self._inflight_seq = batch, 0, self._head_seq
        self._head_seq += len(batch)
        if queue:
            # What is left starts a new wait: a stream that never lets the queue empty
            # must still go in full batches, not in whatever arrived since the last one.
            self._oldest_at = time.monotonic()
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
            if not self._wait_retry():
                return False
            result = self._send(part)
            with self._lock:
                outcome, taken = result.outcome, 0
                if outcome is SendOutcome.RETRY:
                    self._retry_later(result)
                    if from_memory and self._spool_enabled:
                        # The server is away: this batch and the queue go to disk
                        # (within SPOOL_WRITE_S), where a SIGKILL cannot take them;
                        # the spool is retried.
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

    def _wait_retry(self) -> bool:
        """Wait until the next attempt is due, syncing and compressing closed segments meanwhile.

        One segment at a time, and only while the attempt is not yet due, so that
        compressing never delays a due retry by more than one segment's work.

        Returns:
            False once the engine is stopped.
        """
        while True:
            with self._lock:
                if self._stop:
                    return False
                wait = self._not_before - time.monotonic()
                if wait <= 0:
                    return True
                unsynced = self._spool.take_unsynced()
                path = None if unsynced else self._spool.compressible()
                if not unsynced and path is None:
                    self._wait_work(wait)  # a new closed segment wakes it
                    continue
            if unsynced:
                fsync_files(unsynced)
            else:
                assert path is not None
                self._compress(path)

    def _sync_closed(self) -> None:
        """Fsync the segments the caller's thread closed, outside the lock."""
        with self._lock:
            unsynced = self._spool.take_unsynced()
        fsync_files(unsynced)

    def _compress(self, path: Path) -> None:
        """Rewrite a closed segment compressed (outside the lock), then put it in place."""
        try:
            copy = compress_segment(path)
        except OSError as exc:
            copy = None
            diagnose(
                f"{self.name}:spool:compress",
                f"{self.name}: cannot compress {path.name}: {describe_error(exc)}",
            )
        with self._lock:
            if copy is None:
                self._spool.skip_compress(path)
            elif self._stop:  # closed meanwhile: the raw segment may be claimed already
                discard(copy)
            else:
                self._spool.put_compressed(copy)

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
        queued_before = len(spool.own)
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
        # Appending may have rotated segments mid-spill (queued at the end): all the
        # segments of this spill move, in order, in front of the older queue.
        ours = [spool.own.pop() for _ in range(len(spool.own) - queued_before)][::-1]
        path = spool.writer.rotate(fsync=False)
        if path is not None:
            ours.append(path)
        spool.own.extendleft(reversed(ours))
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
        """Send a segment's records in batches, in order; delete it once all are taken.

        Batches are bounded like the queue's (``max_batch_bytes``/``max_batch_records``,
        a transport's own limits included): a whole segment in one push would exceed a
        server's limits. The records taken so far are remembered (per segment, for
        this process), so a replay that stops midway (close) resumes there when an
        engine of this process replays the file again; another process starts over.
        """
        items = self._spool.read(path)
        if items is None:  # unreadable or not a spool file: left where it is
            return True
        start = self._spool.taken(path)
        while start < len(items):
            end = self._replay_end(items, start)
            if not self._deliver(items[start:end], from_memory=False):
                return False
            start = end
            self._spool.mark_taken(path, start)
        with self._lock:
            self._spool.remove(path)
        return True

    def _replay_end(self, items: list[bytes], start: int) -> int:
        """Where the replay batch starting at ``items[start]`` ends (one big item goes alone)."""
        end, total = start, 0
        stop = min(len(items), start + self._max_batch_records)
        while end < stop:
            size = len(items[end])
            if end > start and total + size > self._max_batch_bytes:
                break
            total += size
            end += 1
        return end
