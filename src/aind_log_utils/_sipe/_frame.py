"""Plain values and the frame: what the SIPE server may be sent, and how it is framed.

The server unpickles whatever it is sent, so a frame holds only ``str``,
``int``, ``float``, ``bool`` and ``None``: :func:`plain` makes any (already
redacted) value one of those, and :func:`frame` pickles a dict of them behind
the 4-byte big-endian length ``SocketHandler.makePickle`` puts there.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
import threading
from typing import Any

import orjson

from .._redact import redact

__all__ = [
    "LENGTH",
    "PICKLE_PROTOCOL",
    "PLAIN_TYPES",
    "NotPlain",
    "frame",
    "frame_checked",
    "pickle_plain",
    "plain",
]

#: Protocol 2: every Python the server may run (2.3 onwards, all of 3) reads it,
#: it names no class for our plain values, and it encodes a third faster than
#: the stdlib SocketHandler's protocol 1.
PICKLE_PROTOCOL = 2
#: The types a frame's values may have.
PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
#: The frame's length prefix.
LENGTH = struct.Struct(">L")


class NotPlain(TypeError):
    """A value the frame must not carry as it is (it would name a class)."""


class _PlainPickler(pickle.Pickler):
    """A pickler that refuses to name any class: only plain values get through.

    The C pickler writes None, bools, ints, floats, str and the built-in
    containers itself and asks ``reducer_override`` about anything else (a str
    subclass, an enum, any object), which would otherwise be pickled as a
    reference to its class.
    """

    def reducer_override(self, obj: Any) -> Any:
        raise NotPlain(type(obj).__name__)


_local = threading.local()


def pickle_plain(value: Any) -> bytes:
    """``value`` pickled with protocol 2 in fast mode (no memo); never names a class.

    One pickler per thread, reused: a third cheaper than ``pickle.dumps``. Fast
    mode (no memo) suits flat values. It is taken out of the thread's slot while
    in use and put back after: a signal handler that logs on this thread
    meanwhile makes its own, instead of emptying the buffer this call is about
    to read. One an error interrupted is never put back.

    Raises:
        NotPlain: ``value`` holds an object other than the built-in types.
    """
    slot = _local.__dict__
    reused = slot.pop("pickler", None)
    if reused is None:
        buffer = io.BytesIO()
        pickler = _PlainPickler(buffer, PICKLE_PROTOCOL)
        pickler.fast = True
    else:
        pickler, buffer = reused
        buffer.seek(0)
        buffer.truncate()
    pickler.dump(value)
    data = buffer.getvalue()
    slot["pickler"] = (pickler, buffer)
    return data


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
