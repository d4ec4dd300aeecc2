"""Answering one push, under the receiver's lock: injected faults first, then Loki's rules.

:class:`PushAnswerer` holds the state that the receiver's API and its HTTP threads
share, guarded by one condition: the answering mode and the queued failures that
:meth:`~._loki_receiver.LokiReceiver.fail_next` and
:meth:`~._loki_receiver.LokiReceiver.set_mode` set, the :class:`~._loki_rules.LokiStore`,
and the record of every push. A push is decoded outside the lock; then, under it,
``hang`` and ``slow`` hold it, a queued failure or an error mode answers it, or the
store's rules do; and it is recorded as a :class:`~._loki_model.PushRecord`.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from email.message import Message
from http import HTTPStatus
from typing import Literal, get_args

from ._loki_decode import decode_body, parse_push
from ._loki_http import NO_ANSWER, Reply
from ._loki_model import ParsedStream, PushError, PushRecord
from ._loki_rules import LokiStore

__all__ = ["MODES", "PushAnswerer", "ReceiverMode", "default_body", "failure_reply"]

ReceiverMode = Literal["ok", "error500", "error429", "empty_ring", "slow", "hang"]
MODES: tuple[str, ...] = get_args(ReceiverMode)
_EMPTY_RING = "empty ring"


def default_body(status: int) -> str:
    """Return the text Loki answers with ``status`` (500: "empty ring", 429: its rate limit).

    Args:
        status: an HTTP status.

    Returns:
        The body, ending with a newline.
    """
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


def failure_reply(status: int, retry_after: float | str | None, body: str | None) -> Reply:
    """Build the reply of an injected failure; see :meth:`~._loki_receiver.LokiReceiver.fail_next`.

    Args:
        status: the status.
        retry_after: a ``Retry-After`` header value (a whole float is written as an int).
        body: the text answered; by default Loki's text for that status.

    Returns:
        The reply.
    """
    headers: tuple[tuple[str, str], ...] = ()
    if retry_after is not None:
        value = retry_after
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        headers = (("Retry-After", str(value)),)
    return Reply(status, (body if body is not None else default_body(status)), headers)


class PushAnswerer:
    """The receiver's shared state, and how it answers a push.

    Every attribute is guarded by :attr:`cond`, which is notified whenever a push
    arrives or is answered (and by the receiver when the mode or the listening
    generation changes).

    Args:
        store: Loki's rules and what they stored.
        require_tenant: answer 401 "no org id" to a push without ``X-Scope-OrgID``.
        slow_s: the delay of ``slow`` mode.
    """

    def __init__(self, store: LokiStore, *, require_tenant: bool, slow_s: float) -> None:
        self.cond = threading.Condition()
        self.store = store
        self.require_tenant = require_tenant
        self.mode: ReceiverMode = "ok"
        self.slow_s = slow_s
        self.failures: deque[Reply] = deque()
        self.requests = 0
        self.status_counts: Counter[int] = Counter()
        self.pushes: list[PushRecord] = []
        self.errors: list[BaseException] = []
        #: Bumped each time the receiver stops listening: held requests of an older
        #: server are then dropped unanswered.
        self.generation = 0

    def record_error(self, exc: BaseException) -> None:
        """Keep an unexpected exception raised while handling a request.

        Args:
            exc: the exception.
        """
        with self.cond:
            self.errors.append(exc)

    def answer(self, generation: int, headers: Message, body: bytes) -> Reply | None:
        """Answer one push and record it.

        Args:
            generation: the generation of the server that received it.
            headers: the request headers.
            body: the request body as received.

        Returns:
            The reply, or None to drop the connection unanswered (the server went
            away while the push was held).
        """
        tenant = headers.get("X-Scope-OrgID") or None
        streams: list[ParsedStream] = []
        refused: PushError | None = None
        data = b""
        try:  # the pure work happens outside the lock
            data = decode_body(body, headers.get("Content-Type"), headers.get("Content-Encoding"))
            streams = parse_push(data)
        except PushError as exc:
            refused = exc
        with self.cond:
            self.requests += 1
            self.cond.notify_all()
            reply = self._injected_reply(generation)
            if reply is NO_ANSWER:
                reply = None
            elif reply is None:
                if self.require_tenant and tenant is None:
                    reply = Reply(401, "no org id\n")
                elif refused is not None:
                    reply = Reply(refused.status, refused.message + "\n")
                else:
                    status, text = self.store.ingest(streams, tenant, len(data))
                    reply = Reply(status, text + "\n" if text else "")
            self.pushes.append(
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
                self.status_counts[reply.status] += 1
            self.cond.notify_all()
            return reply

    def _injected_reply(self, generation: int) -> Reply | None:
        """Apply hang, slow, queued failures and error modes; call with the lock held.

        Returns:
            The reply to send instead of processing, ``NO_ANSWER`` when the server
            went away meanwhile, or None to process the push normally.
        """

        def gone() -> bool:
            return self.generation != generation

        self.cond.wait_for(lambda: gone() or self.mode != "hang")
        if self.mode == "slow" and not gone():
            self.cond.wait_for(gone, self.slow_s)
        if gone():
            return NO_ANSWER
        if self.failures:
            return self.failures.popleft()
        if self.mode == "error500":
            return Reply(500, "Internal Server Error\n")
        if self.mode == "empty_ring":
            return Reply(500, _EMPTY_RING + "\n")
        if self.mode == "error429":
            return Reply(429, default_body(429))
        return None
