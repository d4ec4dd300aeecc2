"""The Loki sink: records -> items -> the delivery engine -> Loki."""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from .._delivery._params import int_param, path_param
from .._render_values import make_encodable
from .._sink import EngineSink, SinkHandler
from ._encode import (
    LABEL_FIELDS,
    METADATA_FIELDS,
    created_ns,
    frame_item,
    item_frame,
    loki_labels,
    loki_metadata,
    timestamp_ns,
    truncate_line,
    validate_labels,
)
from ._hint import (
    FLAG_DEFINE,
    FLAG_HINTED,
    HINTED,
    FrameIds,
    FrameTable,
    definition,
)
from ._transport import LokiTransport
from ._url import loki_spool_dir, normalize_push_url

__all__ = ["LokiHandler", "LokiSink", "loki_spool_dir", "normalize_push_url"]

#: Loki's default line limit is 256 KB; stay a little under it.
DEFAULT_MAX_LINE_BYTES = 256 * 1024 - 1024
#: The event fields an item's labels and structured metadata are made of.
_FRAME_FIELDS = LABEL_FIELDS + METADATA_FIELDS
#: Distinct label+metadata sets remembered (a context that changes per record
#: must not grow the cache without bound).
_MAX_FRAMES = 1024
#: In front of a line the sender reads back: flag 0 and the record's ``created``.
_WITH_CREATED = struct.Struct(">Bd")
#: In front of :meth:`LokiSink.push_event`'s line: flag 1 and the entry's time in ns.
_WITH_EVENT = struct.Struct(">Bq")
#: A handed-over record's head: its wire header (the length of what follows), then
#: flag 2, ``created`` and the frame's id (a hinted record), or flag 0 and
#: ``created`` (a line the sender reads back). One struct call each.
_HINTED_HEAD = struct.Struct(">I" + HINTED.format.lstrip(">"))
_CREATED_HEAD = struct.Struct(">I" + _WITH_CREATED.format.lstrip(">"))
_pack_hinted_head = _HINTED_HEAD.pack
_pack_created_head = _CREATED_HEAD.pack
_HINTED_SIZE = HINTED.size
_CREATED_SIZE = _WITH_CREATED.size


