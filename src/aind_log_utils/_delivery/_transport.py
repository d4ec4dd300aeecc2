"""What a network transport promises the delivery engine, and what it answers.

A transport (Loki over HTTP, SIPE over TCP, CloudWatch over boto3) does ONE thing:
try to hand a batch of already-encoded items to its server within a timeout and
say what happened. Everything else (queueing, batching, retry, backoff, spooling,
splitting, counting) is the engine's job, so every sink behaves the same way.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .._shapes import scrub_shapes

__all__ = ["DeliveryStats", "SendOutcome", "SendResult", "Transport", "describe_error"]

#: Reasons are counted in a dict; keep them short so a chatty server cannot grow it.
_MAX_REASON_CHARS = 100


class SendOutcome(enum.Enum):
    """What happened to one batch; see :class:`SendResult`."""

    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"
    SPLIT = "split"


def _short(reason: str) -> str:
    return reason if len(reason) <= _MAX_REASON_CHARS else reason[: _MAX_REASON_CHARS - 3] + "..."


@dataclass(frozen=True)
class SendResult:
    """The answer of :meth:`Transport.send` for one batch.

    Build it with one of the class methods rather than by hand:

    - :meth:`ok`: the server took every item.
    - :meth:`retry`: nothing (or nothing certain) was taken; the engine sends the
      same batch again after a backoff, or after ``retry_after_s`` when the server
      said so (HTTP ``Retry-After``), whichever is longer.
    - :meth:`reject`: ``rejected`` items were refused for good (e.g. a Loki 400 with
      partial acceptance: the others WERE stored); the batch is never resent and the
      count is added to ``stats().rejected[reason]``.
    - :meth:`too_large`: the batch is too big for the server (Loki 4 MiB gRPC limit,
      a 429 that can never pass because it exceeds the burst); the engine splits it in
      halves and sends each half, in order. A batch of one item cannot be split and
      is counted as rejected with this reason.

    Attributes:
        outcome: which of the four cases this is.
        reason: a short, secret-free, low-cardinality description (used as a
            counter key for rejections and in diagnostics).
        rejected: for ``REJECTED``, how many items were refused (clamped to the
            batch size by the engine); 0 otherwise.
        retry_after_s: for ``RETRY``, the server's requested delay, if any.
    """

    outcome: SendOutcome
    reason: str = ""
    rejected: int = 0
    retry_after_s: float | None = None

    @classmethod
    def ok(cls) -> SendResult:
        """All items were delivered.

        Returns:
            A ``DELIVERED`` result.
        """
        return _OK

    @classmethod
    def retry(
        cls, reason: str = "retryable failure", retry_after_s: float | None = None
    ) -> SendResult:
        """Nothing certain was delivered; send the same batch again later.

        Args:
            reason: why (already free of secrets).
            retry_after_s: the delay the server asked for, in seconds, if any. It
                comes from the server, so a bad value (negative, NaN, not a number)
                is ignored rather than raised; the engine caps it at
                ``RETRY_AFTER_CAP_S``.

        Returns:
            A ``RETRY`` result.
        """
        after: float | None = None
        if retry_after_s is not None:
            try:
                after = float(retry_after_s)
            except (TypeError, ValueError):
                after = None
            if after is not None and not after >= 0.0:  # negative or NaN
                after = None
        return cls(SendOutcome.RETRY, _short(reason), 0, after)

    @classmethod
    def reject(cls, rejected: int, reason: str) -> SendResult:
        """``rejected`` items were refused for good; the rest were delivered.

        Args:
            rejected: how many items of the batch the server refused (>= 1).
            reason: why, as a short stable string (it becomes a counter key).

        Returns:
            A ``REJECTED`` result.

        Raises:
            ValueError: ``rejected`` is less than 1.
        """
        if isinstance(rejected, bool) or not isinstance(rejected, int) or rejected < 1:
            raise ValueError(f"rejected must be an int >= 1, got {rejected!r}")
        return cls(SendOutcome.REJECTED, _short(reason), rejected, None)

    @classmethod
    def too_large(cls, reason: str = "batch too large") -> SendResult:
        """The batch is too big for the server; the engine splits it and retries.

        Args:
            reason: why (counted as a rejection if a single item is too large).

        Returns:
            A ``SPLIT`` result.
        """
        return cls(SendOutcome.SPLIT, _short(reason), 0, None)


_OK = SendResult(SendOutcome.DELIVERED)


@runtime_checkable
class Transport(Protocol):
    """Sends one batch of opaque encoded items to a server.

    ``send`` is called only from the engine's worker thread, one batch at a time,
    with the items in submission order. It must give up within ``timeout_s`` (a hung
    server must not hang the worker: pass it to the socket/HTTP timeout) and should
    return a :class:`SendResult`; an exception it raises is counted as an error and
    treated as :meth:`SendResult.retry`. Its messages must not contain secrets; the
    engine also sanitises exception text with :func:`describe_error`.

    A transport may also define ``max_batch_bytes`` and/or ``max_batch_records``
    (``int`` attributes): the engine then never builds a larger batch (it reads them
    once, when it is built). The engine never closes the transport; whoever built
    both closes the transport after :meth:`DeliveryEngine.close`.
    """

    def send(self, batch: list[bytes], timeout_s: float) -> SendResult:
        """Try to deliver ``batch`` within ``timeout_s`` seconds.

        Args:
            batch: the encoded items, oldest first (never empty).
            timeout_s: the time the attempt may take.

        Returns:
            What happened to the batch.
        """
        ...


@dataclass(frozen=True)
class DeliveryStats:
    """A consistent snapshot of a :class:`DeliveryEngine`'s counters.

    Attributes:
        sent: items the transport took (delivered; includes replayed ones).
        retried: failed attempts that were (or will be) retried.
        spooled: items written to the on-disk spool (overflow, close, after close).
        replayed: items read back from a spool file and taken by the transport.
        rejected: reason -> items refused for good by the server (never retried).
        dropped: reason -> items lost on purpose (``queue_full`` with the spool off,
            ``spool_full``, ``spool_error``, ``close_timeout``, ``closed``,
            ``invalid_item``).
        queued: items in memory now (queue plus the batch being sent).
        errors: exceptions caught (raised by the transport or inside the engine).
    """

    sent: int = 0
    retried: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    queued: int = 0
    errors: int = 0


# userinfo in a URL (scheme://user:pass@host)
_USERINFO = re.compile(r"(?<=://)[^/\s@'\"]+@")
# Authorization-like header values, in dict reprs, header dumps and kwargs
_AUTH_VALUE = re.compile(
    r"(?i)((?:proxy-)?authorization|x-api-key|api[_-]?key|x-scope-orgid-token)"
    r"(['\"]?\s*[:=]\s*['\"]?)[^'\",}\r\n]+"
)
_SCHEME_TOKEN = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{6,}")
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:token|access_token|password|passwd|secret|signature|key|api_key|apikey)=)[^&\s'\"]+"
)
_MAX_MESSAGE_CHARS = 300


def describe_error(exc: BaseException) -> str:
    """Describe an exception for a diagnostic line, without secrets.

    Keeps the exception type and a sanitised, shortened message: URL userinfo
    (``user:pass@``), ``Authorization``/API-key values, bearer/basic tokens and
    secret-looking query parameters are replaced by ``***``, and the credentials
    with a shape of their own (JWTs, AWS and vendors' keys, PEM blocks) as in log
    lines (:func:`~.._shapes.scrub_shapes`).

    Args:
        exc: the exception (typically raised by a transport).

    Returns:
        ``"TypeName: sanitised message"`` (or just ``"TypeName"``).
    """
    try:
        text = str(exc)
    except Exception:
        text = ""
    text = _USERINFO.sub("***@", text)
    text = _AUTH_VALUE.sub(r"\1\2***", text)
    text = _SCHEME_TOKEN.sub(r"\1 ***", text)
    text = _QUERY_SECRET.sub(r"\1***", text)
    text = scrub_shapes(text)  # and every credential with a shape of its own (JWT, keys)
    text = " ".join(text.split())
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[: _MAX_MESSAGE_CHARS - 3] + "..."
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
