"""SIPE's wire: frames written to one persistent TCP connection.

The protocol has no acknowledgement: a frame is as delivered as TCP can say
once the kernel has taken all of it on a live connection. What this transport
adds to ``sendall``:

- It checks the connection before writing: the server never writes, so a
  readable socket means the server closed it (or reset it), and the batch goes
  to a new connection instead of into a dead one.
- It never leaves half a frame behind on a connection it keeps: a write cut
  short by the timeout keeps the rest of the frame and finishes it first on the
  next attempt (the logging cookbook's receiver spins forever on a connection
  that ends inside a frame). Frames that went out whole are remembered, and
  skipped when the engine sends the same batch again.
- On an error the connection is dropped and the batch is retried whole on a new
  one: delivery is at least once.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable

from .._delivery import SendResult, describe_error
from ._encode import PACKED_MARK

__all__ = ["SipeTransport", "close_socket"]

#: Frames are joined into writes of about this size.
_CHUNK_BYTES = 4 * 1024 * 1024
#: POSIX: one blocking send() bounded by SO_SNDTIMEO writes a whole chunk in ONE
#: system call. With Python's own timeouts every partial write is a poll() and a
#: send(), and each of them hands the GIL back to a busy logging thread, which
#: costs the worker up to the switch interval (5 ms) each time. Windows keeps
#: Python's timeouts: there, a timed-out send leaves the socket "indeterminate".
_KERNEL_TIMEOUT = os.name != "nt" and hasattr(socket, "SO_SNDTIMEO")


class SipeTransport:
    """Send batches of SIPE frames to ``host:port`` over one TCP connection.

    Args:
        host: the server's host name or address.
        port: its port.
        max_batch_bytes: the engine never builds a larger batch.
    """

    def __init__(self, host: str, port: int, *, max_batch_bytes: int = 1024 * 1024) -> None:
        self.host = host
        self.port = port
        self.max_batch_bytes = max_batch_bytes
        #: Turns a spooled packed record into its frame (set by the sink); None: frames only.
        self.expand: Callable[[bytes], bytes | None] | None = None
        self._lock = threading.Lock()  # guards the fields below against close()
        self._sock: socket.socket | None = None
        self._pid = os.getpid()
        # The frame a timed-out write cut, and how much of it went out.
        self._partial: bytes | None = None
        self._partial_sent = 0
        # Frames of the last batch that went out whole before it failed.
        self._written: list[bytes] = []
        self._closed = False
        self._busy = False
        #: Connections opened (the first one included).
        self.connects = 0

    def __repr__(self) -> str:
        return f"<SipeTransport {self.host}:{self.port}>"

    # -- the engine's side ---------------------------------------------------------
    def send(self, batch: list[bytes], timeout_s: float) -> SendResult:
        """Write ``batch`` within ``timeout_s``; see the module's docstring.

        Args:
            batch: the frames, oldest first.
            timeout_s: the time the attempt may take (connect included).

        Returns:
            ``ok`` when every frame was written, else ``retry``.
        """
        deadline = time.monotonic() + timeout_s
        expand = self.expand
        if expand is not None and any(item[:2] == PACKED_MARK for item in batch):
            # Records spooled before they were encoded: frame them now, in order
            # (the same bytes each time, so a retried batch is recognised).
            frames = (expand(item) if item[:2] == PACKED_MARK else item for item in batch)
            batch = [frame for frame in frames if frame is not None]
        if os.getpid() != self._pid:  # forked: the connection is the parent's
            self._forget_parent()
        with self._lock:
            if self._closed:
                return SendResult.retry("transport closed")
            self._busy = True
        try:
            return self._send(batch, deadline)
        finally:
            with self._lock:
                self._busy = False

    def _send(self, batch: list[bytes], deadline: float) -> SendResult:
        sock = self._sock
        if sock is not None and not self._alive(sock):
            self._drop()  # the server closed it: resend the last failed batch whole
            sock = None
        if sock is None:
            try:
                sock = self._connect(deadline)
            except OSError as exc:
                return SendResult.retry(f"connect: {describe_error(exc)}")
        if self._partial is not None:
            failure = self._finish_partial(sock, deadline)
            if failure is not None:
                return failure
        skip = self._already_written(batch)
        written = 0
        pending = batch[skip:]
        try:
            for start, stop in _chunks(pending):
                data = pending[start] if stop == start + 1 else b"".join(pending[start:stop])
                done = self._write(sock, memoryview(data), deadline)
                if done < len(data):
                    written = start + self._cut(pending, start, stop, done)
                    self._written = batch[: skip + written]
                    return SendResult.retry("server slow: write timed out")
                written = stop
        except OSError as exc:
            # What the kernel still held for a broken connection is lost: resend all.
            self._drop()
            return SendResult.retry(f"send: {describe_error(exc)}")
        self._written = []
        return SendResult.ok()

    def _already_written(self, batch: list[bytes]) -> int:
        """How many leading frames of ``batch`` went out in a failed attempt."""
        written, self._written = self._written, []
        if not written or len(written) > len(batch):
            return 0
        for old, new in zip(written, batch, strict=False):
            if old is not new and old != new:
                return 0
        return len(written)

    def _cut(self, frames: list[bytes], start: int, stop: int, done: int) -> int:
        """After ``done`` bytes of frames[start:stop]: count whole frames, keep the cut one."""
        whole = 0
        for frame in frames[start:stop]:
            if done >= len(frame):
                done -= len(frame)
                whole += 1
                continue
            if done > 0:  # finished before anything else goes on this connection
                self._partial, self._partial_sent = frame, done
                whole += 1
            break
        return whole

    def _finish_partial(self, sock: socket.socket, deadline: float) -> SendResult | None:
        frame = self._partial
        assert frame is not None
        try:
            done = self._write(sock, memoryview(frame)[self._partial_sent :], deadline)
        except OSError as exc:
            self._drop()
            return SendResult.retry(f"send: {describe_error(exc)}")
        self._partial_sent += done
        if self._partial_sent < len(frame):
            return SendResult.retry("server slow: write timed out")
        self._partial, self._partial_sent = None, 0
        return None

    @staticmethod
    def _write(sock: socket.socket, data: memoryview, deadline: float) -> int:
        """Write as much of ``data`` as the deadline allows; return the bytes written."""
        done = 0
        while done < len(data):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                if _KERNEL_TIMEOUT:
                    sock.settimeout(None)
                    seconds = int(remaining)
                    micros = int((remaining - seconds) * 1e6)
                    if not seconds and not micros:
                        micros = 1  # 0 would mean "block forever"
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("@ll", seconds, micros)
                    )
                else:
                    sock.settimeout(remaining)
                done += sock.send(data[done:])
            except (TimeoutError, BlockingIOError):
                break
        return done

    @staticmethod
    def _alive(sock: socket.socket) -> bool:
        """False when the server closed or reset the connection (it never writes)."""
        try:
            if hasattr(select, "poll"):  # any descriptor number, unlike select()
                poller = select.poll()
                poller.register(sock, select.POLLIN)
                readable = bool(poller.poll(0))
            else:
                readable = bool(select.select([sock], [], [], 0)[0])
            if not readable:
                return True
            sock.settimeout(0)
            return bool(sock.recv(4096))  # b"": closed; data: unexpected but alive
        except (BlockingIOError, InterruptedError):
            return True
        except (OSError, ValueError):
            return False

    def _connect(self, deadline: float) -> socket.socket:
        timeout = max(0.001, deadline - time.monotonic())
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        except OSError:
            pass
        with self._lock:
            if self._closed:
                sock.close()
                raise ConnectionAbortedError("transport closed")
            self._sock = sock
        self.connects += 1
        return sock

    def _drop(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            close_socket(sock)
        # Nothing written on a connection that broke is known to have arrived (the
        # cut frame certainly did not): the next attempt sends the batch whole.
        self._partial, self._partial_sent, self._written = None, 0, []

    def _forget_parent(self) -> None:
        # Closing our copy of the descriptor leaves the parent's connection open
        # (no shutdown); its cut frame and its written frames are not ours.
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        self._lock = threading.Lock()
        self._partial, self._partial_sent, self._written = None, 0, []
        self._pid = os.getpid()

    # -- the owner's side ------------------------------------------------------------
    def close(self, timeout_s: float = 1.0) -> None:
        """Close the connection; idempotent.

        A frame a timed-out write cut is finished first (within ``timeout_s``),
        unless a send is still running on the worker thread: the connection is
        then shut, which ends that send.

        Args:
            timeout_s: the bound on finishing a cut frame.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sock, busy = self._sock, self._busy
            if busy or os.getpid() != self._pid:
                self._sock = None
        if sock is None:
            return
        if busy or os.getpid() != self._pid:
            if os.getpid() == self._pid:
                close_socket(sock)
            return
        if self._partial is not None and self._alive(sock):
            try:
                self._finish_partial(sock, time.monotonic() + timeout_s)
            except Exception:
                pass
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            close_socket(sock)


def _chunks(frames: list[bytes]) -> list[tuple[int, int]]:
    """Split ``frames`` into runs of about ``_CHUNK_BYTES`` (start, stop) indexes."""
    runs: list[tuple[int, int]] = []
    start, size = 0, 0
    for index, frame in enumerate(frames):
        if size and size + len(frame) > _CHUNK_BYTES:
            runs.append((start, index))
            start, size = index, 0
        size += len(frame)
    if start < len(frames):
        runs.append((start, len(frames)))
    return runs


def close_socket(sock: socket.socket) -> None:
    """Shut both ways and close; never raises."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
