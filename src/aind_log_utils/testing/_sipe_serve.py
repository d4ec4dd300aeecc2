"""One connection of the SIPE receiver: frames cut out of big reads, unpickled, stored.

:class:`SipeServing` is a base of :class:`~._sipe_receiver.SipeReceiver` (its
lifecycle and inspection are there): each accepted connection is served on a
thread of its own by :meth:`SipeServing._serve`, which reads in big chunks, cuts
frames out of a buffer, unpickles each with a :class:`~._sipe_decode.FrameReader`
and stores what one read gave at once, as the mode (``ok``, ``slow``, ``pause``)
allows.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any, Literal

from .._sipe._transport import close_socket as shut
from ._sipe_decode import FrameReader, RefusedClass

__all__ = [
    "MAX_FRAME_BYTES",
    "POLL_S",
    "Connection",
    "ReceiverMode",
    "SipeServing",
    "reset",
    "shut",
]

#: ``ok``: read as fast as frames come; ``slow``: wait ``slow_s`` after each frame;
#: ``pause``: read nothing (the client's buffers fill up) until the mode changes.
ReceiverMode = Literal["ok", "slow", "pause"]
#: Frames longer than this are taken as garbage and end the connection.
MAX_FRAME_BYTES = 64 * 1024 * 1024
#: How often a blocked accept or read looks whether the receiver stopped.
POLL_S = 0.05
#: How much one read takes from a connection at most.
_READ_BYTES = 1024 * 1024


class _Batch:
    """What the frames of one read gave, until it is stored."""

    def __init__(self) -> None:
        self.dicts: list[dict[str, Any]] = []
        self.frames: list[bytes] = []
        self.counted = 0  # records read and let go (keep_records=False)
        self.refused = 0
        self.invalid = 0

    def clear(self) -> None:
        self.dicts, self.frames, self.refused, self.invalid = [], [], 0, 0
        self.counted = 0


class Connection:
    """An accepted connection and how the receiver is to end it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.draining = False  # the server is going away: read until the client hangs up
        self.drain_until = 0.0
        self.crashed = False  # reset: read nothing more, close with RST
        self.thread: threading.Thread | None = None


class SipeServing:
    """The connection-serving methods of :class:`~._sipe_receiver.SipeReceiver`, a mixin.

    The receiver owns the state declared here (set in its constructor).
    """

    _cond: threading.Condition
    _stopped: threading.Event
    _mode: ReceiverMode
    _slow_s: float
    _keep_frames: bool
    _keep_records: bool
    _count: int
    _dicts: list[dict[str, Any]]
    _frames: list[bytes]
    _connections: set[Connection]
    refused: int
    invalid: int
    errors: list[BaseException]

    def _serve(self, conn: Connection) -> None:
        # Read in big chunks and cut frames out of a buffer: a receiver that read
        # each length and each body with a call of its own would be the bottleneck
        # of any benchmark.
        buffer = bytearray()
        # What one read's frames gave, stored (and waiters woken) once per read: a
        # notify per frame made the receiver slower than the clients it measures.
        batch = _Batch()
        reader = FrameReader()
        stopped = self._stopped.is_set
        try:
            while True:
                pos = 0
                while len(buffer) - pos >= 4:
                    (size,) = struct.unpack_from(">L", buffer, pos)
                    if size > MAX_FRAME_BYTES:
                        batch.invalid += 1
                        return
                    if len(buffer) - pos - 4 < size:
                        break
                    if self._mode != "ok" or conn.crashed:
                        self._flush(batch)  # what came before waits for nothing
                        if not self._throttle(conn):
                            return
                    elif stopped():
                        return
                    self._decode(buffer[pos + 4 : pos + 4 + size], batch, reader)
                    pos += 4 + size
                del buffer[:pos]
                self._flush(batch)
                chunk = self._recv(conn)
                if chunk is None:
                    if buffer:
                        batch.invalid += 1  # the client hung up inside a frame
                    return
                buffer += chunk
        except Exception as exc:
            with self._cond:
                self.errors.append(exc)
        finally:
            self._flush(batch)
            with self._cond:
                self._connections.discard(conn)
                self._cond.notify_all()
            if conn.crashed:
                conn.sock.close()  # SO_LINGER 0: a reset, unread data discarded
            else:
                shut(conn.sock)

    def _recv(self, conn: Connection) -> bytes | None:
        """The next bytes, or None at the end of the connection (or of the drain)."""
        while True:
            if self._stopped.is_set() or conn.crashed:
                return None
            if conn.draining and time.monotonic() > conn.drain_until:
                return None
            try:
                chunk = conn.sock.recv(_READ_BYTES)
            except TimeoutError:
                continue
            except OSError:
                return None
            return chunk or None

    def _throttle(self, conn: Connection) -> bool:
        """Wait as the mode says before the next frame; False once stopped or reset."""
        if self._mode == "ok" and not conn.crashed:  # the common case: no lock
            return not self._stopped.is_set()
        with self._cond:
            while not self._stopped.is_set() and not conn.crashed:
                if self._mode == "pause" and not conn.draining:
                    self._cond.wait(POLL_S)
                    continue
                if self._mode == "slow":
                    self._cond.wait(self._slow_s)
                return True
            return False

    def _decode(self, body: bytearray, batch: _Batch, reader: FrameReader) -> None:
        """Unpickle one frame into ``batch`` (or count it refused or invalid)."""
        if self._keep_frames:
            batch.frames.append(bytes(body))
        try:
            obj = reader.load(body)
        except RefusedClass:
            batch.refused += 1
            return
        except Exception:
            batch.invalid += 1
            return
        if type(obj) is not dict:  # the unpickler makes no subclass: it loads no class
            batch.invalid += 1
            return
        try:
            # Every key a string (a join takes nothing else): 0.45 us for 49 keys,
            # where checking each key's type took 0.75 us of the receiver's ~7.
            "".join(obj)
        except TypeError:
            batch.invalid += 1
            return
        if self._keep_records:
            batch.dicts.append(obj)
        else:
            batch.counted += 1

    def _flush(self, batch: _Batch) -> None:
        """Store what ``batch`` holds (frames decoded before any reset was noticed)."""
        if not (batch.dicts or batch.frames or batch.counted or batch.refused or batch.invalid):
            return
        with self._cond:
            self._count += len(batch.dicts) + batch.counted
            self._dicts.extend(batch.dicts)
            self._frames.extend(batch.frames)
            self.refused += batch.refused
            self.invalid += batch.invalid
            self._cond.notify_all()
        batch.clear()


def reset(sock: socket.socket) -> None:
    """Close with a reset, as a crashing server's kernel does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RD)  # wakes the connection's reader
    except OSError:
        pass
