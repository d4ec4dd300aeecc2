"""A Grafana Loki push receiver on loopback, for tests: answers as a real Loki 3.4 does.

It speaks HTTP/1.1 with keep-alive, applies Loki's push rules (see
:mod:`aind_log_utils.testing._loki_rules`: content types, gzip, nanosecond string
timestamps, label rules, line size with partial acceptance, the out-of-order window,
the 429 rate limit, structured metadata, the 4 MiB message limit) and keeps what it
accepted for inspection. It can also be told to misbehave the way a real Loki does
while it starts, stops or is overloaded: answer 429/500, answer slowly, hold a
request with no answer, or go away and come back on the same port.

This module is the receiver's API (:class:`LokiReceiver`: lifecycle, addresses,
failure injection, inspection). The HTTP layer is :mod:`._loki_http`, the answering
of a push :mod:`._loki_answer`, the rules :mod:`._loki_rules`; :class:`LokiEntry`,
:class:`PushRecord` and :data:`ReceiverMode` are re-exported from where they live.

Example::

    with LokiReceiver() as loki:
        run_my_capsule(loki_url=loki.push_url)
        assert loki.wait_for(3, timeout_s=5)
        assert loki.lines()[-1] == "done"
"""

from __future__ import annotations

import threading
from collections import Counter
from types import TracebackType

from ._loki_answer import MODES, PushAnswerer, ReceiverMode, failure_reply
from ._loki_http import PUSH_PATH, LokiHTTPServer, bind_server
from ._loki_model import MIB, LokiEntry, LokiLimits, PushRecord, format_labels
from ._loki_rules import LokiStore

__all__ = ["LokiEntry", "LokiReceiver", "PushRecord", "ReceiverMode"]


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
        # What the HTTP threads and this API share, under one lock (its cond).
        self._answerer = PushAnswerer(
            LokiStore(limits), require_tenant=require_tenant, slow_s=slow_s
        )
        self._port = port
        self._lifecycle = threading.Lock()  # one start/stop/go_away/come_back at a time
        self._server: LokiHTTPServer | None = None
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
        with self._answerer.cond:
            generation = self._answerer.generation
        server = bind_server(self._port, self._answerer, generation, bind_timeout_s)
        thread = server.serving_thread()
        with self._answerer.cond:
            self._port = server.port
            self._server, self._thread = server, thread
        thread.start()

    def _unlisten(self, timeout_s: float) -> None:
        with self._answerer.cond:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            self._answerer.generation += 1  # releases held requests of the old server
            self._answerer.cond.notify_all()
        if server is None or thread is None:
            return
        server.close_down(thread, timeout_s)

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
        reply = failure_reply(status, retry_after, body)
        with self._answerer.cond:
            self._answerer.failures.extend([reply] * n)

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
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if slow_s is not None and slow_s < 0:
            raise ValueError(f"slow_s must be >= 0, got {slow_s!r}")
        with self._answerer.cond:
            self._answerer.mode = mode
            if slow_s is not None:
                self._answerer.slow_s = slow_s
            self._answerer.cond.notify_all()

    @property
    def mode(self) -> ReceiverMode:
        """The current answering mode."""
        return self._answerer.mode

    # -- inspection --------------------------------------------------------------

    def entries(self) -> list[LokiEntry]:
        """Every stored entry, in arrival order."""
        with self._answerer.cond:
            return self._answerer.store.entries()

    def lines(self) -> list[str]:
        """The lines of every stored entry, in arrival order."""
        with self._answerer.cond:
            return self._answerer.store.lines

    def count(self) -> int:
        """How many entries are stored (cheaper than ``len(entries())``)."""
        with self._answerer.cond:
            return self._answerer.store.count

    def streams(self) -> dict[str, list[LokiEntry]]:
        """Stored entries grouped by stream, keyed like Loki: ``{a="1", b="2"}``."""
        grouped: dict[str, list[LokiEntry]] = {}
        for entry in self.entries():
            grouped.setdefault(format_labels(entry.labels), []).append(entry)
        return grouped

    def pushes(self) -> list[PushRecord]:
        """Every push request answered or dropped so far, in order."""
        with self._answerer.cond:
            return list(self._answerer.pushes)

    @property
    def requests(self) -> int:
        """Push requests received (counted on arrival, before any answer)."""
        with self._answerer.cond:
            return self._answerer.requests

    @property
    def status_counts(self) -> Counter[int]:
        """How many pushes were answered with each status."""
        with self._answerer.cond:
            return Counter(self._answerer.status_counts)

    @property
    def rejected(self) -> Counter[str]:
        """Entries refused, by Loki's discard reason (``line_too_long``, ...)."""
        with self._answerer.cond:
            return Counter(self._answerer.store.rejected)

    @property
    def dropped(self) -> Counter[str]:
        """Entries accepted but not stored: ``empty_line``, ``duplicate``."""
        with self._answerer.cond:
            return Counter(self._answerer.store.dropped)

    @property
    def errors(self) -> list[BaseException]:
        """Unexpected exceptions inside request handling (a receiver bug if any)."""
        with self._answerer.cond:
            return list(self._answerer.errors)

    def wait_for(self, count: int, timeout_s: float = 5.0) -> bool:
        """Block until at least ``count`` entries are stored.

        Args:
            count: the number of stored entries to wait for.
            timeout_s: the longest wait.

        Returns:
            True if reached, False on timeout.
        """
        with self._answerer.cond:
            return self._answerer.cond.wait_for(
                lambda: self._answerer.store.count >= count, timeout_s
            )

    def wait_for_requests(self, count: int, timeout_s: float = 5.0) -> bool:
        """Block until at least ``count`` push requests have arrived (answered or not).

        Args:
            count: the number of push requests to wait for.
            timeout_s: the longest wait.

        Returns:
            True if reached, False on timeout.
        """
        with self._answerer.cond:
            return self._answerer.cond.wait_for(lambda: self._answerer.requests >= count, timeout_s)

    def clear(self) -> None:
        """Forget entries, streams, counters and records; refill the rate bucket.

        The mode and any pending :meth:`fail_next` failures are kept.
        """
        with self._answerer.cond:
            self._answerer.store.reset()
            self._answerer.requests = 0
            self._answerer.status_counts.clear()
            self._answerer.pushes.clear()
            self._answerer.errors.clear()
