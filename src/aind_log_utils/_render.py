"""The record pipeline: collect fields, redact them, serialise them, once per record.

:class:`Renderer` turns a :class:`logging.LogRecord` into the redacted event dict
and the one JSON line every sink receives. The three steps stay separate:

1. collect: timestamp, level, message, the record's standard attributes, the
   static fields given at setup, the bound context and the call's ``extra=``
   (later steps win: ``extra=`` > context > static);
2. redact: every value is made safe (:mod:`aind_log_utils._redact`) - never in the
   serialiser;
3. serialise: orjson, strict JSON, one line, valid UTF-8.

It never mutates the record and never raises: a value that cannot be rendered is
replaced by a marker, and a record that cannot be rendered at all still gives one
valid line saying so.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ._context import _CONTEXT
from ._redact import MASK, is_secret_key, redact, redact_text
from ._render_values import (
    CACHE_MAX,
    PROTECTED,
    as_text,
    cache_text,
    default_value,
    format_exception,
    format_timestamp,
    make_encodable,
    mask_secret_args,
    message_of,
    out_key,
    value_caches,
)

__all__ = ["PROTECTED", "RECORD_ATTRS", "Renderer", "format_timestamp"]

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
RECORD_ATTRS = frozenset(
    {
        "args",
        "asctime",
        "created",
        "exc_info",
        "exc_text",
        "filename",
        "funcName",
        "levelname",
        "levelno",
        "lineno",
        "message",
        "module",
        "msecs",
        "msg",
        "name",
        "pathname",
        "process",
        "processName",
        "relativeCreated",
        "stack_info",
        "taskName",
        "thread",
        "threadName",
    }
)
_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _base_layout() -> tuple[int, str]:
    keys = list(logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None).__dict__)
    return len(keys), keys[-1]


#: The event's first keys, from the record, in this order.
_HEAD_KEYS = (
    "timestamp", "level", "message", "logger", "lineno",
    "process", "processName", "thread", "threadName",
)  # fmt: skip
#: How many attributes LogRecord.__init__ sets, and the last one's name.
_BASE_COUNT, _BASE_LAST = _base_layout()


class Renderer:
    """Render records to ``(event, line)``; configured once, used for every record.

    Args:
        static_fields: fields added to every record (already validated); they are
            redacted once, here.
        include_attrs: extra LogRecord attributes to include (e.g. from a format
            string such as ``"%(funcName)s"``).
        exclude_attrs: record attributes never to treat as extras.
        rename_fields: output key renames, e.g. ``{"message": "msg"}``.
        prefix: text put before each JSON line (python-json-logger's ``prefix``).
    """

    def __init__(
        self,
        static_fields: Mapping[str, Any] | None = None,
        *,
        include_attrs: Iterable[str] = (),
        exclude_attrs: Iterable[str] = (),
        rename_fields: Mapping[str, str] | None = None,
        prefix: str = "",
    ) -> None:
        self._static: dict[str, Any] = {}
        for key, value in (static_fields or {}).items():
            if value is None:
                continue  # unknown fields are left out, never "undefined"
            self._static[str(key)] = MASK if is_secret_key(str(key)) else redact(value)
        self._skip = RECORD_ATTRS | frozenset(exclude_attrs) | {"weblog"}
        self._include = tuple(a for a in include_attrs if a not in _BUILTIN_ATTRS)
        self._rename = dict(rename_fields or {})
        self._prefix = prefix.encode("utf-8")
        self._ts_cache: tuple[int, str] = (-1, "")
        self._last: tuple[logging.LogRecord, dict[str, Any], bytes] | None = None
        self._template = self._make_template()

    def _make_template(self) -> dict[str, Any] | None:
        """The event's first keys, in order, with the static fields' values.

        Each record's event is a copy with the record's values put in: a copy
        that never grows, where a new dict took the static fields one by one.
        None when a static field has the name of a record attribute the event
        holds: the static value then wins, which the template cannot express.
        """
        head = (*_HEAD_KEYS, *self._include)
        if not self._static.keys().isdisjoint(head):
            return None
        template = dict.fromkeys(head)
        template.update(self._static)
        return template

    @property
    def static_fields(self) -> Mapping[str, Any]:
        """The redacted static fields added to every record."""
        return self._static

    def with_static(self, static_fields: Mapping[str, Any]) -> Renderer:
        """Return a renderer like this one with other static fields."""
        clone = Renderer.__new__(Renderer)
        clone.__dict__.update(self.__dict__)
        clone._static = Renderer(static_fields)._static
        clone._template = clone._make_template()
        return clone

    def _timestamp(self, created: float) -> str:
        secs = int(created)
        cached = self._ts_cache
        if cached[0] != secs:
            cached = (secs, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)))
            self._ts_cache = cached
        # %-formatting: ~0.1 us cheaper here than an f-string with a format spec;
        # %d truncates a float as int() does.
        return "%s.%06dZ" % (cached[1], (created - secs) * 1e6)  # noqa: UP031

    def render(self, record: logging.LogRecord) -> tuple[dict[str, Any], bytes]:
        """Render one record; never raises.

        Args:
            record: the record (read, never modified).

        Returns:
            The redacted event dict and the JSON line (UTF-8, ending in newline).
        """
        last = self._last
        if last is not None and last[0] is record:
            # The same record through a second handler sharing this renderer (a
            # session and an open RunDirectory): render once, not twice.
            return last[1], last[2]
        try:
            event, line = self._encode(self.collect(record))
            self._last = (record, event, line)
            return event, line
        except Exception as exc:  # last resort: still one valid line
            event = {
                "timestamp": format_timestamp(time.time()),
                "level": getattr(record, "levelname", "ERROR"),
                "message": "<record could not be rendered>",
                "error_type": type(exc).__name__,
            }
            return event, self.serialize(event)

    def collect(self, record: logging.LogRecord) -> dict[str, Any]:
        """Collect and redact the fields of one record (steps 1 and 2)."""
        msg = record.msg
        fields_from_msg: Mapping[str, Any] | None = None
        args = record.args
        if type(msg) is str:
            if not args:
                message = msg
            else:
                try:  # LogRecord.getMessage() for a str, without its two calls
                    if type(args) is not tuple and isinstance(args, Mapping):
                        args = mask_secret_args(args)  # "%(password)s": by its key
                    message = msg % args
                except Exception:
                    message = message_of(record)  # says the formatting failed
        elif isinstance(msg, Mapping) and not args:
            fields_from_msg, message = msg, ""
        else:
            message = message_of(record)
        template = self._template
        event: dict[str, Any] = {} if template is None else template.copy()
        caches = value_caches()
        texts = caches[1]
        # In _HEAD_KEYS' order (a new dict keeps the order of first assignment).
        event["timestamp"] = self._timestamp(record.created)
        event["level"] = record.levelname
        event["message"] = redact_text(message)
        # Names are scrubbed too (a logger named after a DSN, a thread after a URL),
        # through the text cache: a name already seen costs one lookup.
        name: Any = record.name
        event["logger"] = (
            (texts.get(name) or cache_text(name, texts)) if type(name) is str else redact(name)
        )
        event["lineno"] = record.lineno
        event["process"] = as_text(record.process)
        name = record.processName
        event["processName"] = (
            (texts.get(name) or cache_text(name, texts)) if type(name) is str else redact(name)
        )
        event["thread"] = as_text(record.thread)
        name = record.threadName
        event["threadName"] = (
            (texts.get(name) or cache_text(name, texts)) if type(name) is str else redact(name)
        )
        for attr in self._include:
            event[attr] = redact(getattr(record, attr, None))
        if template is None:
            event.update(self._static)
        context = _CONTEXT.get()
        if context:
            self._merge(event, context.items(), caches)
        if fields_from_msg:
            self._merge(event, fields_from_msg.items(), caches)
        attrs = record.__dict__
        if len(attrs) > _BASE_COUNT:
            # Extras are set after LogRecord.__init__, so they sit at the end of
            # __dict__; skip the standard attributes without testing each one,
            # unless a custom record factory changed the order.
            items: Iterable[tuple[str, Any]] = attrs.items()
            tail = itertools.islice(items, _BASE_COUNT - 1, None)
            if next(tail)[0] == _BASE_LAST:
                items = tail
            self._merge(event, items, caches, self._skip)
        if record.exc_info:
            exc_type = record.exc_info[0]
            if exc_type is not None:
                event["error_type"] = exc_type.__name__
                event["stack_trace"] = redact_text(format_exception(record.exc_info))
        elif record.exc_text:
            event["stack_trace"] = redact_text(record.exc_text)
        if record.stack_info:
            event["stack_info"] = redact_text(str(record.stack_info))
        if self._rename:
            event = {self._rename.get(k, k): v for k, v in event.items()}
        return event

    @staticmethod
    def _merge(
        event: dict[str, Any],
        items: Iterable[tuple[Any, Any]],
        caches: tuple[dict[Any, tuple[str, bool]], dict[str, str]],
        skip: frozenset[str] = frozenset(),
    ) -> None:
        """Add redacted fields to ``event``: the hot loop of every record.

        ``caches`` are :func:`value_caches`, taken once for the record.
        """
        keys, texts = caches
        for key, value in items:
            if key in skip:
                continue
            out = keys.get(key)
            if out is None:
                out = out_key(key)
                if len(keys) < CACHE_MAX:
                    keys[key] = out
            name, secret = out
            if secret:
                event[name] = MASK
                continue
            cls = type(value)
            if cls is str:
                clean = texts.get(value)
                if clean is None:
                    clean = cache_text(value, texts)
                event[name] = clean
            elif cls is int or cls is bool or value is None:
                event[name] = value
            elif cls is float:
                event[name] = value if math.isfinite(value) else repr(value)
            else:
                event[name] = redact(value)

    def serialize(self, event: Mapping[str, Any]) -> bytes:
        """Serialise an event to one strict-JSON line (step 3); never raises."""
        return self._encode(event if type(event) is dict else dict(event))[1]

    def _encode(self, event: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """The event as serialised, and its line; never raises.

        The event itself, unless orjson refused it (a lone surrogate, an integer
        beyond 64 bits): then a copy made encodable (:func:`make_encodable`), so
        that every sink gets the values the line holds.
        """
        try:
            line = orjson.dumps(event, default=default_value, option=_OPTIONS)
        except Exception:
            try:
                fixed = make_encodable(redact(dict(event)))
                line = orjson.dumps(fixed, default=default_value, option=_OPTIONS)
                event = fixed
            except Exception as exc:
                event = {
                    "timestamp": event.get("timestamp", format_timestamp(time.time())),
                    "level": event.get("level", "ERROR"),
                    "message": "<record could not be serialised>",
                    "error_type": type(exc).__name__,
                }
                line = orjson.dumps(make_encodable(event), option=_OPTIONS)
        return event, (self._prefix + line if self._prefix else line)


_BUILTIN_ATTRS = frozenset(
    {
        "created",
        "levelname",
        "msg",
        "message",
        "args",
        "lineno",
        "process",
        "processName",
        "thread",
        "threadName",
        "name",
        "exc_info",
        "exc_text",
        "stack_info",
    }
)
