r"""CloudWatch Logs encoding: the spoolable item and PutLogEvents' batch rules.

One record becomes one item (``bytes``) that holds everything needed to send it,
so a spooled item can be replayed by a later process::

    <timestamp in ms, decimal> "\\n" <the JSON line, as in the file, without its newline>

The destination (region, group, stream) is not in the item: each destination has
a spool directory of its own.

PutLogEvents' rules (`API reference`_), all honoured before a batch is sent:

- at most 10,000 events, and at most 1,048,576 bytes counting each message in
  UTF-8 plus 26 bytes per event;
- events in chronological order (a stable sort: records of one thread keep their
  order), spanning at most 24 hours;
- an event of at most 256 KB (26 bytes of it are the overhead): longer lines are
  truncated to valid JSON with a ``"truncated": true`` marker, as for Loki.

.. _API reference:
   https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutLogEvents.html
"""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter
from typing import Any, NamedTuple

import orjson

from .._loki._encode import truncate_line

__all__ = [
    "ENGINE_MAX_BATCH_BYTES",
    "EVENT_OVERHEAD_BYTES",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "MAX_BATCH_SPAN_MS",
    "MAX_MESSAGE_BYTES",
    "Events",
    "batch_problem",
    "build_events",
    "decode_item",
    "encode_item",
    "engine_batch_bytes",
    "event_ms",
    "fit_message",
    "put_body",
]

#: PutLogEvents: the most bytes in one call (messages in UTF-8 + 26 per event).
MAX_BATCH_BYTES = 1_048_576
#: PutLogEvents: the bytes each event counts on top of its message.
EVENT_OVERHEAD_BYTES = 26
#: PutLogEvents: the most events in one call.
MAX_BATCH_EVENTS = 10_000
#: PutLogEvents: the longest time one call may span, in ms.
MAX_BATCH_SPAN_MS = 24 * 3600 * 1000
#: The largest event (256 KB, overhead included), and so the longest message.
MAX_EVENT_BYTES = 256 * 1024
MAX_MESSAGE_BYTES = MAX_EVENT_BYTES - EVENT_OVERHEAD_BYTES
#: An item's header: 13 digits of milliseconds (2001-2286) and a newline.
ITEM_HEADER_BYTES = 14
#: The engine's default batch cap: any batch of at most this many item bytes
#: and 10,000 items fits 1 MiB once each item's header is replaced by 26 bytes.
ENGINE_MAX_BATCH_BYTES = MAX_BATCH_BYTES - MAX_BATCH_EVENTS * (
    EVENT_OVERHEAD_BYTES - ITEM_HEADER_BYTES
)

_TRUNCATED = "...[truncated]"


def engine_batch_bytes(max_batch_records: int) -> int:
    """The largest engine batch (sum of item sizes) that always fits one call.

    Args:
        max_batch_records: the engine's cap on items per batch (<= 10,000).

    Returns:
        ``1,048,576 - 12 * max_batch_records``: each item's 14-byte header becomes
        26 bytes of event overhead.
    """
    return MAX_BATCH_BYTES - max_batch_records * (EVENT_OVERHEAD_BYTES - ITEM_HEADER_BYTES)


def event_ms(created: float) -> int:
    """A LogRecord's ``created`` in milliseconds, truncated as the line's timestamp is.

    The line says microseconds, truncated; the event's time is the same instant
    truncated to milliseconds, so the two never disagree by a rounding.
    """
    secs = int(created)
    return secs * 1000 + int((created - secs) * 1e6) // 1000


def fit_message(event: Mapping[str, Any], line: bytes, max_bytes: int) -> bytes:
    """The event message for a rendered line: the line itself, or a truncated copy.

    Args:
        event: the rendered event (to rebuild a shorter line from).
        line: the JSON line, with or without its newline.
        max_bytes: the longest message allowed.

    Returns:
        The line without its newline, at most ``max_bytes`` long (valid JSON with
        ``"truncated": true`` and ``original_bytes`` when it had to be cut).
    """
    body = line[:-1] if line.endswith(b"\n") else line
    if len(body) <= max_bytes:
        return body
    return truncate_line(event, body, max_bytes)


