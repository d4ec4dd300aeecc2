"""The SIPE sink: records -> frames -> the delivery engine -> the legacy log server."""

from __future__ import annotations

import logging
import os
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from .._args import parse_level
from .._delivery._params import path_param
from .._sink import EngineSink, SinkHandler
from ._address import DEFAULT_PORT, parse_sipe_url, sipe_spool_dir
from ._encode import (
    PACKED_MARK,
    SESSION_LOGGER,
    START_STOP,
    SipeEncoder,
    get_record_attrs,
    named,
    record_values,
    start_stop_message,
)
from ._frame import plain
from ._template import FrameTemplates, Origin
from ._transport import SipeTransport

__all__ = ["DEFAULT_PORT", "SipeHandler", "SipeSink", "parse_sipe_url", "sipe_spool_dir"]

#: TCP has no request size limit: bigger batches mean fewer wake-ups of the worker
#: (each costs it a GIL hand-over from a busy logging thread).
DEFAULT_MAX_BATCH_BYTES = 4 * 1024 * 1024
_START_STOP_NAME = "START_STOP"
#: What a packed record is sent as (process delivery).
_PLAIN_KIND, _WEBLOG_KIND, _START_STOP_KIND = 0, 1, 2
_KINDS = (_PLAIN_KIND, _WEBLOG_KIND, _START_STOP_KIND)
_KIND_BYTES = (b"\x00", b"\x01", b"\x02")
#: A packed record's wire header (the length of what follows) and its kind byte.
_pack_head = struct.Struct(">IB").pack
_ATTRS_OPTIONS = orjson.OPT_APPEND_NEWLINE
#: How a plain or a weblog record's frame differs from the record.
_AS_PLAIN: Mapping[str, Any] = {"weblog": False}
_AS_WEBLOG: Mapping[str, Any] = {"weblog": True}


