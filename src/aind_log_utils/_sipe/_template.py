"""Frames filled in from a template: a record like one seen before is not encoded again.

A sender process reads each record back from its JSON line and its packed
attributes, builds the frame's dict and pickles it: about 7 us a record, two
thirds of all the sender does, and on a small machine the sender's CPU is CPU
the program lacks. Yet the records of one call site in one session differ, as
a rule, only in five values: the timestamp, the message, and the record's
``created``, ``msecs`` and ``relativeCreated``. A flat dict pickled in fast
mode (no memo) encodes each key and value on its own, so the frame of such a
record is the frame of the one before with those five values put in.

How a template is made and when it is used:

- The key is everything of the record but those five values, byte for byte:
  the line with its timestamp and message cut out, the packed attributes with
  their three times cut out, the record's kind and who wrote it.
- A template is made the second time a key is seen (a record seen once may be
  the only one of its kind): the full encoding of a stand-in record, whose five
  values are markers, is cut where the markers are. It is kept only if filling
  it with the record's own values gives exactly the frame the full encoding
  gives; else the key is marked as having none.
- It is used only for a record whose five values are of the kind it was made
  for: a timestamp and a message with no escape in their JSON (their bytes are
  then exactly the UTF-8 the pickle holds) and three numbers written as floats.
  Everything else of the record being the same bytes, its JSON reads the same
  way up to each value and after it, so the frame is the one the full encoding
  would give: a property test compares the two on drawn records.
- The template used last is tried first, without a key: a record that starts
  and ends with its key's bytes around the five values has that key (checked
  as the key is cut, below), and building and hashing a key of the line's
  whole tail was a sixth of a frame's cost.
- Where templates do not pay (nearly every record unlike any other), they are
  left off for a while and tried again later.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import orjson

from ._frame import LENGTH

__all__ = ["FrameTemplates", "Origin"]

#: Who wrote a spooled record: ``(program, aibs_rig_id, aibs_comp_id)``, or None for this program.
Origin = tuple[str, str | None, str | None] | None
#: The full encoding: ``(kind, attributes, line, origin)`` -> the frame, or None if unreadable.
Encode = Callable[[int, bytes, bytes, Origin], "bytes | None"]

_LINE_START = b'{"timestamp":"'
_STAMP = len(_LINE_START)
_MESSAGE_KEY = b'"message":"'
#: The little-endian length the pickle writes after a string's opcode.
_U32 = struct.Struct("<I")
#: A float as the pickle writes it after its opcode.
_DOUBLE = struct.Struct(">d")
#: Marker values of the stand-in record (they survive JSON both ways exactly).
_TS_MARK = b"aind-sipe-template-timestamp-0f3c"
_MSG_MARK = b"aind-sipe-template-message-9b7e"
_FLOAT_MARKS = (-1.2345678901234567e-301, -2.3456789012345677e-301, -3.456789012345679e-301)
#: The float markers as the stand-in's JSON writes them.
_FLOAT_MARKS_JSON = tuple(orjson.dumps(mark) for mark in _FLOAT_MARKS)
#: The five markers as the stand-in's pickle holds them (opcode, then the value).
_MARKS_PICKLED = (
    *(b"X" + _U32.pack(len(mark)) + mark for mark in (_TS_MARK, _MSG_MARK)),
    *(b"G" + _DOUBLE.pack(mark) for mark in _FLOAT_MARKS),
)
#: How many templates, and keys seen once, are kept at most (then forgotten at once).
MAX_TEMPLATES = 256
MAX_SEEN = 1024
#: Every this many records the hit rate is looked at; below 1 in :data:`_POOR_RATE`
#: templates are left off for the next :data:`_REST` records.
_CHECK_EVERY = 4096
_POOR_RATE = 8
_REST = 65536

#: A template: the frame's bytes between the five values, the order of the
#: values in the frame (0 timestamp, 1 message, 2-4 the times) and the length
#: of everything but the two strings' bytes.
Template = tuple[tuple[bytes, ...], tuple[int, ...], int]
#: A template with its key's bytes as a record holds them (what the template used
#: last is tried by): kind, origin, the attributes before the times (with the
#: comma after them), the attributes after them (",thread,process"), the line
#: between the timestamp and the message, the line after the message.
_Entry = tuple[int, Origin, bytes, bytes, bytes, bytes, Template]


class FrameTemplates:
    """Makes frames through templates where it can, else through the full encoding.

    Args:
        encode: the full encoding of a packed record.
    """

    def __init__(self, encode: Encode) -> None:
        self._encode = encode
        self._templates: dict[tuple[Any, ...], _Entry | None] = {}
        self._seen: set[tuple[Any, ...]] = set()
        self._tried = self._hits = self._resting = 0
        self._recent: _Entry | None = None
        #: Records framed from a template (for tests and benchmarks).
        self.filled = 0

    def frame(self, kind: int, attrs: bytes, line: bytes, origin: Origin) -> bytes | None:
        """The frame of one packed record (None if unreadable, as the full encoding says)."""
        if self._resting:
            self._resting -= 1
            return self._encode(kind, attrs, line, origin)
        recent = self._recent
        if recent is not None:
            filled = self._fill_recent(recent, kind, attrs, line, origin)
            if filled is not None:
                return filled
        # The attributes are [7 values, created, msecs, relativeCreated, thread,
        # process]; the line starts with its timestamp, then level and message.
        # (Inline, not a helper: this is the sender's hot path.)
        parts = attrs.rsplit(b",", 5)
        stamp_end = line.find(b'"', _STAMP)
        message = line.find(_MESSAGE_KEY, stamp_end) + len(_MESSAGE_KEY)
        message_end = line.find(b'"', message)
        if (
            len(parts) != 6
            or not line.startswith(_LINE_START)
            or message < len(_MESSAGE_KEY)
            or message_end < 0
            # an escape up to the message's end: its first quote may not end it,
            # and the JSON's bytes would not be the string's
            or line.find(b"\\", _STAMP, message_end) >= 0
        ):
            return self._encode(kind, attrs, line, origin)
        head, created, msecs, relative, thread, process = parts
        key = (kind, origin, head, thread, process, line[stamp_end:message], line[message_end:])
        times = b",".join((created, msecs, relative))
        values = (line[_STAMP:stamp_end], line[message:message_end], times)
        self._tried += 1
        if self._tried >= _CHECK_EVERY and self._rest_if_poor():
            return self._encode(kind, attrs, line, origin)
        entry = self._templates.get(key, _NONE_YET)
        if entry is _NONE_YET:
            full = self._encode(kind, attrs, line, origin)
            if key not in self._seen:
                if len(self._seen) >= MAX_SEEN:
                    self._seen.clear()
                self._seen.add(key)
            elif full is not None:
                self._seen.discard(key)
                if len(self._templates) >= MAX_TEMPLATES:
                    self._templates.clear()
                    self._recent = None
                made = self._make(key, values, full)
                entry = self._templates[key] = None if made is None else _entry(key, made)
                if entry is not None:
                    self._recent = entry
            return full
        if entry is not None:
            filled = _fill(entry[-1], values)
            if filled is not None:
                self._hits += 1
                self.filled += 1
                self._recent = entry
                return filled
        return self._encode(kind, attrs, line, origin)

    def _fill_recent(
        self, recent: _Entry, kind: int, attrs: bytes, line: bytes, origin: Origin
    ) -> bytes | None:
        """The frame from the template used last, if the record has its key; else None.

        The record has the key when it is the key's bytes around the five values:
        its attributes start with those before the times and end with
        ",thread,process" (neither holds a comma of the times, so ``rsplit`` would
        cut the same parts), its line holds the key's middle right after the
        timestamp's closing quote (which ends with the only ``"message":"``
        there) and ends with the key's tail (which starts with a quote), and no
        quote or backslash lies between them (so the message's first quote is
        that one, as :meth:`frame` finds it).
        """
        was_kind, was_origin, head, tail, middle, rest, template = recent
        if (
            kind != was_kind
            or origin != was_origin
            or not attrs.startswith(head)
            or not attrs.endswith(tail)
            or not line.startswith(_LINE_START)
            or not line.endswith(rest)
        ):
            return None
        stamp_end = line.find(b'"', _STAMP)
        message = stamp_end + len(middle)
        message_end = len(line) - len(rest)
        if (
            stamp_end < 0
            or message > message_end
            or not line.startswith(middle, stamp_end)
            or line.find(b'"', message, message_end) >= 0
            or line.find(b"\\", _STAMP, message_end) >= 0
        ):
            return None
        # What lies between must be the three times: _fill reads exactly three floats.
        times = attrs[len(head) : len(attrs) - len(tail)]
        filled = _fill(template, (line[_STAMP:stamp_end], line[message:message_end], times))
        if filled is not None:
            self._tried += 1
            self._hits += 1
            self.filled += 1
            if self._tried >= _CHECK_EVERY:
                self._rest_if_poor()
        return filled

    def _rest_if_poor(self) -> bool:
        """Leave templates off for a while if few records used one; True if so."""
        poor = self._hits * _POOR_RATE < self._tried
        if poor:
            self._resting = _REST
            self._templates.clear()
            self._seen.clear()
            self._recent = None
        self._tried = self._hits = 0
        return poor

    def _make(self, key: tuple[Any, ...], values: _Values, full: bytes) -> Template | None:
        """The template of a key, checked on the record at hand (None if none fits)."""
        kind, origin, head, thread, process, middle, rest = key
        stand_in = self._encode(
            kind,
            b",".join((head, *_FLOAT_MARKS_JSON, thread, process)),
            b"".join((_LINE_START, _TS_MARK, middle, _MSG_MARK, rest)),
            origin,
        )
        if stand_in is None:
            return None
        body = stand_in[LENGTH.size :]
        # Where each value sits in the stand-in's pickle (after its opcode).
        slots: list[tuple[int, int, int]] = []
        for index, piece in enumerate(_MARKS_PICKLED):
            at = body.find(piece)
            if at < 0 or body.find(piece, at + 1) >= 0:
                return None
            slots.append((at + 1, at + len(piece), index))
        slots.sort()
        chunks, start = [], 0
        for begin, end, _ in slots:
            chunks.append(body[start:begin])
            start = end
        chunks.append(body[start:])
        fixed = sum(map(len, chunks)) + 2 * _U32.size + 3 * _DOUBLE.size
        template: Template = (tuple(chunks), tuple(index for _, _, index in slots), fixed)
        return template if _fill(template, values) == full else None


def _entry(key: tuple[Any, ...], template: Template) -> _Entry:
    """``template`` (of ``key``) with the key's bytes as ``_fill_recent`` reads them."""
    kind, origin, head, thread, process, middle, rest = key
    return (kind, origin, head + b",", b"," + thread + b"," + process, middle, rest, template)


_NONE_YET: Any = object()
#: A record's five values as its JSON holds them: the timestamp, the message, and
#: the three times with the two commas between them.
_Values = tuple[bytes, bytes, bytes]


def _fill(template: Template, values: _Values) -> bytes | None:
    """The frame from ``template`` and a record's five values (None if one does not fit)."""
    stamp, message, times = values
    # Exactly three times, each a float as in the template: JSON writes an int, a
    # null or a string otherwise (and a string may hold commas).
    try:
        first, second, third = orjson.loads(b"[%b]" % times)
    except ValueError:
        return None
    if type(first) is not float or type(second) is not float or type(third) is not float:
        return None
    pieces = (
        _U32.pack(len(stamp)) + stamp, _U32.pack(len(message)) + message,
        _DOUBLE.pack(first), _DOUBLE.pack(second), _DOUBLE.pack(third),
    )  # fmt: skip
    chunks, order, fixed = template
    a, b, c, d, e = order
    return b"".join((
        LENGTH.pack(fixed + len(stamp) + len(message)),
        chunks[0], pieces[a], chunks[1], pieces[b], chunks[2], pieces[c],
        chunks[3], pieces[d], chunks[4], pieces[e], chunks[5],
    ))  # fmt: skip