class LokiSink(EngineSink):
    """Send records to Grafana Loki without blocking the caller and without losing one.

    Each record is encoded on the caller's thread (a few microseconds) and queued
    in the shared delivery engine; a worker thread batches, gzips and pushes. While
    Loki is away records are retried, then spooled on disk and replayed later.

    Args:
        url: Loki's base URL or push URL (``user:pass@`` in it becomes basic auth).
        program: the ``service_name`` label.
        labels: static labels (validated against Loki's rules).
        tenant_id: sent as ``X-Scope-OrgID``.
        username: basic-auth user.
        password: basic-auth password.
        bearer_token: sent as ``Authorization: Bearer ...``.
        verify: TLS verification: True, False, or a CA bundle path.
        structured_metadata: send the high-cardinality fields as structured metadata.
        max_line_bytes: longer lines are truncated to valid JSON with a marker.
        spool_dir: where to spool (default: one folder per URL and tenant in the
            user cache directory).
        **engine_options: passed to :class:`DeliveryEngine` (``max_batch_bytes``,
            ``batch_wait_s``, ``retry_start_s``, ``retry_factor``, ``retry_max_s``,
            ``timeout_s``, ``flush_timeout_s``, ``max_queue_bytes``,
            ``max_spool_bytes``, ...).

    Raises:
        ValueError: a bad URL, label, or engine option (the message names it).
        TypeError: an option of the wrong type.
    """

    name = "loki"

    def __init__(
        self,
        url: str,
        *,
        program: str = "python",
        labels: Mapping[str, Any] | None = None,
        tenant_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        bearer_token: str | None = None,
        verify: bool | str = True,
        structured_metadata: bool = True,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        spool_dir: str | os.PathLike[str] | None = None,
        delivery: str = "auto",
        **engine_options: Any,
    ) -> None:
        spec_kwargs = {
            "program": program, "labels": labels, "tenant_id": tenant_id, "username": username,
            "password": password, "bearer_token": bearer_token, "verify": verify,
            "structured_metadata": structured_metadata, "max_line_bytes": max_line_bytes,
            "spool_dir": spool_dir, **engine_options,
        }  # fmt: skip
        self.push_url, url_auth = normalize_push_url(url)
        self._static_labels = validate_labels(labels)
        self.program = program
        if (
            isinstance(max_line_bytes, bool)
            or not isinstance(max_line_bytes, int)
            or max_line_bytes < 1024
        ):
            raise ValueError(f"max_line_bytes: expected an int >= 1024, got {max_line_bytes!r}")
        if not isinstance(verify, (bool, str)):
            raise TypeError(
                f"loki_verify: expected a bool or a CA bundle path, got {type(verify).__name__}"
            )
        if isinstance(verify, str) and not Path(verify).exists():
            raise ValueError("loki_verify: the CA bundle file does not exist")
        self.max_line_bytes = max_line_bytes
        auth = (username, password or "") if username else url_auth
        headers: dict[str, str] = {}
        credentials = (
            ("loki_tenant_id", tenant_id), ("loki_username", username),
            ("loki_password", password), ("loki_bearer_token", bearer_token),
        )  # fmt: skip
        for param, value in credentials:
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{param}: expected a str, got {type(value).__name__}")
        for param, value in (("loki_tenant_id", tenant_id), ("loki_bearer_token", bearer_token)):
            if value and not str(value).isprintable():
                raise ValueError(f"{param}: holds a control character (CR, LF, ...)")
        if tenant_id:
            headers["X-Scope-OrgID"] = str(tenant_id)
        if bearer_token:
            if auth is not None:
                raise ValueError(
                    "loki_bearer_token: give either a bearer token or basic auth, not both"
                )
            headers["Authorization"] = f"Bearer {bearer_token}"
        secrets = [s for s in (password, bearer_token, url_auth[1] if url_auth else None) if s]
        if secrets:
            from .._redact import register_secret

            register_secret(*[s for s in secrets if len(s) >= 4])
        max_batch = int_param("max_batch_bytes", engine_options.pop("max_batch_bytes", 1 << 20), 1)
        if max_batch > 4 * 1024 * 1024 - 64 * 1024:
            raise ValueError("max_batch_bytes: must stay well under Loki's 4 MiB push limit")
        self._transport: LokiTransport = LokiTransport(
            self.push_url,
            headers=headers,
            auth=auth,
            verify=verify,
            max_batch_bytes=max_batch,
            structured_metadata=structured_metadata,
        )
        self.structured_metadata = structured_metadata
        self.spool_dir = path_param("spool_dir", spool_dir) or loki_spool_dir(
            self.push_url, tenant_id
        )
        self._start_delivery(
            self._transport,
            (__name__, "LokiSink", (url,), spec_kwargs),
            delivery,
            self.spool_dir,
            {"max_batch_bytes": max_batch, **engine_options},
        )
        #: Frames by the id :attr:`_cache_ids` gave them (this process's own cache).
        self._frames: dict[int, tuple[bytes, bytes]] = {}
        self._cache_ids = FrameIds(_FRAME_FIELDS)
        self._frame_ids = FrameIds(_FRAME_FIELDS)  # the program's side (process delivery)
        self._defined = FrameTable()  # the sender's side

    def __repr__(self) -> str:
        return f"<LokiSink {self.push_url} program={self.program!r}>"

    def _frame(self, event: Mapping[str, Any]) -> tuple[bytes, bytes]:
        """The item's bytes around its timestamp and line: once per distinct labels+metadata.

        Cached by the id :class:`FrameIds` gives the event's frame fields: its quick
        lookup (one ``itemgetter``) finds the usual record's, where building a
        type-aware key of all the fields cost about 0.5 us a record.
        """
        ids = self._cache_ids
        try:
            frame_id = ids.lookup(event, 0)
            if frame_id is None:
                assigned = ids.assign(event)
                frame_id = None if assigned is None else assigned[0]
        except Exception:  # an odd mapping: build its frame, don't cache it
            frame_id = None
        frame = None if frame_id is None else self._frames.get(frame_id)
        if frame is None:
            labels = orjson.dumps(loki_labels(event, self.program, self._static_labels))
            meta = loki_metadata(event) if self.structured_metadata else None
            frame = item_frame(labels, orjson.dumps(meta) if meta else None)
            if frame_id is not None:  # ids are never reused: an id names one frame
                if len(self._frames) >= _MAX_FRAMES:
                    self._frames.clear()
                self._frames[frame_id] = frame
        return frame

    def push_event(self, event: Mapping[str, Any], line: bytes, ts_ns: int | None = None) -> None:
        """Queue one rendered record for Loki; never blocks, never raises.

        Args:
            event: the redacted event.
            line: its JSON line.
            ts_ns: the entry's time in ns (default: the event's ``timestamp``).
        """
        try:
            if ts_ns is None:
                ts_ns = timestamp_ns(event)
                if ts_ns is None:
                    return
            try:
                self._push(event, line, ts_ns)
            except TypeError:  # orjson refused a value: an integer beyond 64 bits, a
                # lone surrogate (a record's event never has one: the renderer fixed it)
                self._push(make_encodable(event), line, ts_ns)
        except Exception:
            self.engine._count_error("encode", RuntimeError("encoding failed"))

    def _push(self, event: Mapping[str, Any], line: bytes, ts_ns: int) -> None:
        if self._link is not None:  # the sender process encodes it, from this event
            event_json = orjson.dumps(event, default=str)
            self._link.submit(line, _WITH_EVENT.pack(1, ts_ns) + event_json + b"\n")
        else:
            self.engine.submit(self._item(line, ts_ns, event))

    def _item(
        self,
        line: bytes,
        ts_ns: int,
        event: Mapping[str, Any] | None = None,
        frame: tuple[bytes, bytes] | None = None,
    ) -> bytes:
        """The engine's item for one record: its frame, time and (truncated) line.

        The event is read back from the line only when it is needed: no ``frame``
        is known, or the line must be truncated.
        """
        body = line[:-1] if line[-1:] == b"\n" else line
        too_long = len(body) > self.max_line_bytes
        if frame is None or too_long:
            if event is None:
                event = orjson.loads(line)
            if too_long:
                body = truncate_line(event, body, self.max_line_bytes)
            if frame is None:
                frame = self._frame(event)
        return frame_item(frame, ts_ns, body)

    def handle_event(
        self, event: Mapping[str, Any], line: bytes, record: logging.LogRecord
    ) -> None:
        """Sink interface: queue the record."""
        link = self._link
        if link is None:
            self.push_event(event, line, created_ns(record.created))
            return
        # The caller's whole share: the line, its time and the id of its frame.
        try:
            frame_id = self._frame_ids.lookup(event, link.generation)
            if frame_id is None:
                frame_id = self._new_frame_id(event, link)
        except Exception:  # an odd mapping: the sender reads the line back
            frame_id = 0
        if frame_id:
            size = _HINTED_SIZE + len(line)
            link.hand(_pack_hinted_head(size, FLAG_HINTED, record.created, frame_id), line)
        else:
            link.hand(_pack_created_head(_CREATED_SIZE + len(line), 0, record.created), line)

    def _new_frame_id(self, event: Mapping[str, Any], link: Any) -> int:
        """The id of a frame the quick lookup did not find (defined to the sender if new).

        Returns 0 when the frame gets no id: the sender then reads the line back.
        """
        assigned = self._frame_ids.assign(event)
        if assigned is None:
            return 0
        frame_id, new = assigned
        if new:  # the definition goes ahead of every record that names it
            prefix, payload = definition(frame_id, self._frame(event))
            link.submit(payload, prefix)
        return frame_id

    def host_records(self, payloads: list[bytes]) -> None:
        """In the sender process: encode and queue the records of one read, in order.

        Each payload is a flag, 8 bytes of time and the JSON line. The time is the
        record's ``created`` (a double, made into the entry's nanoseconds here)
        after flags 0 and 2, the entry's nanoseconds after flag 1:

        - flag 2: a frame id follows the time (see :mod:`._hint`); the entry is
          made from the frame the program defined for it, without reading the
          line, unless the id is unknown here or the line must be truncated;
        - flag 3: no record, the definition of a frame id;
        - flag 0: the event is read back from the line, which holds every field
          the labels, the structured metadata and a truncation need;
        - flag 1 (:meth:`push_event` called with an event of its own): the
          event's JSON and a newline come before the line.

        The items go to the engine in one call: one lock for the whole read.
        """
        engine = self._thread_engine()
        items: list[bytes] = []
        append = items.append
        bad = 0
        frames = self._defined
        known, unpack, dumps = frames.get, HINTED.unpack_from, orjson.dumps
        start, limit = HINTED.size, self.max_line_bytes
        for payload in payloads:
            try:
                flag = payload[0]
                if flag == FLAG_HINTED:
                    _, created, frame_id = unpack(payload)
                    frame = known(frame_id)
                    end = len(payload) - (payload[-1] == 10)  # without the newline
                    if frame is not None and end - start <= limit:
                        # The usual record: frame_item(frame, created_ns(created), line)
                        # written out, without the calls (about 0.3 us of 2.3 a line).
                        secs = int(created)
                        ts_ns = secs * 1_000_000_000 + int((created - secs) * 1e6) * 1000
                        text = dumps(payload[start:end].decode("utf-8", "replace"))
                        append(b"".join((frame[0], b'%d",' % ts_ns, text, frame[1])))
                    else:  # an id unknown here (the line is read back), or a long line
                        append(self._item(payload[start:], created_ns(created), frame=frame))
                elif flag == FLAG_DEFINE:
                    frames.define(unpack(payload)[2], payload[start:])
                elif flag == 0:
                    created = _WITH_CREATED.unpack_from(payload)[1]
                    append(self._item(payload[_WITH_CREATED.size :], created_ns(created)))
                else:
                    ts_ns = _WITH_EVENT.unpack_from(payload)[1]
                    event_json, _, line = payload[_WITH_EVENT.size :].partition(b"\n")
                    append(self._item(line, ts_ns, orjson.loads(event_json)))
            except Exception:
                bad += 1
        if bad:
            engine._count_error("decode", RuntimeError(f"{bad} record(s) were unreadable"))
        engine.submit_many(items)


class LokiHandler(SinkHandler):
    """A stdlib handler that sends records to Loki (for use without ``setup_logging``).

    Records are rendered exactly as ``setup_logging`` renders them (standard
    fields, context, redaction) and sent by a :class:`LokiSink`.

    Args:
        url: Loki's base or push URL.
        level: the handler's level.
        static_fields: fields added to every record.
        **options: passed to :class:`LokiSink` (``program``, ``labels``, auth, ...).
    """

    def __init__(self, url: str, level: int = logging.NOTSET, *,
                 static_fields: Mapping[str, Any] | None = None, **options: Any) -> None:  # fmt: skip
        self.sink: LokiSink = LokiSink(url, **options)
        super().__init__(self.sink, static_fields, level)

    def __repr__(self) -> str:
        return f"<LokiHandler {self.sink.push_url}>"