class SipeSink(EngineSink):
    """Send records to the legacy SIPE log server without blocking the caller.

    Each record that SIPE should see is encoded on the caller's thread into one
    frame (4-byte length + pickle of a dict of plain values, built from the
    redacted event) and queued in the shared delivery engine; a worker thread
    writes the frames to one persistent TCP connection, reconnects with backoff,
    spools on disk while the server is away, and is flushed within a bound at
    exit.

    Which records go (as the SIPE clients decide): records at or above ``level``
    (default WARNING: "above INFO"); records below it only when the call says
    ``extra={"weblog": True}``; and the session's start and stop lines, as
    START_STOP (35) records reading ``"Action, Start, log_session, <id>,
    WinUserID, <user>,"``.

    Args:
        url: ``http://host:port``, ``tcp://host:port`` or ``host:port`` (port
            9000 by default).
        program: the program's name (the ``project`` attribute).
        fields: the session's static fields (``rig_id``, ``software_version``,
            ``hostname``, ``log_session``, ``user_id`` are read from them).
        level: records at or above this level always go (a number or a name).
        start_stop_lines: turn the session's "Starting"/"Stopping" lines into
            START_STOP lines (default True).
        spool_dir: where to spool (default: one folder per host and port in the
            user cache directory).
        **engine_options: passed to :class:`DeliveryEngine` (``max_batch_bytes``,
            default 4 MiB here, ``batch_wait_s``,
            ``retry_start_s``, ``retry_factor``, ``retry_max_s``, ``timeout_s``,
            ``flush_timeout_s``, ``max_queue_bytes``, ``max_spool_bytes``, ...).

    Raises:
        ValueError: a bad URL, level or engine option (the message names it).
        TypeError: an option of the wrong type.
    """

    name = "sipe"

    def __init__(
        self,
        url: str,
        *,
        program: str = "python",
        fields: Mapping[str, Any] | None = None,
        level: int | str = logging.WARNING,
        start_stop_lines: bool = True,
        spool_dir: str | os.PathLike[str] | None = None,
        delivery: str = "auto",
        **engine_options: Any,
    ) -> None:
        self.host, self.port = parse_sipe_url(url)
        #: Records at or above this level always go; below it only with ``weblog``.
        self.always_level = parse_level(level, "sipe_level")
        if fields is not None and not isinstance(fields, Mapping):
            raise TypeError(f"fields: expected a mapping, got {type(fields).__name__}")
        if not isinstance(start_stop_lines, bool):
            raise TypeError("start_stop_lines: expected a bool")
        self.start_stop_lines = start_stop_lines
        self._encoder = SipeEncoder(program, fields)
        self.program = self._encoder.program
        max_batch = engine_options.pop("max_batch_bytes", DEFAULT_MAX_BATCH_BYTES)
        self._transport: SipeTransport = SipeTransport(
            self.host, self.port, max_batch_bytes=max_batch
        )
        self._transport.expand = self.expand
        self._templates = FrameTemplates(self._encode_packed)
        #: Who wrote a packed record: (program, aibs_rig_id, aibs_comp_id).
        self._origin = orjson.dumps(
            [self._encoder.program, self._encoder.rig_name_env, self._encoder.comp_id_env]
        )
        self.spool_dir = path_param("spool_dir", spool_dir) or sipe_spool_dir(self.host, self.port)
        spec_kwargs = {
            "program": program,
            # the sender must stamp the same session id on the start and stop lines
            "fields": {**(fields or {}), "log_session": self._encoder.log_session},
            "level": level,
            "start_stop_lines": start_stop_lines,
            "spool_dir": spool_dir,
            "max_batch_bytes": max_batch,
            **engine_options,
        }
        self._start_delivery(
            self._transport,
            (__name__, "SipeSink", (url,), spec_kwargs),
            delivery,
            self.spool_dir,
            {"max_batch_bytes": max_batch, **engine_options},
        )

    def __repr__(self) -> str:
        return f"<SipeSink {self.host}:{self.port} program={self.program!r}>"

    @property
    def address(self) -> tuple[str, int]:
        """The server's ``(host, port)``."""
        return self.host, self.port

    @property
    def log_session(self) -> str:
        """The session id the start and stop lines carry (unless the event has one)."""
        return self._encoder.log_session

    def handle_event(
        self, event: Mapping[str, Any], line: bytes, record: logging.LogRecord
    ) -> None:
        """Sink interface: queue the record if SIPE should see it; never blocks, never raises.

        Args:
            event: the redacted event.
            line: its JSON line (unused: SIPE gets a pickled dict).
            record: the record, read for its standard attributes, never modified.
        """
        # The caller's whole share, with the level/weblog decision and the packing
        # inline: each call saved was measurable beside the ~15 us of a record.
        try:
            if (
                record.name == SESSION_LOGGER
                and self.start_stop_lines
                and _start_or_stop(event) is not None
            ):
                kind = _START_STOP_KIND
            elif record.levelno >= self.always_level:
                kind = _PLAIN_KIND
            elif getattr(record, "weblog", None) or event.get("weblog"):
                kind = _WEBLOG_KIND
            else:
                return
            link = self._link
            if link is None and not self.engine.spilling:
                self.engine.submit(self._encode(kind, event, record))
                return
            # Process delivery (the sender encodes), or a thread-mode engine that
            # spools while the server is away (the frame is made when the record is
            # sent, not now: pickling took a third of a record's time). The caller
            # packs what the line lacks (the record's own attributes, and a newline)
            # in front of it.
            try:
                values = get_record_attrs(record.__dict__)
                if event.get("logger") != values[0]:  # scrubbed by the renderer
                    values = named(values, event)
                attrs = orjson.dumps(values, default=str, option=_ATTRS_OPTIONS)
            except (KeyError, TypeError):  # a hand-made record, or a factory's objects
                values = named([plain(value) for value in record_values(record)], event)
                attrs = orjson.dumps(values, option=_ATTRS_OPTIONS)
            if link is not None:
                link.hand(_pack_head(1 + len(attrs) + len(line), kind) + attrs, line)
            else:
                self.engine.submit(self._spool_form(_KIND_BYTES[kind], attrs, line))
        except Exception:
            self.engine._count_error("encode", RuntimeError("encoding failed"))

    def _encode(self, kind: int, event: Mapping[str, Any], record: logging.LogRecord) -> bytes:
        """The frame of one live record SIPE should see, as ``kind``."""
        return self._encoder.encode(event, record, **self._as_kind(kind, event))

    def _as_kind(self, kind: int, event: Mapping[str, Any]) -> Mapping[str, Any]:
        """How the frame of a record sent as ``kind`` differs from the record."""
        if kind != _START_STOP_KIND:
            return _AS_WEBLOG if kind == _WEBLOG_KIND else _AS_PLAIN
        encoder = self._encoder
        action = _start_or_stop(event) or "Start"
        message = start_stop_message(
            action, event.get("log_session") or encoder.log_session, encoder.user(event)
        )
        return {"message": message, "levelno": START_STOP, "levelname": _START_STOP_NAME}

    def host_records(self, payloads: list[bytes]) -> None:
        """In the sender process: encode the records of one read and queue them in one call.

        While the engine spools (the server is away) a record is not encoded at all:
        it is spooled packed, with who wrote it, and :meth:`expand` makes its frame
        when it is sent (by this process or a later one). Encoding each record as it
        comes made the sender slower than the program while the server was away.
        """
        engine = self._thread_engine()
        if engine.spilling:
            engine.submit_many([self._spool_form(p[:1], p[1:]) for p in payloads])
            return
        frames: list[bytes] = []
        bad = 0
        for payload in payloads:
            frame = self._frame_of(payload[0], payload[1:], None)
            if frame is None:
                bad += 1
            else:
                frames.append(frame)
        if bad:
            engine._count_error("encode", RuntimeError(f"{bad} record(s) could not be encoded"))
        engine.submit_many(frames)

    def _spool_form(self, kind: bytes, *packed: bytes) -> bytes:
        """What a packed record (its kind byte; attributes, newline, line) is spooled as.

        It says who wrote it; :meth:`expand` makes its frame when it is sent. The
        packed parts are joined here, once.
        """
        return b"".join((PACKED_MARK, kind, self._origin, b"\n", *packed))

    def _frame_of(self, kind: int, packed: bytes, origin: Origin) -> bytes | None:
        """The frame of a packed record (attributes, newline, line); None if unreadable.

        From a template where the record is like one seen before (:mod:`._template`),
        except a start or stop line, whose frame depends on its message.
        """
        attrs, _, line = packed.partition(b"\n")
        if kind == _START_STOP_KIND:
            return self._encode_packed(kind, attrs, line, origin)
        try:
            return self._templates.frame(kind, attrs, line, origin)
        except Exception:  # a flaw there must not cost the record
            return self._encode_packed(kind, attrs, line, origin)

    def _encode_packed(self, kind: int, attrs: bytes, line: bytes, origin: Origin) -> bytes | None:
        """The frame of a packed record, encoded in full; None if unreadable."""
        try:
            event = orjson.loads(line)
            values = orjson.loads(attrs)
            if type(event) is not dict or type(values) is not list or kind not in _KINDS:
                raise ValueError("not a packed record")
            # The event read back is this call's own: it becomes the frame's dict (the
            # arguments are all read from it before the call changes it). A line with
            # no "[" and no "{" but its first holds no list or dict: every value read
            # back from it is plain (a string holding either only costs the check).
            flat = line.find(b"{", 1) < 0 and line.find(b"[") < 0
            return self._encoder.encode_owned(
                event, values, origin=origin, stack_trace=event.get("stack_trace"),
                stack_info=event.get("stack_info"), plain_values=flat,
                plain_record=attrs.find(b"[", 1) < 0 and attrs.find(b"{") < 0,
                **self._as_kind(kind, event),
            )  # fmt: skip
        except Exception:
            return None

    def expand(self, item: bytes) -> bytes | None:
        """Make the frame of a record spooled packed (see :meth:`host_records`).

        The frame says who wrote it (``project``, ``rig_name``, ``comp_id``), not
        who replays it. Returns None (and counts an error) for an unreadable item.
        """
        try:
            kind = item[len(PACKED_MARK)]
            origin_json, _, packed = item[len(PACKED_MARK) + 1 :].partition(b"\n")
            program, rig_name, comp_id = orjson.loads(origin_json)
            frame = self._frame_of(kind, packed, (str(program), rig_name, comp_id))
        except Exception:
            frame = None
        if frame is None:
            self.engine._count_error("decode", RuntimeError("a spooled record was unreadable"))
        return frame

    def counters(self) -> dict[str, Any]:
        """The delivery counters: sent, retried, spooled, replayed, rejected, dropped, ..."""
        if self._link is not None:  # the sender's counters hold its transport's
            return super().counters()
        return {**super().counters(), "connects": self._transport.connects}


