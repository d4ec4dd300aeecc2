"""A sink's sender process, and the caller's end of the pipe to it.

Why a process: a delivery worker THREAD shares the GIL with the program that
logs. Each time it needs the GIL back (after a gzip, a send, a receive, a timed
wait) while the program is busy logging, the two threads trade it through
futex wake-ups and forced switches, and the program pays for every one: on a
2-core VM that cost twice what the file sink does per record. With
``delivery="process"`` (the default where it works), a sink hands each record to
a :class:`ProcessLink`: the caller's thread appends it (its wire header with a
few bytes the sink packed, and the JSON line) to a list; every
:data:`PACK_EVERY` records it joins them into a buffer in one go, and every 64
KiB writes the buffer to a non-blocking pipe (:mod:`._handover`). A sender process (:mod:`._host`, started
by :mod:`._sender`) builds the same sink in thread mode and does everything
else (encoding, batching, retries, the spool) on its own GIL.

What this changes for delivery:

- A SIGKILL of the program loses at most the unwritten buffer (< 64 KiB) and
  the records not yet framed into it (fewer than :data:`PACK_EVERY`), none older
  than :data:`WRITE_EVERY_S` while the link's thread gets the GIL: what reached
  the pipe is read, delivered or spooled by the sender, which closes its sink
  when the pipe ends.
- When the sender cannot be started, or dies, the same sink is built in this
  process (thread mode) and takes the records still buffered here, and everything
  after. Records the dead sender had not yet sent are lost, except what it spooled
  (replayed by the local sink, as files of a gone process).
- When the pipe stays full (the sender is starved of CPU), the buffer grows up to
  ``max_buffer_bytes``; beyond it records go to the local sink (they may then
  reach the server before older ones still in the pipe).
- After ``fork`` the child starts a sender of its own on its first record and
  never resends the parent's.
- A signal handler that logs while the thread it interrupted was inside the
  link's locked work never waits on the lock its own thread holds: its records
  stay pending, and its flush and close return at once. The session's SIGTERM
  handler puts its work off instead (:mod:`aind_log_utils._reentry`): the
  interrupted work finishes, then the stop line and the close run, and nothing
  is lost.
"""

from __future__ import annotations

import os
import select
import threading
import time
from pathlib import Path
from typing import Any

from .._diagnostics import diagnose
from ._handover import CLOSED, LIVE, LOCAL, PACK_EVERY, UNSPAWNED, Handover
from ._lifecycle import manage, release
from ._sender import SenderProcess, merge_counters
from ._wire import records_of, split_frames

__all__ = [
    "PACK_EVERY",
    "WRITE_AT_BYTES",
    "WRITE_EVERY_S",
    "ProcessLink",
]

#: The caller writes the buffer to the pipe once it holds this much.
WRITE_AT_BYTES = 64 * 1024
#: The link's thread writes a smaller buffer after at most this long.
WRITE_EVERY_S = 0.1
#: How long a flush or close waits for the sender beyond the timeout it gave it.
_GRACE_S = 1.0
#: How long stats() waits for the sender's counters.
_STATS_WAIT_S = 2.0


