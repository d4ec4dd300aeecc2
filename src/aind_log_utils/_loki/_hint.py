"""Frame ids: the program names an entry's labels and metadata, so its sender need not read the line.

With process delivery, a Loki entry's labels and structured metadata (its
*frame*, see :func:`~._encode.item_frame`) are made from 17 fields of the event.
The sender used to get them by parsing every line back and looking its frame up
by those fields: about 4 µs of its 12 per line, on CPUs the program shares.
Instead, the program gives each distinct frame a small id, sends the frame once
(a *definition*) and then only the id with each record.

The program's side (:class:`FrameIds`) must stay cheap: it finds a frame's id
with one ``itemgetter`` over the fields the event holds and a check that it holds
none of the others (its *shape*), about 0.3 µs. Whenever that is not enough (a new
shape, a new value, an unhashable value) the slow path works it out, or gives no
id at all.

An id the sender does not know (its definitions went to a sender that died, or a
race between two logging threads) is never an error: the sender then reads the
line back, as it did before. Ids are never reused, so an id can never name
another frame.
"""

from __future__ import annotations

import itertools
import operator
import struct
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "FLAG_DEFINE",
    "FLAG_HINTED",
    "HINTED",
    "FrameIds",
    "FrameTable",
    "definition",
    "typed_key",
]

#: In front of a record's line: the flag, the record's ``created`` (the sender makes
#: the entry's nanoseconds of it: one call fewer for the caller), the frame id.
HINTED = struct.Struct(">BdI")
#: A record whose frame has an id.
FLAG_HINTED = 2
#: A frame's definition: its id, then the two halves of the frame.
FLAG_DEFINE = 3
_LENGTH = struct.Struct(">I")
#: Ids remembered per shape, and shapes remembered; past either, start afresh
#: (a context that changes with every record must not grow them without bound).
_MAX_IDS = 1024
_MAX_SHAPES = 64


def _no_fields(event: Mapping[str, Any]) -> tuple[()]:
    return ()


_TEXT = frozenset({str, type(None)})


def typed_key(values: tuple[Any, ...]) -> Any:
    """A cache key for a frame's field values that tells ``1``, ``1.0`` and ``True`` apart.

    Equal values of other types (``1 == 1.0 == True``) would otherwise share one
    cached frame, whose labels and metadata say ``"1"`` for all three; so would
    ``0.0`` and ``-0.0``. Values that are all text (the usual case) are their own key.
    """
    if _TEXT.issuperset(map(type, values)):
        return values
    return values, tuple(repr(v) if type(v) is float else type(v) for v in values)


class _Shape:
    """The frame fields one kind of event holds, and the ids of their values."""

    __slots__ = ("absent", "getter", "ids")

    def __init__(self, present: tuple[str, ...], fields: tuple[str, ...]) -> None:
        self.absent = frozenset(fields).difference(present)
        self.getter: Callable[[Mapping[str, Any]], Any] = (
            operator.itemgetter(*present) if present else _no_fields
        )
        #: Ids by the getter's values where they are all text (the keys the quick
        #: lookup finds), else by :func:`typed_key` (keys it can never build).
        self.ids: dict[Any, int] = {}


class FrameIds:
    """The program's side: the id of an event's frame, assigned on first sight.

    Args:
        fields: the event fields a frame is made of.
    """

    def __init__(self, fields: tuple[str, ...]) -> None:
        self._fields = fields
        self._shapes: dict[tuple[str, ...], _Shape] = {}
        self._shape: _Shape | None = None
        self._generation = -1
        self._next_id = itertools.count(1)

    def lookup(self, event: Mapping[str, Any], generation: int) -> int | None:
        """The id of ``event``'s frame if the last shape finds it at once, else None.

        Args:
            event: the redacted event.
            generation: the link's generation: when it changed, a new sender (or
                the program itself) receives, and knows none of the ids.
        """
        if generation != self._generation:
            self._shapes.clear()
            self._shape = None
            self._generation = generation
            return None
        shape = self._shape
        if shape is None:
            return None
        try:
            if event.keys().isdisjoint(shape.absent):
                return shape.ids.get(shape.getter(event))
        except (KeyError, TypeError):  # a field gone, or an unhashable value
            pass
        return None

    def assign(self, event: Mapping[str, Any]) -> tuple[int, bool] | None:
        """The id of ``event``'s frame, and whether it is new; None when it cannot have one.

        Args:
            event: the redacted event.
        """
        present = tuple(name for name in self._fields if name in event)
        shape = self._shapes.get(present)
        if shape is None:
            if len(self._shapes) >= _MAX_SHAPES:
                self._shapes.clear()
            shape = self._shapes[present] = _Shape(present, self._fields)
        self._shape = shape
        try:
            key = shape.getter(event)
            values = (key,) if len(present) == 1 else key  # one field: a bare value
            typed = typed_key(values)
            if typed is not values:
                # Not all text: keyed with the types, so that neither the quick
                # lookup nor an equal number of another type finds it.
                key = typed
            ids = shape.ids
            known = ids.get(key)
        except TypeError:  # an unhashable value: no id
            return None
        if known is not None:
            return known, False
        if len(ids) >= _MAX_IDS:
            ids.clear()
        new = next(self._next_id)
        ids[key] = new
        return new, True


def definition(frame_id: int, frame: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """The ``(prefix, payload)`` that tells the sender what ``frame_id`` stands for."""
    prefix, suffix = frame
    return HINTED.pack(FLAG_DEFINE, 0.0, frame_id), _LENGTH.pack(len(prefix)) + prefix + suffix


class FrameTable:
    """The sender's side: the frames the program defined, by id."""

    def __init__(self) -> None:
        self._frames: dict[int, tuple[bytes, bytes]] = {}
        #: ``get(frame_id)``: the frame of ``frame_id``, or None when it was never
        #: defined here. The dict's own ``get`` (``define`` only ever clears the
        #: dict), so that the sender's hot loop makes no Python call for it.
        self.get: Callable[[int], tuple[bytes, bytes] | None] = self._frames.get

    def define(self, frame_id: int, payload: bytes) -> None:
        """Learn a definition (the payload :func:`definition` made, after its header).

        Raises:
            ValueError: a payload too short to be one.
        """
        if len(payload) < _LENGTH.size:
            raise ValueError("not a frame definition")
        (size,) = _LENGTH.unpack_from(payload)
        if len(payload) < _LENGTH.size + size:
            raise ValueError("not a frame definition")
        if len(self._frames) >= 4 * _MAX_IDS:
            self._frames.clear()  # unknown ids only make the sender read lines back
        end = _LENGTH.size + size
        self._frames[frame_id] = (payload[_LENGTH.size : end], payload[end:])
