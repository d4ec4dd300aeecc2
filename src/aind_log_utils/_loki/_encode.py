r"""Loki encoding: labels, structured metadata, timestamps, and the spoolable item.

One record becomes one item (``bytes``) that holds everything needed to push it,
so a spooled item can be replayed by a later process::

    <labels JSON> "\n" <value JSON: ["<ts ns>", "<line>", {metadata}]>

The value is exactly what the push body holds for the entry, so the worker only
groups items by stream and joins bytes.

Labels stay low-cardinality (``service_name``, ``level``, ``hostname``, ``rig_id``,
``instrument_id``, ``pipeline_name`` and the user's static labels); the
high-cardinality standard fields go into structured metadata.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = [
    "LABEL_FIELDS",
    "MAX_LABELS",
    "MAX_LABEL_VALUE_BYTES",
    "MAX_METADATA_VALUE_BYTES",
    "METADATA_FIELDS",
    "clip_utf8",
    "decode_item",
    "encode_item",
    "frame_item",
    "item_frame",
    "loki_labels",
    "loki_metadata",
    "split_item",
    "strip_metadata",
    "timestamp_ns",
    "truncate_line",
    "validate_labels",
]

#: Event fields sent as stream labels, when known (low cardinality).
LABEL_FIELDS: tuple[str, ...] = ("level", "hostname", "rig_id", "instrument_id", "pipeline_name")
#: Event fields sent as structured metadata, when known (high cardinality).
METADATA_FIELDS: tuple[str, ...] = (
    "subject_id", "acquisition_name", "asset_name", "log_session", "specimen_id", "user_id",
    "process_name", "capsule_id", "computation_id", "software_version", "logger", "event_type",
)  # fmt: skip
#: Loki's limits on labels; a value's length is counted in bytes (Go's ``len``),
#: so 2,048 characters of ``ü`` are over it.
MAX_LABELS = 15
MAX_LABEL_VALUE_BYTES = 2048
#: A structured metadata value is cut to this many bytes (the line keeps it whole):
#: all of :data:`METADATA_FIELDS` at this size stay under Loki's 64 KB per entry
#: (names and values), over which Loki refuses the entry.
MAX_METADATA_VALUE_BYTES = 4096
_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABELS = frozenset({"service_name", *LABEL_FIELDS})


def validate_labels(labels: Mapping[str, Any] | None) -> dict[str, str]:
    """Check static labels against Loki's rules.

    Args:
        labels: label name -> value.

    Returns:
        The labels with string values.

    Raises:
        ValueError: a name breaks ``[a-zA-Z_][a-zA-Z0-9_]*``, starts with ``__``,
            clashes with a label the sink sets, a value is empty or too long, or
            there are too many (the message names the label).
        TypeError: ``labels`` is not a mapping.
    """
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise TypeError(f"loki_labels: expected a mapping, got {type(labels).__name__}")
    out: dict[str, str] = {}
    for name, value in labels.items():
        if not isinstance(name, str) or not _LABEL_NAME_RE.match(name) or name.startswith("__"):
            raise ValueError(
                f"loki_labels: label name {name!r} is not valid for Loki ([a-zA-Z_][a-zA-Z0-9_]*)"
            )
        if name in _RESERVED_LABELS:
            raise ValueError(f"loki_labels: label {name!r} is set by the sink itself")
        text = str(value)
        if not text:
            raise ValueError(f"loki_labels: label {name!r} has an empty value")
        if len(text.encode("utf-8", "surrogatepass")) > MAX_LABEL_VALUE_BYTES:
            raise ValueError(
                f"loki_labels: label {name!r} is longer than {MAX_LABEL_VALUE_BYTES} bytes "
                "(UTF-8), Loki's limit"
            )
        out[name] = text
    if len(out) + 1 + len(LABEL_FIELDS) > MAX_LABELS:
        raise ValueError(
            f"loki_labels: at most {MAX_LABELS - 1 - len(LABEL_FIELDS)} static labels "
            f"(Loki allows {MAX_LABELS} per stream), got {len(out)}"
        )
    return out


def loki_labels(
    event: Mapping[str, Any], program: str, static_labels: Mapping[str, str]
) -> dict[str, str]:
    """The stream labels of one event.

    Args:
        event: the rendered event.
        program: the program's name (``service_name``).
        static_labels: validated static labels.

    Returns:
        ``service_name``, the known label fields, and the static labels.
    """
    labels = {"service_name": clip_utf8(program, MAX_LABEL_VALUE_BYTES) or "unknown_service"}
    for name in LABEL_FIELDS:
        value = event.get(name)
        if value is not None and value != "":
            labels[name] = clip_utf8(str(value), MAX_LABEL_VALUE_BYTES)
    labels.update(static_labels)
    return labels


def loki_metadata(event: Mapping[str, Any]) -> dict[str, str]:
    """The structured metadata of one event (the known high-cardinality fields).

    Each value is cut to :data:`MAX_METADATA_VALUE_BYTES`, so that Loki never
    refuses the entry for its metadata.
    """
    meta: dict[str, str] = {}
    for name in METADATA_FIELDS:
        value = event.get(name)
        if value is not None and value != "":
            text = value if type(value) is str else str(value)
            meta[name] = clip_utf8(text, MAX_METADATA_VALUE_BYTES)
    return meta


def clip_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8, never inside a character."""
    if len(text) <= max_bytes // 4:  # at most 4 bytes a character: short enough
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", "ignore")