class ProcessLink(Handover):
    """The caller's end of a sink's sender process; stands where the engine would.

    Args:
        name: the sink's name (thread names, diagnostics).
        spec: how to build the sink: ``(module, class name, args, kwargs)``; the
            sender (and the local fallback) builds it with ``delivery="thread"``.
        spool_dir: the sink's spool directory (for the record).
        flush_timeout_s: the default bound of :meth:`flush` and :meth:`close`.
        max_buffer_bytes: the most this side buffers while the pipe is full.
    """

    #: The program's side never spools items itself: its sender decides (see
    #: :attr:`DeliveryEngine.spilling <aind_log_utils._delivery.DeliveryEngine.spilling>`).
    spilling = False

    def __init__(
        self,
        name: str,
        spec: tuple[str, str, tuple[Any, ...], dict[str, Any]],
        *,
        spool_dir: Path,
        flush_timeout_s: float,
        max_buffer_bytes: int,
    ) -> None:
        self.name = name
        self.spool_dir = spool_dir
        self._spec = spec
        self._flush_timeout_s = flush_timeout_s
        self._max_buffer = max(max_buffer_bytes, WRITE_AT_BYTES)
        self._local_sink: Any = None
        self._final: dict[str, Any] = {}
        self._closed = False
        self._close_lock = threading.Lock()
        #: Changes whenever another process (a new sender, or this one) starts
        #: receiving: what the sink told the one before, this one does not know.
        self.generation = 0
        self._init_state()
        self._atexit_hook = manage(self)
        with self._lock:
            self._spawn()

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._request_lock = threading.Lock()
        self._buf = bytearray()
        self._write_at = WRITE_AT_BYTES
        self._ready = False
        self._state = UNSPAWNED
        self._sender: SenderProcess | None = None
        self._fd = -1
        self._tick = threading.Event()
        self._errors = 0
        self._dropped: dict[str, int] = {}
        #: Records handed over and not in the buffer yet, two pieces each (framed
        #: head, payload); the caller extends it without the lock (atomic).
        self.pending: list[bytes] = []
        #: True while :meth:`hand` may leave records in :attr:`pending` (the
        #: sender is live and the link's thread frames them within its tick).
        self.batching = False
        #: ``on`` for a thread inside the link's locked work (see :meth:`_enter`).
        self._inside = threading.local()

    def _close_pipe(self) -> None:
        """Close our end of the sender's stdin (it then sees the end of its input)."""
        self._fd = -1
        if self._sender is not None:
            self._sender.close_pipe()

    def _reinit_after_fork(self) -> None:
        # The parent's sender, pipe and buffered records are the parent's.
        self._close_lock = threading.Lock()
        if self._sender is not None:
            self._sender.forget()
        state, local = self._state, self._local_sink
        self._init_state()
        if state in (LOCAL, CLOSED):
            self._state = state  # the local sink's engine re-arms itself after fork
            self._local_sink = local

    # ---- the sender process --------------------------------------------------
    def _spawn(self) -> None:
        """Start the sender (under the lock); on failure, run the sink locally."""
        self.generation += 1
        try:
            sender = SenderProcess(self.name, self._sender_ready, self._sender_ended)
        except Exception as exc:
            diagnose(
                f"{self.name}:spawn", f"{self.name}: no sender process ({exc}); sending from here"
            )
            self._state = LOCAL
            self._ensure_local()
            return
        self._sender, self._fd = sender, sender.fd
        # Records stay here until the sender says it is ready: one that fails to
        # start then takes none of them with it (they go to the local sink).
        self._ready = False
        self._state = LIVE
        try:
            sender.start(self._spec)
        except OSError:
            self._lost_sender("the sender process did not start")
            return
        threading.Thread(
            target=self._write_loop, name=f"aind-log-{self.name}-link", daemon=True
        ).start()
        self.batching = True

    def _sender_ready(self) -> None:
        with self._lock:
            self._ready = True
            if self._state is LIVE and self._buf:
                self._write_some()

    def _sender_ended(self) -> None:
        with self._lock:
            if self._state is LIVE and not self._closed:
                self._lost_sender("the sender process ended")

    def _write_loop(self) -> None:
        """Write what the caller left in the buffer.

        At once when the pipe has room for a backlog, else every
        :data:`WRITE_EVERY_S` (so a quiet program's last records do not wait for
        the next 64 KiB). Before the sender is ready nothing is written, so an
        empty pipe's room is no reason to wake: the sender's start (a tenth of a
        second or more) is waited out on the tick, not in a loop that takes the
        GIL from the program thousands of times.
        """
        tick = self._tick
        while True:
            with self._lock:
                if self._state is not LIVE:
                    return
                if self.pending:
                    self._pack_pending()
                if self._buf:
                    self._write_some()
                backlog, fd = bool(self._buf) and self._ready, self._fd
            if backlog:  # the pipe was full: wake when the sender has read some
                try:
                    select.select([], [fd], [], WRITE_EVERY_S)
                except (OSError, ValueError):
                    tick.wait(WRITE_EVERY_S)
            elif tick.wait(WRITE_EVERY_S):
                return

    def _write_some(self) -> None:
        """Write what the pipe takes now (under the lock; never blocks)."""
        if not self._ready:
            self._write_at = len(self._buf) + WRITE_AT_BYTES
            return
        try:
            written = os.write(self._fd, self._buf)
        except BlockingIOError:
            written = 0
        except OSError:
            self._lost_sender("the pipe to the sender broke")
            return
        del self._buf[:written]
        # With the pipe full, the caller tries again only 64 KiB later: the link's
        # thread writes as soon as the sender has read.
        self._write_at = len(self._buf) + WRITE_AT_BYTES

    def _lost_sender(self, why: str) -> None:
        """The sender is gone (under the lock): what is buffered goes to a local sink."""
        diagnose(f"{self.name}:sender", f"{self.name}: {why}; sending from this process")
        self.generation += 1
        self._state = LOCAL
        self.batching = False
        self._tick.set()
        self._buffer_to_local()

    def _buffer_to_local(self) -> int:
        """Hand the buffered and pending records to the local sink (under the lock); how many."""
        buffered, self._buf = self._buf, bytearray()
        records = [payload for control, payload in split_frames(buffered)[0] if not control]
        records += records_of(self._take_pending())
        if records:
            self._ensure_local().host_records(records)
        return len(records)

    def _ensure_local(self) -> Any:
        if self._local_sink is None:
            from ._host import build_sink

            self._local_sink = build_sink(self._spec)
            if self._state is CLOSED:
                self._local_sink.close(0)  # after close: straight to the spool
        return self._local_sink

    def _count_error(self, where: str, exc: BaseException) -> None:
        self._errors += 1
        diagnose(f"{self.name}:{where}", f"{self.name}: {where} failed: {type(exc).__name__}")

    def _request(self, op: str, wait_s: float, **fields: Any) -> dict[str, Any] | None:
        """Send a control message behind every buffered record; wait for the answer."""
        deadline = time.monotonic() + wait_s
        with self._request_lock:
            with self._lock:
                sender = self._sender
                if self._state is not LIVE or sender is None:
                    return None
                self._pack_pending()  # the message goes behind every record
                rid, frame = sender.request(op, **fields)
                self._buf += frame
            if not self._drain(deadline):
                return None
            return sender.answer(rid, max(0.0, deadline - time.monotonic()))

    def _drain(self, deadline: float) -> bool:
        """Write the whole buffer, waiting for the pipe up to ``deadline``."""
        while True:
            with self._lock:
                if self._state is not LIVE:
                    return False
                if self._buf:
                    self._write_some()
                if not self._buf:
                    return True
                fd = self._fd
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                select.select([], [fd], [], min(remaining, 0.05))
            except (OSError, ValueError):
                return False

    def flush(self, timeout_s: float | None = None) -> bool:
        """Have the sender send everything it was given, within ``timeout_s``."""
        if not self._enter():
            return False  # in a signal handler: see _enter
        try:
            timeout = self._flush_timeout_s if timeout_s is None else max(0.0, float(timeout_s))
            local = self._local_sink
            if self._state is LIVE:
                reply = self._request("flush", timeout + _GRACE_S, timeout=timeout)
                ok = bool(reply and reply.get("ok"))
                return ok and (local is None or bool(local.flush(timeout)))
            return local is None or bool(local.flush(timeout))
        finally:
            self._leave()

    def counters(self) -> dict[str, Any]:
        """The sender's counters (asked for now), with this side's added."""
        reply = None
        if self._state is LIVE and self._enter():  # not in a signal handler (see _enter)
            try:
                reply = self._request("stats", _STATS_WAIT_S)
            finally:
                self._leave()
        if reply is not None:
            child = reply["counters"]
        else:
            child = self._final or self._last_counters()
        out = merge_counters(child, {"errors": self._errors, "dropped": dict(self._dropped)})
        out.setdefault("sent", 0)
        if self._local_sink is not None:
            out = merge_counters(out, self._local_sink.counters())
        return out

    def _last_counters(self) -> dict[str, Any]:
        return dict(self._sender.last) if self._sender is not None else {}

    def close(self, timeout_s: float | None = None) -> None:
        """Flush within ``timeout_s``, let the sender spool the rest and exit; idempotent.

        In a signal handler that interrupted this link's own work it returns at
        once, leaving the link open (see :meth:`_enter`).
        """
        if not self._enter():
            return
        try:
            self._close(timeout_s)
        finally:
            self._leave()

    def _close(self, timeout_s: float | None) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        timeout = self._flush_timeout_s if timeout_s is None else max(0.0, float(timeout_s))
        release(self._atexit_hook)
        if self._state is LIVE:
            deadline = time.monotonic() + timeout + _GRACE_S
            reply = self._request("close", timeout + _GRACE_S, timeout=timeout)
            if reply is not None:
                self._final = reply.get("counters") or {}
            with self._lock:
                self._state = CLOSED
                self.batching = False
                self._tick.set()
                self._close_pipe()
                # What the sender never took is spooled here, by a local sink
                # built closed.
                unsent = self._buffer_to_local()
                if unsent:
                    diagnose(
                        f"{self.name}:close",
                        f"{self.name}: the sender did not take {unsent} record(s) in "
                        "time; they are spooled for the next start",
                    )
            if self._sender is not None:
                self._sender.wait(deadline - time.monotonic())
        with self._lock:
            self._state = CLOSED
            self.batching = False
            self._pack_pending()  # records handed over as the link closed: to the local sink
        if self._local_sink is not None:
            self._local_sink.close(timeout)
