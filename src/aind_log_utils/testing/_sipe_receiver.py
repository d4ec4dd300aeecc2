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
import socket
import threading
import time
from types import TracebackType
from typing import Any

from ._sipe_serve import POLL_S, Connection, ReceiverMode, SipeServing, reset, shut

__all__ = ["ReceiverMode", "SipeReceiver"]


class SipeReceiver(SipeServing):
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
        self._connections: set[Connection] = set()
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
                shut(conn.sock)
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
                    reset(conn.sock)

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
        sock.settimeout(POLL_S)
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
            sock.settimeout(POLL_S)
            conn = Connection(sock)
            conn.thread = threading.Thread(
                target=self._serve, args=(conn,), name=f"sipe-conn-{self._port}", daemon=True
            )
            with self._cond:
                self._connections.add(conn)
                self.accepted += 1
            conn.thread.start()

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
