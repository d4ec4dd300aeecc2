"""Reading a Loki push request, as Loki's push parser does: a malformed one is refused whole.

:func:`decode_body` undoes the Content-Encoding and checks the Content-Type;
:func:`parse_push` reads the JSON into streams, checking label names, timestamps and
the shape of every entry. Either raises :class:`~._loki_model.PushError` with the
status and text Loki answers. The per-entry limits come later
(:mod:`._loki_validate`).
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

import orjson

from .. import _gzip
from ._loki_model import ParsedStream, PushError, PushValue

__all__ = ["decode_body", "parse_push"]

_INT64_MAX_DIGITS = str(2**63 - 1)
_INT64_MAX = 2**63 - 1
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_TIMESTAMP = re.compile(r"[+-]?[0-9]+\Z")
_STR_ONLY = frozenset({str})  # JSON strings parse to exactly str


def decode_body(body: bytes, content_type: str | None, content_encoding: str | None) -> bytes:
    """Undo the Content-Encoding and check the Content-Type, like Loki's push parser.

    Args:
        body: the request body as received.
        content_type: the Content-Type header, or None.
        content_encoding: the Content-Encoding header, or None.

    Returns:
        The decoded JSON bytes.

    Raises:
        PushError: 400 for an unsupported or corrupt encoding, a missing
            Content-Type, or a Content-Type other than JSON.
    """
    encoding = content_encoding or ""
    try:
        if encoding in ("", "snappy"):  # Loki passes "snappy" through untouched
            data = body
        elif encoding == "gzip":
            data = _gzip.decompress(body)
        elif encoding == "deflate":  # Go's compress/flate: raw RFC 1951, no zlib header
            data = zlib.decompress(body, -zlib.MAX_WBITS)
        else:
            raise PushError(400, f"Content-Encoding {json.dumps(encoding)} not supported")
    except (OSError, EOFError, zlib.error) as exc:
        raise PushError(400, f"{encoding}: invalid compressed body: {exc}") from exc
    if not content_type or not content_type.strip():
        raise PushError(400, "mime: no media type")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise PushError(
            400,
            f"unsupported Content-Type {content_type!r}: this receiver decodes only "
            "application/json (a real Loki reads any other type as protobuf+snappy)",
        )
    return data


def parse_push(data: bytes) -> list[ParsedStream]:
    """Read a JSON push body into streams; anything malformed refuses the whole push.

    Args:
        data: the decoded JSON body.

    Returns:
        The streams in request order, empty label values already dropped (Loki
        treats an empty value as an absent label).

    Raises:
        PushError: 400 for invalid JSON, a non-string or malformed timestamp, a
            non-string line or metadata value, or an invalid label name.
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        # orjson is the fast path; it refuses a few things Python's parser accepts
        # (lone surrogate escapes, huge numbers), so the stdlib gives the verdict.
        try:
            doc = json.loads(data)
        except ValueError as exc:  # includes UnicodeDecodeError
            raise PushError(400, f"loghttp.PushRequest: invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise PushError(400, "loghttp.PushRequest: expected a JSON object")
    raw_streams = doc.get("streams") or []
    if not isinstance(raw_streams, list):
        raise PushError(400, "loghttp.PushRequest.streams: expected an array")
    return [_parse_stream(raw) for raw in raw_streams]


def _parse_stream(raw: Any) -> ParsedStream:
    if not isinstance(raw, dict):
        raise PushError(400, "loghttp.PushRequest.streams: each stream must be an object")
    raw_labels = raw.get("stream") or {}
    if not isinstance(raw_labels, dict) or not all(isinstance(v, str) for v in raw_labels.values()):
        raise PushError(400, "loghttp.Stream.stream: expected an object of strings")
    for name in raw_labels:
        if not _LABEL_NAME.match(name):
            raise PushError(
                400,
                f"couldn't parse labels: invalid label name {name!r}: must match "
                "[a-zA-Z_][a-zA-Z0-9_]*",
            )
    labels = {k: v for k, v in raw_labels.items() if v}
    raw_values = raw.get("values") or []
    if not isinstance(raw_values, list):
        raise PushError(400, "loghttp.Stream.values: expected an array")
    return ParsedStream(labels, _parse_values(raw_values))


def _parse_values(raw_values: list[Any]) -> list[PushValue]:
    """Every entry of a stream, in order; the checks of :func:`_parse_value` for each.

    An entry whose shape, timestamp (ASCII digits within int64), line and metadata
    pass a quick test is taken here; any other goes through :func:`_parse_value`,
    which accepts or refuses it exactly. The quick test only ever accepts what the
    exact one does: building the tuple directly, without a call per entry, halved
    the receiver's parsing time.
    """
    values: list[PushValue] = []
    keep = values.append
    make = tuple.__new__
    top = _INT64_MAX_DIGITS
    plain = _STR_ONLY.issuperset
    for raw in raw_values:
        if type(raw) is list and 2 <= len(raw) <= 3:
            ts, line = raw[0], raw[1]
            metadata = raw[2] if len(raw) == 3 else None
            if (
                type(ts) is str
                and type(line) is str
                and ts.isdigit()
                and ts.isascii()
                and (len(ts) < 19 or (len(ts) == 19 and ts <= top))
                and (
                    metadata is None
                    or (type(metadata) is dict and plain(map(type, metadata.values())))
                )
            ):
                keep(make(PushValue, (int(ts), line, metadata or None)))
                continue
        keep(_parse_value(raw))
    return values


def _parse_value(raw: Any) -> PushValue:
    if not isinstance(raw, list) or len(raw) not in (2, 3):
        raise PushError(400, "loghttp.Entry: expected [ts, line] or [ts, line, {metadata}]")
    ts, line = raw[0], raw[1]
    if type(ts) is not str:
        raise PushError(400, f"loghttp.Entry.ts: expected a string of Unix nanoseconds, got {ts!r}")
    # The exact check (the common case never gets here: see _parse_values).
    if not _TIMESTAMP.match(ts) or abs(int(ts)) > _INT64_MAX:
        raise PushError(400, f"loghttp.Entry.ts: invalid timestamp {ts!r}")
    if not isinstance(line, str):
        raise PushError(400, "loghttp.Entry.line: expected a string")
    metadata = raw[2] if len(raw) == 3 else None
    if metadata is not None and (
        not isinstance(metadata, dict) or not _STR_ONLY.issuperset(map(type, metadata.values()))
    ):
        raise PushError(400, "loghttp.Entry.structuredMetadata: expected an object of strings")
    return PushValue(int(ts), line, metadata or None)
