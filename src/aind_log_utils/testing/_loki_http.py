"""The Loki receiver's HTTP layer: a threaded HTTP/1.1 server on loopback that frames requests.

It accepts keep-alive connections, reads each body exactly (Content-Length or
chunked), answers ``/ready`` and 404/405 for other paths the way Loki does, and hands
every push to an :class:`Answerer` (the receiver's :class:`~._loki_answer.PushAnswerer`),
which decides the :class:`Reply`. It knows nothing of Loki's push rules. It can also
drop every open connection at once, as a dying server does.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Protocol, cast
from urllib.parse import urlsplit

__all__ = [
    "NO_ANSWER",
    "PUSH_PATH",
    "READY_PATH",
    "Answerer",
    "LokiHTTPServer",
    "Reply",
    "bind_server",
]

PUSH_PATH = "/loki/api/v1/push"
READY_PATH = "/ready"


class Reply(NamedTuple):
    """An HTTP answer: the status, a plain-text body and any extra headers."""

    status: int
    body: str
    headers: tuple[tuple[str, str], ...] = ()


#: Drop the connection with no answer at all.
NO_ANSWER = Reply(0, "")


class Answerer(Protocol):
    """What answers the pushes a :class:`LokiHTTPServer` receives."""

    @property
    def mode(self) -> str:
        """The answering mode; ``empty_ring`` makes ``/ready`` answer 503."""
        ...

    def answer(self, generation: int, headers: Message, body: bytes) -> Reply | None:
        """Answer one push received by the server of ``generation``; None: no answer."""
        ...

    def record_error(self, exc: BaseException) -> None:
        """Keep an unexpected exception raised while handling a request."""
        ...


class LokiHTTPServer(ThreadingHTTPServer):
    """The listening socket and its request threads, on ``127.0.0.1``.

    Args:
        port: the port (0: any free one).
        answerer: what answers the pushes.
        generation: the receiver's listening generation when this server was made.
    """

    daemon_threads = True
    request_queue_size = 128  # many clients connecting at once must not be refused
    # POSIX needs SO_REUSEADDR to listen again on a port whose old connections sit in
    # TIME_WAIT; on Windows it would let another socket share the port, so not there.
    allow_reuse_address = os.name != "nt"

    def __init__(self, port: int, answerer: Answerer, generation: int) -> None:
        self.answerer = answerer
        self.generation = generation
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """Keep tests quiet: a client hanging up is normal, anything else is recorded."""
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, ConnectionError):
            self.answerer.record_error(exc)

    def drop_connections(self) -> None:
        """Shut every open connection, as a dying server does."""
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def port(self) -> int:
        """The port bound."""
        return int(self.server_address[1])

    def serving_thread(self) -> threading.Thread:
        """Return a named daemon thread (not started) that serves until :meth:`close_down`."""
        return threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"loki-receiver-{self.port}",
            daemon=True,
        )

    def close_down(self, thread: threading.Thread, timeout_s: float) -> None:
        """Stop serving, close the socket and every open connection, join ``thread``.

        Args:
            thread: the thread of :meth:`serving_thread`.
            timeout_s: the longest wait for it to end.
        """
        self.shutdown()
        self.server_close()
        self.drop_connections()
        thread.join(timeout_s)


def bind_server(
    port: int, answerer: Answerer, generation: int, bind_timeout_s: float
) -> LokiHTTPServer:
    """Bind a :class:`LokiHTTPServer`, retrying while the port is still being released.

    Args:
        port: the port (0: any free one).
        answerer: what answers the pushes.
        generation: the receiver's listening generation.
        bind_timeout_s: how long to keep retrying.

    Returns:
        The bound server (not serving yet).

    Raises:
        OSError: the port could not be bound within ``bind_timeout_s``.
    """
    deadline = time.monotonic() + bind_timeout_s
    while True:
        try:
            return LokiHTTPServer(port, answerer, generation)
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)  # the old socket is still being torn down: retry bind


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Loki"
    sys_version = ""

    @property
    def _server(self) -> LokiHTTPServer:
        return cast(LokiHTTPServer, self.server)

    def setup(self) -> None:
        super().setup()
        with self._server.connections_lock:
            self._server.connections.add(self.connection)

    def finish(self) -> None:
        with self._server.connections_lock:
            self._server.connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Say nothing: the receiver runs inside test suites."""

    def do_GET(self) -> None:
        """Answer ``/ready`` (503 while the ring is empty); 405 on the push path."""
        if self._read_body() is None:
            return
        path = urlsplit(self.path).path
        if path == READY_PATH:
            starting = self._server.answerer.mode == "empty_ring"
            self._reply(Reply(503, "Ingester not ready\n") if starting else Reply(200, "ready\n"))
        elif path == PUSH_PATH:
            self._reply(Reply(405, "405 method not allowed\n"))
        else:
            self._reply(Reply(404, "404 page not found\n"))

    def do_POST(self) -> None:
        """Answer a push as Loki does; any other path is 404."""
        body = self._read_body()
        if body is None:
            return
        if urlsplit(self.path).path != PUSH_PATH:
            self._reply(Reply(404, "404 page not found\n"))
            return
        reply = self._server.answerer.answer(self._server.generation, self.headers, body)
        if reply is None:  # dropped with no answer, as a Loki being killed does
            self.close_connection = True
        else:
            self._reply(reply)

    def _read_body(self) -> bytes | None:
        """Read exactly the body (Content-Length or chunked); None when framing is bad."""
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                return self._read_chunked()
            length = int(self.headers.get("Content-Length", "0"))
            if length < 0:
                raise ValueError(length)
            body = self.rfile.read(length)
            if len(body) < length:
                raise ValueError("body shorter than Content-Length")
        except ValueError:
            self.close_connection = True
            self._reply(Reply(400, "bad request framing\n"))
            return None
        return body

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline(1024).split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(65536).strip():  # trailers
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(8)

    def _reply(self, reply: Reply) -> None:
        self.send_response(reply.status)
        data = reply.body.encode("utf-8")
        # RFC 9110: a 204 carries no body and no Content-Length (Go omits both too).
        if reply.status != HTTPStatus.NO_CONTENT:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if reply.status != HTTPStatus.NO_CONTENT:
            self.wfile.write(data)
