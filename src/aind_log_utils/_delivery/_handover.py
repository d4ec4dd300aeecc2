"""The caller's side of a process link: handing records over without blocking.

A sink in process mode hands each record to its :class:`~._link.ProcessLink`
with :meth:`Handover.hand`, already framed: its wire header and what the sink
packed (one ``struct`` call of the sink's), then the line. That is one list
extend, no lock. Every :data:`PACK_EVERY` records the caller joins the waiting
pieces into the link's buffer under one lock, and writes the buffer once it
holds :data:`~._link.WRITE_AT_BYTES`; the link's thread does the same with what
waits on its tick. Anything but a live sender goes through :meth:`Handover.submit`,
which also takes a record that must go at once (a frame definition) behind every
record handed over before it.
"""

from __future__ import annotations

import threading
from typing import Any

from .. import _reentry
from ._wire import HEADER, records_of

__all__ = ["CLOSED", "LIVE", "LOCAL", "PACK_EVERY", "UNSPAWNED", "Handover"]

#: The caller joins the records it handed over into the buffer once this many
#: wait: one lock and one join for all of them, where a lock and three appends a
#: record cost the caller about 1 us more each.
PACK_EVERY = 64
#: The pieces of that many records in :attr:`Handover.pending` (two a record).
_PACK_PIECES = 2 * PACK_EVERY
#: A link's states: sending through a live sender; not started yet (a forked
#: child before its first record); sending from this process; closed.
LIVE, UNSPAWNED, LOCAL, CLOSED = "live", "unspawned", "local", "closed"
_pack_header = HEADER.pack


class Handover:
    """The caller's methods of :class:`~._link.ProcessLink`, a mixin.

    The link owns the state declared here (set in its ``_init_state``) and the
    methods stubbed here.
    """

    #: Records handed over and not in the buffer yet: two pieces each, the framed
    #: head (wire header and prefix) and the payload.
    pending: list[bytes]
    #: True while :meth:`hand` may leave records in :attr:`pending`.
    batching: bool
    _inside: threading.local
    _lock: threading.Lock
    _state: str
    _buf: bytearray
    _write_at: int
    _max_buffer: int
    _dropped: dict[str, int]

    def _spawn(self) -> None:
        raise NotImplementedError

    def _write_some(self) -> None:
        raise NotImplementedError

    def _ensure_local(self) -> Any:
        raise NotImplementedError

    def _count_error(self, where: str, exc: BaseException) -> None:
        raise NotImplementedError

    def hand(self, head: bytes, payload: bytes) -> None:
        """Hand one framed record (``head + payload``) to the sender; never blocks, never raises.

        The usual record costs the caller one list extend (atomic: the two pieces
        go in together): every :data:`PACK_EVERY` records it joins them all into
        the buffer (and writes the buffer once it holds 64 KiB); the link's thread
        does so with what waits at least every :data:`~._link.WRITE_EVERY_S`.
        Anything but a live sender (not spawned yet in a forked child, sending
        locally, closed) goes through :meth:`submit`.

        Args:
            head: the record's wire header (:data:`~._wire.HEADER`: the length of
                all that follows it, head and payload) and what the sink packed in
                front of the payload, made in one ``struct`` call with the header.
            payload: the record's JSON line (bytes).
        """
        if self.batching:
            pending = self.pending
            pending += (head, payload)
            # Batching stops (sender lost, close) before what waits is taken: a record
            # appended as it stopped, after that take, is framed here and now.
            if len(pending) >= _PACK_PIECES or not self.batching:
                self.pack_pending()
        else:
            self._submit_framed(head, payload)

    def _enter(self) -> bool:
        """Mark this thread inside the link's locked work; False if it already is.

        A signal handler that logs runs on the thread it interrupted. Interrupted
        in here, that thread holds the lock, which the handler would wait for
        forever, or is halfway through changing the buffer: in a handler, records
        are left pending and flush and close return at once. The session's SIGTERM
        handler does not get that far: it sees the thread :func:`~.._reentry.busy`
        and runs when it has left (:func:`~.._reentry.when_left`), so the stop line
        and what was pending are sent.
        """
        inside = self._inside
        if getattr(inside, "on", False):
            return False
        _reentry.enter()
        inside.on = True
        return True

    def _leave(self) -> None:
        self._inside.on = False
        _reentry.leave()  # may run a signal handler's deferred work (SIGTERM: never returns)

    def pack_pending(self) -> None:
        """Frame the records handed over into the buffer; write it when it is full."""
        if not self._enter():
            return  # in a signal handler: they stay pending
        try:
            with self._lock:
                self._pack_pending()
                if self._state is LIVE and len(self._buf) >= self._write_at:
                    # A full pipe is left to the link's thread, which waits for
                    # room: the caller retries only every 64 KiB more.
                    self._write_some()
        except Exception as exc:
            self._count_error("submit", exc)
        finally:
            self._leave()

    def _take_pending(self) -> list[bytes]:
        """Take the pieces of the records handed over so far, in order (under the lock).

        The same list object stays in place: a caller that appends while this
        runs appends behind what is taken, and is taken next time. A record's two
        pieces go in with one extend, so what is taken holds whole records.
        """
        pending = self.pending
        count = len(pending)
        taken = pending[:count]
        del pending[:count]
        return taken

    def _pack_pending(self) -> None:
        """Frame the pending records into the buffer, in order (under the lock).

        Not live (a straggler handed over as the sender was lost or the link
        closed) or over the buffer's bound: they go to the local sink instead.
        """
        items = self._take_pending()
        if not items:
            return
        if self._state is LIVE and len(self._buf) < self._max_buffer:
            self._buf += b"".join(items)
            return
        records = records_of(items)
        if self._state is LIVE:
            self._count_sent_locally(len(records))
        self._ensure_local().host_records(records)

    def submit(self, payload: bytes, prefix: bytes = b"") -> None:
        """Hand one record (``prefix + payload``) over at once; never blocks, never raises.

        Behind every record handed over before it (:meth:`hand`): a frame
        definition the next records name, a forked child's first record, a
        record while the sender is not live.
        """
        self._submit_framed(_pack_header(len(prefix) + len(payload)) + prefix, payload)

    def _submit_framed(self, head: bytes, payload: bytes) -> None:
        """:meth:`submit` for a record framed as :meth:`hand` takes it."""
        if not self._enter():
            self.pending += (head, payload)  # in a signal handler: see _enter
            return
        try:
            with self._lock:
                if self._state is UNSPAWNED:
                    self._spawn()  # the first record of a forked child
                self.pending += (head, payload)
                self._pack_pending()  # behind what was handed over; local if not live
                if self._state is LIVE and len(self._buf) >= self._write_at:
                    self._write_some()  # as in pack_pending
        except Exception as exc:
            self._count_error("submit", exc)
        finally:
            self._leave()

    def _count_sent_locally(self, count: int) -> None:
        """Count records the full buffer sent to the local sink (under the lock)."""
        reason = "buffer_full_sent_locally"
        self._dropped[reason] = self._dropped.get(reason, 0) + count