def timestamp_ns(event: Mapping[str, Any]) -> int | None:
    """The event's ``timestamp`` as Unix nanoseconds (None when absent or unparsable).

    The same instant, at the same (microsecond) resolution, as the line says, so a
    backfilled file and the live sink push identical entries (Loki drops them).
    """
    text = event.get("timestamp")
    if not isinstance(text, str):
        return None
    try:
        when = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def created_ns(created: float) -> int:
    """A LogRecord's ``created`` as nanoseconds at the line's microsecond resolution."""
    secs = int(created)
    return secs * 1_000_000_000 + int((created - secs) * 1e6) * 1000


def truncate_line(event: Mapping[str, Any], line: bytes, max_bytes: int) -> bytes:
    """Shrink an over-long line to valid JSON of at most ``max_bytes``, with a marker.

    The standard fields are kept; extras are dropped largest first and the
    message is cut. The result says ``"truncated": true`` and the original size.

    Args:
        event: the rendered event of ``line``.
        line: the JSON line (with or without the trailing newline).
        max_bytes: the limit.

    Returns:
        A JSON line (no newline) of at most ``max_bytes``.
    """
    body = line.rstrip(b"\n")
    if len(body) <= max_bytes:
        return body
    small: dict[str, Any] = dict(event)
    small["truncated"] = True
    small["original_bytes"] = len(body)
    keep = {
        "timestamp",
        "level",
        "message",
        "truncated",
        "original_bytes",
        *LABEL_FIELDS,
        *METADATA_FIELDS,
    }
    sizes = sorted(
        ((len(orjson.dumps(v, default=str)), k) for k, v in small.items() if k not in keep),
        reverse=True,
    )
    encoded = orjson.dumps(small, default=str)
    for _, key in sizes:
        if len(encoded) <= max_bytes:
            break
        small.pop(key)
        small.setdefault("dropped_fields", []).append(key)
        encoded = orjson.dumps(small, default=str)
    message = str(small.get("message", ""))
    while len(encoded) > max_bytes and message:
        excess = len(encoded) - max_bytes
        message = message[: max(0, len(message) - excess - 64)]
        small["message"] = message + "...[truncated]"
        encoded = orjson.dumps(small, default=str)
    if len(encoded) > max_bytes:  # only the bare minimum is left
        encoded = orjson.dumps(
            {"timestamp": event.get("timestamp"), "level": event.get("level"), "message": "...[truncated]",
             "truncated": True, "original_bytes": len(body)}
        )  # fmt: skip
    return encoded


def item_frame(labels_json: bytes, metadata_json: bytes | None) -> tuple[bytes, bytes]:
    r"""The bytes an item has before its timestamp and after its line.

    Both depend only on the stream and the structured metadata, which rarely
    change from record to record, so a sink builds them once per distinct set and
    :func:`frame_item` only adds the timestamp and the escaped line.

    Args:
        labels_json: the stream labels, JSON-encoded.
        metadata_json: the structured metadata, JSON-encoded, or None.

    Returns:
        ``(prefix, suffix)``: ``<labels>\n["`` and ``,<metadata>]`` (or ``]``).
    """
    return labels_json + b'\n["', (b"," + metadata_json + b"]" if metadata_json else b"]")


def frame_item(frame: tuple[bytes, bytes], ts_ns: int, line: bytes) -> bytes:
    """One item from its frame (:func:`item_frame`), timestamp and line (no newline).

    The line is decoded as UTF-8 (invalid bytes replaced) and escaped as a JSON
    string, so the item's value is valid JSON whatever the line holds.
    """
    text = orjson.dumps(line.decode("utf-8", "replace"))
    return b"".join((frame[0], b'%d",' % ts_ns, text, frame[1]))


def encode_item(
    labels_json: bytes,
    ts_ns: int,
    metadata: Mapping[str, str] | orjson.Fragment | None,
    line: bytes,
) -> bytes:
    """Build one spoolable item: the stream's labels and the push's value, both as JSON.

    The value is already the exact JSON the push body needs
    (``["<ts>", "<line>", {metadata}]``), so the worker only joins bytes: nothing
    is parsed or serialised again off the caller's thread.

    Args:
        labels_json: the stream labels, already JSON-encoded.
        ts_ns: the entry's timestamp in nanoseconds.
        metadata: structured metadata (a mapping, or its JSON as an
            ``orjson.Fragment``), or None.
        line: the JSON line, without its trailing newline.

    Returns:
        ``<labels JSON>`` a newline ``<value JSON>`` (JSON never holds a raw newline).
    """
    meta = orjson.dumps(metadata) if metadata else None
    return frame_item(item_frame(labels_json, meta), ts_ns, line)


def split_item(item: bytes) -> tuple[bytes, bytes]:
    """Split an item into its labels JSON and its value JSON.

    Raises:
        ValueError: the item is not one this module encoded.
    """
    labels, sep, value = item.partition(b"\n")
    if not sep or not labels.startswith(b"{") or not value.startswith(b"["):
        raise ValueError("not a Loki item")
    return labels, value


def decode_item(item: bytes) -> tuple[dict[str, str], str, dict[str, str] | None, str]:
    """Split an item back into labels, timestamp string, metadata and line.

    Raises:
        ValueError: the item is not one this module encoded.
    """
    labels, value = split_item(item)
    parsed = orjson.loads(value)
    meta = parsed[2] if len(parsed) > 2 else None
    return orjson.loads(labels), parsed[0], meta, parsed[1]


def strip_metadata(value: bytes) -> bytes:
    """The value JSON without its structured metadata (for servers that refuse it)."""
    parsed = orjson.loads(value)
    return value if len(parsed) < 3 else orjson.dumps(parsed[:2])