def _start_or_stop(event: Mapping[str, Any]) -> str | None:
    kind = event.get("event_type")
    message = event.get("message")
    if kind == "stage_start" and message == "Starting":
        return "Start"
    if kind in ("stage_complete", "stage_failure") and message == "Stopping":
        return "Stop"
    return None


def _script_name() -> str:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    return (Path(argv0).stem if argv0 not in ("", "-c", "-m") else "") or "python"


class SipeHandler(SinkHandler):
    """A stdlib handler that sends records to the SIPE log server.

    The drop-in for ``logging.handlers.SocketHandler`` (and mpetk's
    ``WebHandler``) that never blocks the caller, never loses a record while the
    server is away, and never pickles an object: records are rendered exactly
    as ``setup_logging`` renders them (standard fields, context, redaction) and
    sent by a :class:`SipeSink`::

        handler = SipeHandler("http://eng-logtools.corp.alleninstitute.org:9000",
                              program="water-log")
        logging.getLogger().addHandler(handler)
        logging.getLogger("rig").info("session started", extra={"weblog": True})

    Args:
        url: ``http://host:port``, ``tcp://host:port`` or ``host:port`` (port 9000).
        level: the handler's own threshold (stdlib; default NOTSET).
        sipe_level: records at or above this level always go; below it only with
            ``extra={"weblog": True}`` (default WARNING).
        program: the ``project`` attribute (default: the script's name).
        static_fields: fields added to every record (``rig_id``,
            ``software_version``, ``subject_id``, ...; a ``log_session`` is made
            up when not given).
        **options: passed to :class:`SipeSink` (``spool_dir``, delivery options).

    Raises:
        ValueError: a bad URL, level or option (the message names it).
        TypeError: an option of the wrong type.
    """

    def __init__(self, url: str, level: int = logging.NOTSET, *,
                 sipe_level: int | str = logging.WARNING, program: str | None = None,
                 static_fields: Mapping[str, Any] | None = None, **options: Any) -> None:  # fmt: skip
        fields = dict(static_fields or {})
        self.sink: SipeSink = SipeSink(
            url, program=program or _script_name(), fields=fields, level=sipe_level, **options
        )
        fields.setdefault("log_session", self.sink.log_session)
        super().__init__(self.sink, fields, level)

    def __repr__(self) -> str:
        return f"<SipeHandler {self.sink.host}:{self.sink.port}>"
