"""Plain values and the frame: what the SIPE server may be sent, and how it is framed.

The server unpickles whatever it is sent, so a frame holds only ``str``,
``int``, ``float``, ``bool`` and ``None``: :func:`plain` makes any (already
redacted) value one of those, and :func:`frame` pickles a dict of them behind
the 4-byte big-endian length ``SocketHandler.makePickle`` puts there.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import orjson

from .._redact import redact
from ._splice import NotPlain, pickle_plain

__all__ = ["LENGTH", "PLAIN_TYPES", "frame", "frame_checked", "plain"]

#: The types a frame's values may have.
PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
#: The frame's length prefix.
LENGTH = struct.Struct(">L")


def plain(value: Any) -> str | int | float | bool | None:
    """Turn one (already redacted) value into a str, int, float, bool or None.

    Lists and dicts become their JSON text, a value JSON writes as a string (a
    datetime, a UUID) that string; subclasses of the plain types (enums, ``str``
    subclasses) become the plain type, so the pickle never names a class.

    Args:
        value: a value of a redacted event.

    Returns:
        The plain value.
    """
    cls = type(value)
    if cls in PLAIN_TYPES:
        return value  # type: ignore[no-any-return]
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        number = float.__float__(value)
        return number if math.isfinite(number) else repr(number)
    try:
        text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=_fallback)
    except Exception:
        return _fallback(value)
    if text[:1] == b'"':
        # A value orjson writes as a string (a datetime, a UUID): that string, as
        # the line holds it and a sender reading the line back sends it.
        return str(orjson.loads(text))
    return text.decode()


def _fallback(value: Any) -> str:
    # Only for a type the renderer's redaction would not have left: redact again.
    cleaned = redact(value)
    return cleaned if type(cleaned) is str else repr(type(value).__name__)


def _dumps(payload: dict[str, Any]) -> bytes:
    """The whole frame: the 4-byte length and the pickle."""
    data = pickle_plain(payload)
    return LENGTH.pack(len(data)) + data


def frame(payload: dict[str, Any]) -> bytes:
    """Pickle a dict of plain values and put the 4-byte big-endian length in front.

    A key or value that is not a plain ``str``/``int``/``float``/``bool``/``None``
    (a list, a dict, a str subclass, any object) is converted with :func:`plain`
    first, so the pickle never names a class.

    Args:
        payload: the record's attributes.

    Returns:
        The frame, exactly as ``SocketHandler.makePickle`` frames a record.
    """
    if not PLAIN_TYPES.issuperset(map(type, payload.values())):
        payload = {k: plain(v) for k, v in payload.items()}
    return frame_checked(payload)


def frame_checked(payload: dict[str, Any]) -> bytes:
    """Like :func:`frame`, for a payload whose values were (mostly) checked already."""
    try:
        return _dumps(payload)
    except NotPlain:  # a key of a subclass of str, or a value that slipped through
        return _dumps({str(plain(k)): plain(v) for k, v in payload.items()})
