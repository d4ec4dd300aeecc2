"""A Grafana Loki push receiver on loopback, for tests: answers as a real Loki 3.4 does.

It speaks HTTP/1.1 with keep-alive, applies Loki's push rules (see
:mod:`aind_log_utils.testing._loki_rules`: content types, gzip, nanosecond string
timestamps, label rules, line size with partial acceptance, the out-of-order window,
the 429 rate limit, structured metadata, the 4 MiB message limit) and keeps what it
accepted for inspection. It can also be told to misbehave the way a real Loki does
while it starts, stops or is overloaded: answer 429/500, answer slowly, hold a
request with no answer, or go away and come back on the same port.

Example::

    with LokiReceiver() as loki:
        run_my_capsule(loki_url=loki.push_url)
        assert loki.wait_for(3, timeout_s=5)
        assert loki.lines()[-1] == "done"
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections import Counter, deque
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, NamedTuple, cast, get_args
from urllib.parse import urlsplit

from aind_log_utils.testing._loki_model import MIB
from aind_log_utils.testing._loki_rules import (
    LokiEntry,
    LokiLimits,
    LokiStore,
    ParsedStream,
    PushError,
    decode_body,
    format_labels,
    parse_push,
)

__all__ = ["LokiEntry", "LokiReceiver", "PushRecord", "ReceiverMode"]

PUSH_PATH = "/loki/api/v1/push"
READY_PATH = "/ready"
ReceiverMode = Literal["ok", "error500", "error429", "empty_ring", "slow", "hang"]
_MODES: tuple[str, ...] = get_args(ReceiverMode)
_EMPTY_RING = "empty ring"


class PushRecord(NamedTuple):
    """One push request, recorded once it was answered (or dropped unanswered).

    Attributes:
        status: the status answered, or None when the connection was dropped with
            no answer (``hang`` mode ended by :meth:`LokiReceiver.go_away` or ``stop``).
        tenant: the ``X-Scope-OrgID`` header, or None.
        authorization: the ``Authorization`` header, or None.
        content_type: the ``Content-Type`` header, or None.
        content_encoding: the ``Content-Encoding`` header, or None.
        body_bytes: the size of the body as sent (before decompression).
        headers: every request header (last value wins).
    """

    status: int | None
    tenant: str | None
    authorization: str | None
    content_type: str | None
    content_encoding: str | None
    body_bytes: int
    headers: dict[str, str]


class _Reply(NamedTuple):
    status: int
    body: str
    headers: tuple[tuple[str, str], ...] = ()


_NO_ANSWER = _Reply(0, "")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many clients connecting at once must not be refused
    # POSIX needs SO_REUSEADDR to listen again on a port whose old connections sit in
    # TIME_WAIT; on Windows it would let another socket share the port, so not there.
    allow_reuse_address = os.name != "nt"

    def __init__(self, port: int, receiver: LokiReceiver, generation: int) -> None:
        self.receiver = receiver
        self.generation = generation
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """Keep tests quiet: a client hanging up is normal, anything else is recorded."""
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, ConnectionError):
            self.receiver._record_error(exc)

    def drop_connections(self) -> None:
        """Shut every open connection, as a dying server does."""
        with self.connections_lock:
            connections = list(self.connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Loki"
    sys_version = ""

    @property
    def _server(self) -> _Server:
        return cast(_Server, self.server)

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
            starting = self._server.receiver.mode == "empty_ring"
            self._reply(_Reply(503, "Ingester not ready\n") if starting else _Reply(200, "ready\n"))
        elif path == PUSH_PATH:
            self._reply(_Reply(405, "405 method not allowed\n"))
        else:
            self._reply(_Reply(404, "404 page not found\n"))

    def do_POST(self) -> None:
        """Answer a push as Loki does; any other path is 404."""
        body = self._read_body()
        if body is None:
            return
        if urlsplit(self.path).path != PUSH_PATH:
            self._reply(_Reply(404, "404 page not found\n"))
            return
        reply = self._server.receiver._answer_push(self._server, self.headers, body)
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
            self._reply(_Reply(400, "bad request framing\n"))
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

    def _reply(self, reply: _Reply) -> None:
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


class LokiReceiver:
    """A protocol-faithful Loki push endpoint on loopback, with failure injection.

    The defaults are a fresh single-binary Loki 3.4 (``auth_enabled: false``).
    Everything is thread-safe; the inspection methods return copies.

    Args:
        port: the port to listen on; 0 picks a free one (kept across
            :meth:`go_away` / :meth:`come_back`).
        require_tenant: answer 401 "no org id" to a push without ``X-Scope-OrgID``.
        structured_metadata: False makes it refuse any structured metadata with 400,
            as a Loki without the v13 schema does.
        max_line_bytes: the longest line accepted (Loki's ``256KB`` = 262,144 bytes).
        max_label_names: labels per stream, ``service_name`` not counted.
        max_label_value_bytes: the longest label value.
        max_streams: active streams per tenant (over it: 429).
        max_metadata_bytes: structured metadata size per entry (names + values).
        max_metadata_entries: structured metadata pairs per entry.
        out_of_order_window_s: how far behind a stream's newest entry is accepted.
        reject_older_than_s: entries older than this are refused ("too old").
        future_grace_s: entries further ahead than this are refused ("too new").
        max_push_bytes: decoded push size over which Loki answers 500.
        rate_limit_bytes_s: tenant ingestion rate (line + metadata bytes) in a token
            bucket; Loki's 4 MB/s is ``4 * 2**20``. None turns rate limiting off.
        burst_bytes: the bucket size (Loki's 6 MB = ``6 * 2**20``); a push bigger
            than this is refused with 429 every time.
        discover_service_name: add ``service_name`` to streams without one, as Loki 3
            does (from ``service``, ``app``, ``job``..., else ``unknown_service``).
        slow_s: the delay of ``slow`` mode.

    Raises:
        ValueError: for a port outside 0..65535 or a negative size, count or delay.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        require_tenant: bool = False,
        structured_metadata: bool = True,
        max_line_bytes: int = 256 * 1024,
        max_label_names: int = 15,
        max_label_value_bytes: int = 2048,
        max_streams: int = 5000,
        max_metadata_bytes: int = 64 * 1024,
        max_metadata_entries: int = 128,
        out_of_order_window_s: float = 3600.0,
        reject_older_than_s: float = 7 * 24 * 3600.0,
        future_grace_s: float = 600.0,
        max_push_bytes: int = 4 * MIB,
        rate_limit_bytes_s: float | None = 4 * MIB,
        burst_bytes: int = 6 * MIB,
        discover_service_name: bool = True,
        slow_s: float = 1.0,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port!r}")
        if slow_s < 0:
            raise ValueError(f"slow_s must be >= 0, got {slow_s!r}")
        limits = LokiLimits(
            max_line_bytes=max_line_bytes, max_label_names=max_label_names,
            max_label_value_bytes=max_label_value_bytes, max_streams=max_streams,
            structured_metadata=structured_metadata, max_metadata_bytes=max_metadata_bytes,
            max_metadata_entries=max_metadata_entries,
            out_of_order_window_s=out_of_order_window_s,
            reject_older_than_s=reject_older_than_s, future_grace_s=future_grace_s,
            max_push_bytes=max_push_bytes, rate_limit_bytes_s=rate_limit_bytes_s,
            burst_bytes=burst_bytes, discover_service_name=discover_service_name,
        )  # fmt: skip
        self._store = LokiStore(limits)
        self._require_tenant = require_tenant
        self._port = port
        self._cond = threading.Condition()
        self._lifecycle = threading.Lock()  # one start/stop/go_away/come_back at a time
        self._mode: ReceiverMode = "ok"
        self._slow_s = slow_s
        self._failures: deque[_Reply] = deque()
        self._requests = 0
        self._status_counts: Counter[int] = Counter()
        self._pushes: list[PushRecord] = []
        self._errors: list[BaseException] = []
        self._generation = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._started = False
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> LokiReceiver:
        """Listen and serve on a named daemon thread; idempotent while running.

        Returns:
            The receiver itself.

        Raises:
            RuntimeError: after :meth:`stop` (make a new receiver instead).
        """
        with self._lifecycle:
            if self._stopped:
                raise RuntimeError("LokiReceiver was stopped; create a new one")
            if not self._started:
                self._listen(bind_timeout_s=0.0)
                self._started = True
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving, drop open connections and held requests; idempotent.

        Args:
            timeout_s: the longest wait for the server thread to end.
        """
        with self._lifecycle:
            self._stopped = True
            self._unlisten(timeout_s)

    def go_away(self, timeout_s: float = 5.0) -> None:
        """Stop listening, as a Loki shutting down: connections are then refused.

        Open connections are shut and held (``hang``) requests dropped unanswered.
        Stored entries are kept, as Loki keeps what it acknowledged.

        Args:
            timeout_s: the longest wait for the server thread to end.
        """
        with self._lifecycle:
            self._unlisten(timeout_s)

    def come_back(self, bind_timeout_s: float = 5.0) -> None:
        """Listen again on the same port after :meth:`go_away`; no-op if serving.

        Args:
            bind_timeout_s: how long to keep retrying while the port is still busy.

        Raises:
            RuntimeError: if never started, or stopped.
            OSError: if the port could not be bound within ``bind_timeout_s``.
        """
        with self._lifecycle:
            if not self._started or self._stopped:
                raise RuntimeError("come_back() needs a started, not stopped, receiver")
            if self._server is None:
                self._listen(bind_timeout_s)

    def __enter__(self) -> LokiReceiver:
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
        with self._cond:
            generation = self._generation
        while True:
            try:
                server = _Server(self._port, self, generation)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)  # the old socket is still being torn down: retry bind
        port = server.server_address[1]
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"loki-receiver-{port}",
            daemon=True,
        )
        with self._cond:
            self._port = int(port)
            self._server, self._thread = server, thread
        thread.start()

    def _unlisten(self, timeout_s: float) -> None:
        with self._cond:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            self._generation += 1  # releases held requests of the old server
            self._cond.notify_all()
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        server.drop_connections()
        thread.join(timeout_s)

    # -- addresses ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (0 before :meth:`start` when asked for any port)."""
        return self._port

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def push_url(self) -> str:
        """The push endpoint, ``http://127.0.0.1:PORT/loki/api/v1/push``."""
        return self.url + PUSH_PATH

    # -- failure injection -------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        retry_after: float | str | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next ``n`` pushes with ``status``, before any validation.

        Calls queue up: ``fail_next(1, 429); fail_next(1, 500)`` answers 429 then 500.

        Args:
            n: how many pushes to fail.
            status: the status to answer (400-599); nothing is stored.
            retry_after: a ``Retry-After`` header value (seconds or an HTTP date).
            body: the text answered; by default Loki's text for that status.

        Raises:
            ValueError: for a negative ``n`` or a status outside 400..599.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be in 400..599, got {status!r}")
        headers: tuple[tuple[str, str], ...] = ()
        if retry_after is not None:
            value = retry_after
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            headers = (("Retry-After", str(value)),)
        reply = _Reply(status, (body if body is not None else _default_body(status)), headers)
        with self._cond:
            self._failures.extend([reply] * n)

    def set_mode(self, mode: ReceiverMode, slow_s: float | None = None) -> None:
        """Change how pushes are answered from now on.

        ``ok``: normally. ``error500`` / ``error429``: always that status.
        ``empty_ring``: 500 "empty ring" (and 503 on ``/ready``), as Loki starting.
        ``slow``: normally, after ``slow_s``. ``hang``: hold each push with no answer
        until the mode changes (then it is answered under the new mode, and stored
        even if its client gave up meanwhile, as a slow Loki may) or the server goes
        away or stops (then the connection is dropped unanswered).

        Args:
            mode: one of the modes above.
            slow_s: the delay for ``slow`` mode (keeps the current one if None).

        Raises:
            ValueError: for an unknown mode or a negative ``slow_s``.
        """
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if slow_s is not None and slow_s < 0:
            raise ValueError(f"slow_s must be >= 0, got {slow_s!r}")
        with self._cond:
            self._mode = mode
            if slow_s is not None:
                self._slow_s = slow_s
            self._cond.notify_all()

    @property
    def mode(self) -> ReceiverMode:
        """The current answering mode."""
        return self._mode

    # -- inspection --------------------------------------------------------------

    def entries(self) -> list[LokiEntry]:
        """Every stored entry, in arrival order."""
        with self._cond:
            return list(self._store.entries)

    def lines(self) -> list[str]:
        """The lines of every stored entry, in arrival order."""
        with self._cond:
            return [entry.line for entry in self._store.entries]

    def streams(self) -> dict[str, list[LokiEntry]]:
        """Stored entries grouped by stream, keyed like Loki: ``{a="1", b="2"}``."""
        grouped: dict[str, list[LokiEntry]] = {}
        for entry in self.entries():
            grouped.setdefault(format_labels(entry.labels), []).append(entry)
        return grouped

    def pushes(self) -> list[PushRecord]:
        """Every push request answered or dropped so far, in order."""
        with self._cond:
            return list(self._pushes)

    @property
    def requests(self) -> int:
        """Push requests received (counted on arrival, before any answer)."""
        with self._cond:
            return self._requests

    @property
    def status_counts(self) -> Counter[int]:
        """How many pushes were answered with each status."""
        with self._cond:
            return Counter(self._status_counts)

    @property
    def rejected(self) -> Counter[str]:
        """Entries refused, by Loki's discard reason (``line_too_long``, ...)."""
        with self._cond:
            return Counter(self._store.rejected)

    @property
    def dropped(self) -> Counter[str]:
        """Entries accepted but not stored: ``empty_line``, ``duplicate``."""
        with self._cond:
            return Counter(self._store.dropped)

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions inside request handling (a receiver bug if any)."""
        with self._cond:
            return list(self._errors)

    def wait_for(self, count: int, timeout_s: float = 5.0) -> bool:
        """Block until at least ``count`` entries are stored.

        Args:
            count: the number of stored entries to wait for.
            timeout_s: the longest wait.

        Returns:
            True if reached, False on timeout.
        """
        with self._cond:
            return self._cond.wait_for(lambda: len(self._store.entries) >= count, timeout_s)

    def wait_for_requests(self, count: int, timeout_s: float = 5.0) -> bool:
        """Block until at least ``count`` push requests have arrived (answered or not).

        Args:
            count: the number of push requests to wait for.
            timeout_s: the longest wait.

        Returns:
            True if reached, False on timeout.
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._requests >= count, timeout_s)

    def clear(self) -> None:
        """Forget entries, streams, counters and records; refill the rate bucket.

        The mode and any pending :meth:`fail_next` failures are kept.
        """
        with self._cond:
            self._store.reset()
            self._requests = 0
            self._status_counts.clear()
            self._pushes.clear()
            self._errors.clear()

    # -- request handling (called on the server's threads) -----------------------

    def _record_error(self, exc: BaseException) -> None:
        with self._cond:
            self._errors.append(exc)

    def _answer_push(self, server: _Server, headers: Message, body: bytes) -> _Reply | None:
        tenant = headers.get("X-Scope-OrgID") or None
        streams: list[ParsedStream] = []
        refused: PushError | None = None
        data = b""
        try:  # the pure work happens outside the lock
            data = decode_body(body, headers.get("Content-Type"), headers.get("Content-Encoding"))
            streams = parse_push(data)
        except PushError as exc:
            refused = exc
        with self._cond:
            self._requests += 1
            self._cond.notify_all()
            reply = self._injected_reply(server)
            if reply is _NO_ANSWER:
                reply = None
            elif reply is None:
                if self._require_tenant and tenant is None:
                    reply = _Reply(401, "no org id\n")
                elif refused is not None:
                    reply = _Reply(refused.status, refused.message + "\n")
                else:
                    status, text = self._store.ingest(streams, tenant, len(data))
                    reply = _Reply(status, text + "\n" if text else "")
            self._pushes.append(
                PushRecord(
                    status=None if reply is None else reply.status,
                    tenant=tenant,
                    authorization=headers.get("Authorization"),
                    content_type=headers.get("Content-Type"),
                    content_encoding=headers.get("Content-Encoding"),
                    body_bytes=len(body),
                    headers=dict(headers.items()),
                )
            )
            if reply is not None:
                self._status_counts[reply.status] += 1
            self._cond.notify_all()
            return reply

    def _injected_reply(self, server: _Server) -> _Reply | None:
        """Apply hang, slow, queued failures and error modes; call with the lock held.

        Returns:
            The reply to send instead of processing, ``_NO_ANSWER`` when the server
            went away meanwhile, or None to process the push normally.
        """

        def gone() -> bool:
            return self._generation != server.generation

        self._cond.wait_for(lambda: gone() or self._mode != "hang")
        if self._mode == "slow" and not gone():
            self._cond.wait_for(gone, self._slow_s)
        if gone():
            return _NO_ANSWER
        if self._failures:
            return self._failures.popleft()
        if self._mode == "error500":
            return _Reply(500, "Internal Server Error\n")
        if self._mode == "empty_ring":
            return _Reply(500, _EMPTY_RING + "\n")
        if self._mode == "error429":
            return _Reply(429, _default_body(429))
        return None


def _default_body(status: int) -> str:
    if status == 500:
        return _EMPTY_RING + "\n"
    if status == 429:
        return (
            "Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while "
            "attempting to ingest lines, reduce log volume or contact your Loki "
            "administrator to see if the limit can be increased\n"
        )
    try:
        return HTTPStatus(status).phrase + "\n"
    except ValueError:
        return "error\n"
