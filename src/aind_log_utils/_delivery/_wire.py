"""The byte stream between a sink and its sender process (see :mod:`._link`).

Parent -> child, on the child's stdin: frames of a 4-byte big-endian header and a
payload. A header below :data:`CONTROL_BIT` is a record: the payload is what the
sink packed on the caller's thread. A header with the bit set is a control
message: the payload is a pickled dict with an ``op`` (``start``, ``flush``,
``stats``, ``close``) and an ``id``; the first frame is always ``start``, which
carries how to build the sink.

Child -> parent, on a private pipe: one JSON object per line, the answer to a
control message (``{"id": ..., "ok": ..., "counters": {...}}``).
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

__all__ = ["CONTROL_BIT", "HEADER", "control_frame", "records_of", "split_frames"]

HEADER = struct.Struct(">I")
#: Set in a header: the frame is a control message, not a record.
CONTROL_BIT = 0x8000_0000


def control_frame(message: dict[str, Any]) -> bytes:
    """One control frame (header and pickled message)."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(CONTROL_BIT | len(payload)) + payload


def records_of(pieces: list[bytes]) -> list[bytes]:
    """The records of framed pieces (head, payload, head, payload, ...), headers cut off.

    A head is a record's wire header and what its sink packed in front of the
    payload (see :meth:`~._handover.Handover.hand`).
    """
    size = HEADER.size
    return [head[size:] + payload for head, payload in zip(pieces[::2], pieces[1::2], strict=True)]


def split_frames(data: bytes | bytearray, start: int = 0) -> tuple[list[tuple[bool, bytes]], int]:
    """The complete frames of ``data`` from ``start``.

    Returns:
        ``[(is_control, payload), ...]`` and where the first incomplete frame (or
        the end) is. No view of ``data`` outlives the call, so a ``bytearray``
        can be trimmed and grown afterwards.
    """
    frames: list[tuple[bool, bytes]] = []
    append = frames.append
    # One copy of the whole read, then a slice per frame: cheaper than a slice of
    # a view and a copy of it, per frame.
    buf = bytes(data)
    size = len(buf)
    unpack = HEADER.unpack_from
    pos = start
    while pos + 4 <= size:
        (head,) = unpack(buf, pos)
        end = pos + 4 + (head & ~CONTROL_BIT)
        if end > size:
            break
        append((head >= CONTROL_BIT, buf[pos + 4 : end]))
        pos = end
    return frames, pos
