"""A SIPE log server on loopback, of the logging cookbook's kind, for tests.

It reads what :class:`logging.handlers.SocketHandler` writes (a 4-byte
big-endian length, then a pickle of a dict) and rebuilds each record with
:func:`logging.makeLogRecord`, as the SIPE server does. Unlike the cookbook's
receiver its unpickler refuses to load ANY class, so only dicts, lists, tuples,
strings, numbers, booleans and None can arrive; a frame that tries to load a
class is counted in :attr:`SipeReceiver.refused` and dropped.

It can be told to go away and come back on the same port (as a server
restarting), and to read slowly or not at all (as a server under load)::

    with SipeReceiver() as server:
        handler = SipeHandler(server.url)
        ...
        assert server.wait_for(10, timeout_s=5)
        records = server.records()
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import struct
import threading
import time
from types import TracebackType
from typing import Any, Literal

__all__ = ["ReceiverMode", "SipeReceiver"]

#: ``ok``: read as fast as frames come; ``slow``: wait ``slow_s`` after each frame;
#: ``pause``: read nothing (the client's buffers fill up) until the mode changes.
ReceiverMode = Literal["ok", "slow", "pause"]
#: Frames longer than this are taken as garbage and end the connection.
MAX_FRAME_BYTES = 64 * 1024 * 1024
_POLL_S = 0.05
#: How much one read takes from a connection at most.
_READ_BYTES = 1024 * 1024
_STR_ONLY = frozenset({str})


class _RefusedClass(pickle.UnpicklingError):
    """The frame tried to load a class."""


class _PlainUnpickler(pickle.Unpickler):
    """Loads plain data only: every class lookup is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise _RefusedClass(f"refused to load {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise _RefusedClass("refused a persistent id")


class _Body:
    """One frame's pickle as a file the C unpickler can peek into.

    With ``peek`` the unpickler takes the whole body in one call and reads
    opcodes from memory, as :func:`pickle.loads` does; without it, it would call
    ``read`` for every opcode.
    """

    __slots__ = ("data", "taken")

    def __init__(self) -> None:
        self.data: bytes | bytearray = b""
        self.taken = 0

    def peek(self, size: int = 0) -> bytes | bytearray:
        return self.data[self.taken :] if self.taken else self.data

    def read(self, size: int = -1) -> bytes | bytearray:
        start = self.taken
        end = len(self.data) if size < 0 else min(len(self.data), start + size)
        self.taken = end
        return self.data[start:end]

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = self.read(len(view))
        view[: len(chunk)] = chunk
        return len(chunk)

    def readline(self, size: int = -1) -> bytes | bytearray:
        end = self.data.find(b"\n", self.taken)
        return self.read(-1 if end < 0 else end + 1 - self.taken)


class _FrameReader:
    """Unpickles a connection's frames with one unpickler, as long as they are sound.

    Building an unpickler and a file for every frame cost the receiver twice
    what the unpickling did. One unpickler serves frame after frame while each
    pickle ends exactly at its frame's end (its memo emptied in between, so no
    frame can refer to another's objects); after any other outcome the next
    frame gets a new one, since this one may still hold the frame's rest.
    """

    def __init__(self) -> None:
        self._body = _Body()
        self._unpickler: _PlainUnpickler | None = None

    def load(self, data: bytes | bytearray) -> Any:
        """The object ``data`` (one frame's pickle) holds.

        Raises:
            _RefusedClass: the pickle tried to load a class.
            Exception: any error of a broken pickle.
        """
        body = self._body
        unpickler = self._unpickler
        if unpickler is None:
            unpickler = _PlainUnpickler(body)  # type: ignore[arg-type]  # a file enough for it
        else:
            unpickler.memo.clear()
        body.data, body.taken = data, 0
        self._unpickler = None
        obj = unpickler.load()
        if body.taken == len(data):
            self._unpickler = unpickler
        return obj


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


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.draining = False  # the server is going away: read until the client hangs up
        self.drain_until = 0.0
        self.crashed = False  # reset: read nothing more, close with RST
        self.thread: threading.Thread | None = None


class SipeReceiver:
    """A loopback TCP server that stores the records SIPE clients send it.

    Thread-safe; the inspection methods return copies.

    Args:
        port: the port to listen on; 0 picks a free one (kept across
            :meth:`go_away` / :meth:`come_back`).
        slow_s: the delay after each frame in ``slow`` mode.
        rcvbuf_bytes: the receive buffer of accepted connections (small values
            make a ``pause`` fill the client's buffers quickly); None: the OS's.
        drain_timeout_s: after :meth:`go_away`, how long a connection is still read
            while waiting for the client to hang up.
        keep_frames: also keep each frame's raw pickle (see :meth:`frames`).
        keep_records: keep every record received (default). False: records are
            still unpickled, checked and counted, then let go, as a server that
            writes them out does; :meth:`dicts` and what builds on it then raise.
            For load tests: holding a few hundred thousand records costs the
            receiver a third more CPU per record than reading them.

    Raises:
        ValueError: a port outside 0..65535 or a negative delay.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        slow_s: float = 0.01,
        rcvbuf_bytes: int | None = None,
        drain_timeout_s: float = 5.0,
        keep_frames: bool = False,
        keep_records: bool = True,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port!r}")
        if slow_s < 0 or drain_timeout_s < 0:
            raise ValueError("slow_s and drain_timeout_s must be >= 0")
        self._port = port
        self._slow_s = slow_s
        self._rcvbuf = rcvbuf_bytes
        self._drain_timeout_s = drain_timeout_s
        self._cond = threading.Condition()
        self._lifecycle = threading.Lock()
        self._mode: ReceiverMode = "ok"
        self._dicts: list[dict[str, Any]] = []
        self._keep_frames = keep_frames
        self._keep_records = keep_records
        self._count = 0
        self._frames: list[bytes] = []
        self._connections: set[_Connection] = set()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._stopped = threading.Event()
        self._started = False
        self.refused = 0
        """Frames that tried to load a class (refused, not stored)."""
        self.invalid = 0
        """Frames that were not a pickled dict with string keys, or were cut short."""
        self.accepted = 0
        """Connections accepted so far."""
        self.errors: list[BaseException] = []
        """Unexpected exceptions in the server's threads."""

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> SipeReceiver:
        """Listen and serve on daemon threads; idempotent while running.

        Returns:
            The receiver itself.

        Raises:
            RuntimeError: after :meth:`stop`.
        """
        with self._lifecycle:
            if self._stopped.is_set():
                raise RuntimeError("SipeReceiver was stopped; create a new one")
            if not self._started:
                self._listen(0.0)
                self._started = True
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop listening and close every connection at once; idempotent."""
        with self._lifecycle:
            self._stopped.set()
            self._unlisten(timeout_s)
            with self._cond:
                connections = list(self._connections)
                self._cond.notify_all()
            for conn in connections:
                _shut(conn.sock)
            for conn in connections:
                if conn.thread is not None:
                    conn.thread.join(timeout_s)

    def go_away(self, *, graceful: bool = True, timeout_s: float = 5.0) -> None:
        """Stop listening, as a server shutting down: new connections are refused.

        Args:
            graceful: True: each open connection is half-closed (the client sees
                the end of it) and still read until the client hangs up, so nothing
                the client wrote before noticing is lost. False: connections are
                reset at once, as a crashing server's are; what they held unread is
                lost, as it is with the real server.
            timeout_s: the longest wait for the listening thread to end.
        """
        with self._lifecycle:
            self._unlisten(timeout_s)
            with self._cond:
                connections = list(self._connections)
                for conn in connections:
                    conn.draining = True
                    conn.drain_until = time.monotonic() + self._drain_timeout_s
                self._cond.notify_all()
            for conn in connections:
                if graceful:
                    try:
                        conn.sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                else:
                    conn.crashed = True
                    _reset(conn.sock)

    def come_back(self, bind_timeout_s: float = 5.0) -> None:
        """Listen again on the same port after :meth:`go_away`; no-op if listening.

        Raises:
            RuntimeError: never started, or stopped.
            OSError: the port could not be bound within ``bind_timeout_s``.
        """
        with self._lifecycle:
            if not self._started or self._stopped.is_set():
                raise RuntimeError("come_back() needs a started, not stopped, receiver")
            if self._listener is None:
                self._listen(bind_timeout_s)

    def __enter__(self) -> SipeReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _listen(self, bind_timeout_s: float) -> None:
        deadline = time.monotonic() + bind_timeout_s
        while True:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # POSIX needs SO_REUSEADDR to listen again while old connections sit in
            # TIME_WAIT; on Windows it would let another socket share the port.
            if os.name != "nt":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self._rcvbuf is not None:  # inherited by accepted connections
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf)
            try:
                sock.bind(("127.0.0.1", self._port))
                sock.listen(128)
                break
            except OSError:
                sock.close()
                if time.monotonic() >= deadline:
                    raise
                self._stopped.wait(0.05)  # the old socket is still being torn down
        self._port = int(sock.getsockname()[1])
        sock.settimeout(_POLL_S)
        self._listener = sock
        self._listening.set()
        thread = threading.Thread(
            target=self._accept_loop, args=(sock,), name=f"sipe-receiver-{self._port}", daemon=True
        )
        self._accept_thread = thread
        thread.start()

    def _unlisten(self, timeout_s: float) -> None:
        sock, thread = self._listener, self._accept_thread
        self._listener = self._accept_thread = None
        self._listening.clear()
        if sock is not None:
            sock.close()
        if thread is not None:
            thread.join(timeout_s)

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._listening.is_set() and self._listener is listener:
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by go_away()/stop()
            sock.settimeout(_POLL_S)
            conn = _Connection(sock)
            conn.thread = threading.Thread(
                target=self._serve, args=(conn,), name=f"sipe-conn-{self._port}", daemon=True
            )
            with self._cond:
                self._connections.add(conn)
                self.accepted += 1
            conn.thread.start()

    # -- one connection ------------------------------------------------------------
    def _serve(self, conn: _Connection) -> None:
        # Read in big chunks and cut frames out of a buffer: a receiver that read
        # each length and each body with a call of its own would be the bottleneck
        # of any benchmark.
        buffer = bytearray()
        # What one read's frames gave, stored (and waiters woken) once per read: a
        # notify per frame made the receiver slower than the clients it measures.
        batch = _Batch()
        reader = _FrameReader()
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
                _shut(conn.sock)

    def _recv(self, conn: _Connection) -> bytes | None:
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

    def _throttle(self, conn: _Connection) -> bool:
        """Wait as the mode says before the next frame; False once stopped or reset."""
        if self._mode == "ok" and not conn.crashed:  # the common case: no lock
            return not self._stopped.is_set()
        with self._cond:
            while not self._stopped.is_set() and not conn.crashed:
                if self._mode == "pause" and not conn.draining:
                    self._cond.wait(_POLL_S)
                    continue
                if self._mode == "slow":
                    self._cond.wait(self._slow_s)
                return True
            return False

    def _decode(self, body: bytearray, batch: _Batch, reader: _FrameReader) -> None:
        """Unpickle one frame into ``batch`` (or count it refused or invalid)."""
        if self._keep_frames:
            batch.frames.append(bytes(body))
        try:
            obj = reader.load(body)
        except _RefusedClass:
            batch.refused += 1
            return
        except Exception:
            batch.invalid += 1
            return
        if not isinstance(obj, dict) or not _STR_ONLY.issuperset(map(type, obj)):
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

    # -- control and inspection ------------------------------------------------------
    @property
    def port(self) -> int:
        """The port listened on (0 before :meth:`start` when any port was asked for)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, as the standard writes the server's address."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def address(self) -> tuple[str, int]:
        """``("127.0.0.1", PORT)``, for ``logging.handlers.SocketHandler``."""
        return "127.0.0.1", self._port

    @property
    def listening(self) -> bool:
        """True while new connections are accepted."""
        return self._listening.is_set()

    def set_mode(self, mode: ReceiverMode, slow_s: float | None = None) -> None:
        """Read normally (``ok``), slowly (``slow``), or not at all (``pause``).

        Args:
            mode: the new mode.
            slow_s: the delay after each frame in ``slow`` mode (default: unchanged).

        Raises:
            ValueError: an unknown mode or a negative delay.
        """
        if mode not in ("ok", "slow", "pause"):
            raise ValueError(f"mode must be 'ok', 'slow' or 'pause', got {mode!r}")
        if slow_s is not None and slow_s < 0:
            raise ValueError(f"slow_s must be >= 0, got {slow_s!r}")
        with self._cond:
            self._mode = mode
            if slow_s is not None:
                self._slow_s = slow_s
            self._cond.notify_all()

    def dicts(self) -> list[dict[str, Any]]:
        """The dicts received, in arrival order (copies).

        Raises:
            RuntimeError: the receiver was built with ``keep_records=False``.
        """
        if not self._keep_records:
            raise RuntimeError("this receiver counts records without keeping them (keep_records)")
        with self._cond:
            return [dict(d) for d in self._dicts]

    def frames(self) -> list[bytes]:
        """The raw pickles of every frame read, refused ones included (``keep_frames``)."""
        with self._cond:
            return list(self._frames)

    def records(self) -> list[logging.LogRecord]:
        """The records rebuilt with :func:`logging.makeLogRecord`, in arrival order."""
        return [logging.makeLogRecord(d) for d in self.dicts()]

    def messages(self) -> list[str]:
        """``getMessage()`` of every record received, in arrival order."""
        return [record.getMessage() for record in self.records()]

    def count(self) -> int:
        """How many records arrived."""
        with self._cond:
            return self._count

    def wait_for(self, count: int, timeout_s: float = 5.0) -> bool:
        """Wait until at least ``count`` records arrived.

        Returns:
            True if they did within ``timeout_s``.
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._count >= count, timeout_s)

    def clear(self) -> None:
        """Forget the records received and reset the counters."""
        with self._cond:
            self._dicts.clear()
            self._count = 0
            self._frames.clear()
            self.refused = self.invalid = 0


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _reset(sock: socket.socket) -> None:
    """Close with a reset, as a crashing server's kernel does."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RD)  # wakes the connection's reader
    except OSError:
        pass
