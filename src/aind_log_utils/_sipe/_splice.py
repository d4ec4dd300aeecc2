"""The usual record's frame, spliced from pickled parts instead of built as one dict.

A frame's pickle is one dict: ``PROTO 2``, ``EMPTY_DICT``, then runs of
``MARK, key, value, ..., SETITEMS``, then ``STOP``. A dict may be filled by any
number of such runs, a later pair winning as in ``dict.update``. So the frame of
a record is spliced from three parts, and unpickles to the very dict
:meth:`~._encode.SipeEncoder.encode_owned` builds:

1. the event's own pickle (its ``message`` taken out), but its ``STOP``;
2. a run of the program's constant attributes (``project``, ``rig_name``,
   ``comp_id``, ``version``, ``args``, ``weblog``), pickled once per distinct set;
3. the record's attributes, the message, the traceback and the stack, pickled as
   a flat list ``[key, value, key, value, ...]``, whose items are exactly a run's
   pairs.

Building one 46-key dict (twenty keys added to the event one update at a time,
the dict growing twice) cost the sender process more than the two pickles: the
splice takes about 40% off a frame, which is most of the sender's work per
record while the server is up.

Only pickles of this module's own fast-mode pickler are spliced, and only after
:func:`_layout_holds` has seen at import that they have the layout above; on a
Python whose pickles differ, :data:`SPLICE_OK` is False and every frame is built
the usual way.
"""

from __future__ import annotations

import io
import pickle
import threading
from collections.abc import Sequence
from typing import Any

__all__ = ["SPLICE_OK", "FrameSplicer", "NotPlain", "pickle_plain"]

_PROTO = b"\x80\x02"
_DICT_HEAD = _PROTO + b"}"
_LIST_HEAD = _PROTO + b"]("
_LIST_TAIL = b"e."
_MARK, _SETITEMS_STOP = b"(", b"u."


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
        pickler = _PlainPickler(buffer, 2)
        pickler.fast = True
    else:
        pickler, buffer = reused
        buffer.seek(0)
        buffer.truncate()
    pickler.dump(value)
    data = buffer.getvalue()
    slot["pickler"] = (pickler, buffer)
    return data


def _list_items(flat: list[Any]) -> bytes:
    """The pickled items of a list of 2 to 1000 items (no MARK, no APPENDS)."""
    return pickle_plain(flat)[len(_LIST_HEAD) : -len(_LIST_TAIL)]


def pairs_run(pairs: dict[str, Any]) -> bytes:
    """The pickled ``key, value, ...`` of ``pairs`` (at least one): a run's inside."""
    flat: list[Any] = []
    for key, value in pairs.items():
        flat += (key, value)
    return _list_items(flat)


class FrameSplicer:
    """Splices frames whose part 3 has these keys (see the module's text).

    Args:
        tail_keys: part 3's keys, in order (the record's attributes, then
            ``msg``, ``exc_text``, ``stack_info``): at least one, at most 500.
    """

    def __init__(self, tail_keys: Sequence[str]) -> None:
        if not 1 <= len(tail_keys) <= 500:
            raise ValueError("tail_keys: between 1 and 500 keys")
        self.tail_keys = tuple(tail_keys)
        template: list[Any] = []
        for key in self.tail_keys:
            template += (key, None)
        self._template = template

    def splice(self, event: dict[str, Any], tail_values: Sequence[Any], constant: bytes) -> bytes:
        """The pickle of ``{**event, **constant pairs, **dict(zip(tail_keys, tail_values))}``.

        Args:
            event: a dict of plain values with str keys (``message`` taken out).
            tail_values: one plain value per key of :attr:`tail_keys`, in order.
            constant: :func:`pairs_run` of the constant attributes.

        Returns:
            The pickle (without the frame's length).

        Raises:
            NotPlain: a value would name a class (build the frame the usual way).
            ValueError: ``tail_values`` has not one value per key.
        """
        flat = self._template.copy()
        flat[1::2] = tail_values  # ValueError unless one per key
        head = pickle_plain(event)
        tail = pickle_plain(flat)
        return b"".join(
            (head[:-1], _MARK, constant, tail[len(_LIST_HEAD) : -len(_LIST_TAIL)], _SETITEMS_STOP)
        )


def _layout_holds() -> bool:
    """True when this Python's pickles have the layout the splice relies on."""
    try:
        sample: dict[str, Any] = {"a": "x", "b": 1, "c": None}
        for event in ({}, {"one": 1.5}, sample):
            data = pickle_plain(event)
            if not (data.startswith(_DICT_HEAD) and data.endswith(b".")):
                return False
        listed = pickle_plain(["k", "v", "n", 2])
        if not (listed.startswith(_LIST_HEAD) and listed.endswith(_LIST_TAIL)):
            return False
        spliced = FrameSplicer(("n", "b")).splice(sample, (2, "y"), pairs_run({"k": "v"}))
        return bool(pickle.loads(spliced) == {**sample, "k": "v", "n": 2, "b": "y"})
    except Exception:
        return False


#: The splice is used (this Python's pickles have the expected layout).
SPLICE_OK = _layout_holds()