def encode_item(ts_ms: int, message: bytes) -> bytes:
    """Build one spoolable item.

    Args:
        ts_ms: the event's time in Unix milliseconds.
        message: the event message (a JSON line without its newline).

    Returns:
        The decimal timestamp, a newline, then the message.
    """
    return b"%d\n%b" % (ts_ms, message)


def decode_item(item: bytes) -> tuple[int, bytes]:
    """Split an item back into its timestamp and message.

    Raises:
        ValueError: the item is not one :func:`encode_item` made (or its message
            is empty, which CloudWatch refuses).
    """
    head, sep, message = item.partition(b"\n")
    if not sep or not message or not head.isdigit():
        raise ValueError("not a CloudWatch item")
    return int(head), message


def _shrink(message: bytes, max_bytes: int) -> bytes:
    """Truncate a message found too long at send time (spooled by another configuration)."""
    try:
        event = orjson.loads(message)
    except orjson.JSONDecodeError:
        event = None
    if isinstance(event, dict):
        return truncate_line(event, message, max_bytes)
    cut = message[: max_bytes - len(_TRUNCATED)].decode("utf-8", "ignore")
    return (cut + _TRUNCATED).encode()


class Events(NamedTuple):
    """A batch ready for PutLogEvents (see :func:`build_events`)."""

    #: ``(timestamp_ms, message)`` pairs, sorted by timestamp (stable); each
    #: message is valid UTF-8.
    events: list[tuple[int, bytes]]
    #: Items that were not CloudWatch items (skipped).
    invalid: int
    #: The batch's size as PutLogEvents counts it (UTF-8 + 26 bytes an event).
    size: int


def build_events(batch: list[bytes], max_message_bytes: int) -> Events:
    """Turn a batch of items into PutLogEvents' events, in time order.

    This runs on the worker for every event, holding the GIL that the logging
    threads need: one pass over bytes, no sort unless the times are out of order.

    Args:
        batch: the items, in submission order.
        max_message_bytes: longer messages are truncated (valid JSON, marked).

    Returns:
        The events sorted by timestamp (stable: equal times keep their order),
        the number of items that were not CloudWatch items, and the batch's size.
    """
    events: list[tuple[int, bytes]] = []
    invalid = size = 0
    last = -1
    ordered = True
    for item in batch:
        head, sep, message = item.partition(b"\n")
        try:
            ts_ms = int(head)
        except ValueError:
            ts_ms = -1
        if not sep or not message or ts_ms < 0:
            invalid += 1
            continue
        if len(message) > max_message_bytes:
            message = _shrink(message, max_message_bytes)
        if not message.isascii():
            try:
                message.decode()
            except UnicodeDecodeError:  # never from our renderer; from a damaged file
                message = message.decode("utf-8", "replace").encode()
        size += len(message) + EVENT_OVERHEAD_BYTES
        if ts_ms < last:
            ordered = False
        last = ts_ms
        events.append((ts_ms, message))
    if not ordered:
        events.sort(key=itemgetter(0))
    return Events(events, invalid, size)


def batch_problem(events: list[tuple[int, bytes]], size: int) -> str | None:
    """Say which PutLogEvents rule a sorted batch of events breaks, if any.

    Args:
        events: the events, sorted by timestamp (from :func:`build_events`).
        size: the batch's size as PutLogEvents counts it.

    Returns:
        None when the batch may be sent as it is, else a short reason (the
        caller splits the batch).
    """
    if len(events) > MAX_BATCH_EVENTS:
        return "more than 10,000 events"
    if events and events[-1][0] - events[0][0] > MAX_BATCH_SPAN_MS:
        return "batch spans more than 24 h"
    if size > MAX_BATCH_BYTES:
        return "batch over 1,048,576 bytes"
    return None


def put_body(log_group: str, log_stream: str, events: list[tuple[int, bytes]]) -> bytes:
    """The JSON body of a PutLogEvents call, serialised by orjson (in C).

    Args:
        log_group: the group.
        log_stream: the stream.
        events: ``(timestamp_ms, message)`` pairs (from :func:`build_events`;
            each message valid UTF-8).

    Returns:
        ``{"logGroupName": ..., "logStreamName": ..., "logEvents": [...]}``.
    """
    return orjson.dumps(
        {
            "logGroupName": log_group,
            "logStreamName": log_stream,
            "logEvents": [{"timestamp": ts, "message": m.decode()} for ts, m in events],
        }
    )
