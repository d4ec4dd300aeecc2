"""The data Loki's push rules and the receiver pass around and keep, and how Loki measures it.

Types: :class:`LokiLimits` (the per-tenant limits), :class:`ParsedStream` and
:class:`PushValue` (a push as parsed), :class:`PushError` (a push refused whole),
:class:`LokiEntry` (a stored entry) and :class:`PushRecord` (a push request as the
receiver saw it). Helpers: :func:`format_labels` (a stream's key, as Loki prints it),
:func:`format_ts`, :func:`nbytes` and :func:`metadata_bytes`.

Sizes are counted like Loki counts them: UTF-8 bytes, and Loki's "KB"/"MB" are
binary (``256KB`` is 262,144 bytes, as its "Max entry size '262144'" errors show;
the ingestion rate of 4 MB/s is ``4 * 2**20`` bytes/s).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain
from typing import NamedTuple

__all__ = [
    "MIB",
    "NS_PER_S",
    "LokiEntry",
    "LokiLimits",
    "ParsedStream",
    "PushError",
    "PushRecord",
    "PushValue",
    "format_labels",
    "format_ts",
    "metadata_bytes",
    "nbytes",
]

MIB = 1024 * 1024
NS_PER_S = 1_000_000_000


class PushError(Exception):
    """A push refused as a whole, with the status and text Loki answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LokiEntry(NamedTuple):
    """One stored log entry.

    Attributes:
        labels: the stream's labels as Loki stores them (with ``service_name``
            added when the push had none and discovery is on).
        ts_ns: the timestamp in Unix nanoseconds.
        line: the log line.
        metadata: the structured metadata, or None when the entry had none.
        tenant: the request's ``X-Scope-OrgID``, or None when it had none.
    """

    labels: dict[str, str]
    ts_ns: int
    line: str
    metadata: dict[str, str] | None
    tenant: str | None


class PushValue(NamedTuple):
    """One entry of a parsed push: its timestamp, line and structured metadata."""

    ts_ns: int
    line: str
    metadata: dict[str, str] | None


class ParsedStream(NamedTuple):
    """One stream of a parsed push: its labels and its ``(ts_ns, line, metadata)`` values."""

    labels: dict[str, str]
    values: list[PushValue]


@dataclass(frozen=True)
class LokiLimits:
    """Loki's per-tenant limits; the defaults are Loki 3.4's.

    A size or count limit of 0 (or None for the rate) turns that check off.
    """

    max_line_bytes: int = 256 * 1024
    max_label_names: int = 15
    max_label_name_bytes: int = 1024
    max_label_value_bytes: int = 2048
    max_streams: int = 5000
    structured_metadata: bool = True
    max_metadata_bytes: int = 64 * 1024
    max_metadata_entries: int = 128
    reject_older_than_s: float = 7 * 24 * 3600.0
    future_grace_s: float = 600.0
    out_of_order_window_s: float = 3600.0
    max_push_bytes: int = 4 * MIB
    rate_limit_bytes_s: float | None = 4 * MIB
    burst_bytes: int = 6 * MIB
    discover_service_name: bool = True

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or value is None:
                continue
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")


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


def format_labels(labels: dict[str, str]) -> str:
    """Render labels as Loki does in messages and queries: ``{a="1", b="2"}``.

    Args:
        labels: label names to values.

    Returns:
        The sorted label set, values quoted.
    """
    inner = ", ".join(f"{k}={json.dumps(labels[k], ensure_ascii=False)}" for k in sorted(labels))
    return "{" + inner + "}"


def format_ts(ts_ns: int) -> str:
    """Render a timestamp as Loki's messages do: RFC 3339 in UTC.

    Args:
        ts_ns: Unix nanoseconds.

    Returns:
        The time, or the number itself when it is out of the calendar's range.
    """
    try:
        moment = datetime.fromtimestamp(ts_ns / NS_PER_S, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return str(ts_ns)
    return moment.isoformat().replace("+00:00", "Z")


def nbytes(text: str) -> int:
    """Return the size of ``text`` in UTF-8, as Loki counts it (lone surrogates too).

    Args:
        text: a line, a label or a metadata name or value.

    Returns:
        The byte count.
    """
    if text.isascii():  # the common case, without making a copy
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def metadata_bytes(metadata: dict[str, str] | None) -> int:
    """Return the size of an entry's structured metadata: its names plus its values.

    Args:
        metadata: the structured metadata, or None.

    Returns:
        The byte count (0 for none).
    """
    if not metadata:
        return 0
    return nbytes("".join(chain.from_iterable(metadata.items())))
