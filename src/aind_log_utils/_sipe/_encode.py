"""One record -> one SIPE frame: a 4-byte big-endian length and a pickled plain dict.

The frame is what :meth:`logging.handlers.SocketHandler.makePickle` produces, so
the log server (the logging cookbook's socket receiver) rebuilds a record from it
with :func:`logging.makeLogRecord`. Unlike ``makePickle`` it is built from the
redacted event, never from the record's own (unredacted) values, and it holds
only ``str``, ``int``, ``float``, ``bool`` and ``None``: the server unpickles
whatever it is sent, so nothing here may name a class.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import operator
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .._redact import redact
from ._frame import PICKLE_PROTOCOL, PLAIN_TYPES, frame_checked, plain

__all__ = [
    "PACKED_MARK",
    "PICKLE_PROTOCOL",
    "RECORD_ATTRS",
    "SESSION_LOGGER",
    "START_STOP",
    "SipeEncoder",
    "get_record_attrs",
    "named",
    "record_values",
    "start_stop_message",
]

#: The first bytes of a spooled record not yet made into a frame (see
#: :meth:`~._sink.SipeSink.expand`). A frame starts with its length, so it
#: could only start with these if it were over 2.7 GB.
PACKED_MARK = b"\xa1P"
#: The level mpetk defines for start/stop lines (WARNING + 5).
START_STOP = 35
#: The logger the session's "Starting" / "Stopping" lines come from.
SESSION_LOGGER = "aind_log_utils.session"

#: The LogRecord attributes the cookbook receiver's formatters read, copied from
#: the record; ``lineno``, ``threadName`` and ``processName`` come with the event
#: (the same values), ``msg``, ``exc_text`` and ``stack_info`` from the event (redacted).
RECORD_ATTRS: tuple[str, ...] = (
    "name", "levelname", "levelno", "pathname", "filename", "module", "funcName",
    "created", "msecs", "relativeCreated", "thread", "process",
)  # fmt: skip
_FROM_EVENT = ("lineno", "threadName", "processName")
#: A real record's :data:`RECORD_ATTRS`, in order, from its ``__dict__`` (KeyError if not).
get_record_attrs = operator.itemgetter(*RECORD_ATTRS)
#: Keys that would break the record ``makeLogRecord`` rebuilds on the server: a
#: LogRecord method (``getMessage``) is sent as ``extra_<key>``; ``exc_info`` and
#: ``asctime`` (which the server's formatter derives) are left out.
_SHADOWING = frozenset(k for k in dir(logging.LogRecord) if not k.startswith("__"))
_DROPPED = frozenset({"asctime", "exc_info"})
_UNKNOWN = frozenset({"", "undefined", "None", "none", "null"})


def _register_start_stop() -> None:
    # Never clobber a name the program (or mpetk) registered already.
    if logging.getLevelName(START_STOP) == f"Level {START_STOP}" and not isinstance(
        logging.getLevelName("START_STOP"), int
    ):
        logging.addLevelName(START_STOP, "START_STOP")


_register_start_stop()


def record_values(record: logging.LogRecord) -> Sequence[Any]:
    """The record's :data:`RECORD_ATTRS`, in order (None, made plain, for any it lacks)."""
    try:
        return get_record_attrs(record.__dict__)  # type: ignore[no-any-return]
    except KeyError:  # a record built by hand, without some attribute
        return [plain(getattr(record, name, None)) for name in RECORD_ATTRS]


def named(values: Sequence[Any], event: Mapping[str, Any]) -> list[Any]:
    """The record's :data:`RECORD_ATTRS` with its ``name`` as the event holds it.

    The renderer scrubs the logger's name (a logger named after a DSN, say); the
    record keeps it raw. Without a ``logger`` field (renamed) the name is scrubbed here.
    """
    name = event.get("logger")
    if name is None:
        name = redact(values[0])
    return [name, *values[1:]]


def start_stop_message(action: str, log_session: str | None, user: str | None) -> str:
    """The start/stop line the SIPE clients write.

    Args:
        action: ``"Start"`` or ``"Stop"``.
        log_session: the session id (7 hex characters).
        user: the Windows user id.

    Returns:
        ``"Action, Start, log_session, <id>, WinUserID, <user>,"``.
    """
    return f"Action, {action}, log_session, {log_session or ''}, WinUserID, {user or ''},"


def new_log_session() -> str:
    """A fresh 7-hex-character session id (md5 of time, host and pid, as 0.2.x)."""
    seed = f"{time.time_ns()}{socket.gethostname()}{os.getpid()}".encode()
    return hashlib.md5(seed, usedforsecurity=False).hexdigest()[:7]


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value and value.strip() not in _UNKNOWN:
            return value.strip()
    return None


def _known(value: Any) -> str | None:
    if value is None:
        return None
    text = plain(redact(value))
    if not isinstance(text, str):
        text = str(text)
    return None if text.strip() in _UNKNOWN else text


def _current_user() -> str | None:
    try:
        return getpass.getuser() or None
    except Exception:  # no USER/LOGNAME and no pwd entry (containers)
        return None


class SipeEncoder:
    """Builds SIPE frames for one program; configured once, used for every record.

    The attributes the server's users rely on are always present (None when not
    known, so ``record.rig_name`` never raises on the server):

    - ``project``: the program's name;
    - ``rig_id``: the event's ``rig_id`` (from ``aibs_comp_id`` by default);
    - ``rig_name``: env ``aibs_rig_id``, else the rig id;
    - ``comp_id``: env ``aibs_comp_id``, else the rig id;
    - ``version``: the software version;
    - ``hostname`` and ``log_session``.

    Args:
        program: the program's name.
        fields: the session's static fields (``rig_id``, ``software_version``,
            ``hostname``, ``log_session``, ``user_id`` are read from them).
    """

    def __init__(self, program: str, fields: Mapping[str, Any] | None = None) -> None:
        fields = fields or {}
        self.program = _known(program) or "python"
        self.rig_name_env = _env("aibs_rig_id", "AIBS_RIG_ID")
        self.comp_id_env = _env("aibs_comp_id", "AIBS_COMP_ID")
        self.log_session = _known(fields.get("log_session")) or new_log_session()
        self._user_id = _known(fields.get("user_id"))
        self._user: str | None = None
        self._user_known = False
        self._defaults: dict[str, Any] = {
            "hostname": _known(fields.get("hostname")) or socket.gethostname() or None,
            "rig_id": _known(fields.get("rig_id")) or self.comp_id_env,
            "software_version": _known(fields.get("software_version")),
            "log_session": self.log_session,
        }
        self._default_keys = frozenset(self._defaults)
        self._event_attrs = frozenset(_FROM_EVENT)
        self._rig_id = self._defaults["rig_id"]
        self._version = self._defaults["software_version"]
        self._sipe_attrs = self._sipe_attributes(self._rig_id, self._version)

    @property
    def defaults(self) -> Mapping[str, Any]:
        """The values used when an event does not carry them."""
        return self._defaults

    def user(self, event: Mapping[str, Any]) -> str | None:
        """The start/stop line's user: the ``user_id`` field, else the login name."""
        user_id = event.get("user_id") or self._user_id
        if user_id:
            return str(plain(user_id))
        if not self._user_known:
            self._user, self._user_known = _current_user(), True
        return self._user

    def encode(
        self,
        event: Mapping[str, Any],
        record: logging.LogRecord,
        *,
        message: str | None = None,
        levelno: int | None = None,
        levelname: str | None = None,
        weblog: bool = False,
        origin: tuple[str, str | None, str | None] | None = None,
    ) -> bytes:
        """Build the frame of one record.

        Args:
            event: the redacted event (never the record's own values).
            record: the record, read for its standard attributes, never modified.
            message: replaces the rendered message (start/stop lines).
            levelno: replaces the record's level number.
            levelname: replaces the record's level name.
            weblog: the record was sent because it asked (``weblog`` is then True).
            origin: the writing program's ``(program, aibs_rig_id, aibs_comp_id)``, for
                a record spooled by another program (default: this encoder's).

        Returns:
            The frame: length + pickle.
        """
        values = record_values(record)
        payload = event.copy() if type(event) is dict else dict(event)
        if not self._event_attrs <= payload.keys():  # an event not made by the renderer
            for name in _FROM_EVENT:
                payload.setdefault(name, getattr(record, name, None))
        return self.encode_owned(
            payload, values, message=message, levelno=levelno, levelname=levelname,
            weblog=weblog, origin=origin, stack_trace=event.get("stack_trace"),
            stack_info=event.get("stack_info"),
        )  # fmt: skip

    def encode_owned(
        self,
        payload: dict[str, Any],
        values: Sequence[Any],
        *,
        message: str | None = None,
        levelno: int | None = None,
        levelname: str | None = None,
        weblog: bool = False,
        origin: tuple[str, str | None, str | None] | None = None,
        stack_trace: Any = None,
        stack_info: Any = None,
        plain_values: bool = False,
        plain_record: bool = False,
    ) -> bytes:
        """Build the frame of one record from an event this call may change.

        The sender process reads each record back from its line and the packed
        attributes, so it has a dict of its own to fill: no copy of the event and
        no record object (:meth:`encode` is the same for a live record).

        Args:
            payload: the redacted event; it becomes the frame's dict.
            values: the record's :data:`RECORD_ATTRS`, in that order.
            stack_trace: the event's redacted traceback (``exc_text``).
            stack_info: the event's redacted stack (``stack_info``).
            message: as :meth:`encode`.
            levelno: as :meth:`encode`.
            levelname: as :meth:`encode`.
            weblog: as :meth:`encode`.
            origin: as :meth:`encode`.
            plain_values: the caller knows every value of ``payload`` is a str,
                int, float, bool or None (checking costs about 1 us a record).
            plain_record: the caller knows the same of ``values``.

        Returns:
            The frame: length + pickle.
        """
        if not plain_values and not PLAIN_TYPES.issuperset(map(type, payload.values())):
            payload = {k: plain(v) for k, v in payload.items()}
        if not plain_record and not PLAIN_TYPES.issuperset(map(type, values)):
            values = [plain(v) for v in values]
        if not self._default_keys <= payload.keys():  # a hand-made event
            payload = {**self._defaults, **payload}
        rig_id, version = payload["rig_id"], payload["software_version"]
        if origin is not None:
            payload.update(
                project=origin[0], rig_name=origin[1] or rig_id, comp_id=origin[2] or rig_id,
                version=version,
            )  # fmt: skip
        elif rig_id == self._rig_id and version == self._version:
            payload.update(self._sipe_attrs)
        else:  # bound context or extra= changed them for this record
            payload.update(self._sipe_attributes(rig_id, version))
        payload.update(zip(RECORD_ATTRS, values, strict=True))
        # The name as the line has it, scrubbed by the renderer, whatever the record
        # (or a spool written before names were scrubbed) held; scrubbed here when
        # the line has none (a renamed field).
        logger = payload.get("logger")
        payload["name"] = logger if logger is not None else redact(payload["name"])
        if not self._event_attrs <= payload.keys():  # a line not made by the renderer
            for name in _FROM_EVENT:
                payload.setdefault(name, None)
        payload["msg"] = payload.pop("message", "") if message is None else message
        payload["args"] = None
        payload["exc_text"] = plain(stack_trace)
        payload["stack_info"] = plain(stack_info)
        if levelno is not None:
            payload["levelno"] = levelno
            payload["levelname"] = levelname
        if weblog:
            payload["weblog"] = True
        if "getMessage" in payload or "exc_info" in payload or "asctime" in payload:
            payload = _unshadow(payload)
        # The record's attributes are plain for any real LogRecord; should a record
        # factory have put an object there, the pickler refuses it and frame()
        # converts every value instead.
        return frame_checked(payload)

    def _sipe_attributes(self, rig_id: Any, version: Any) -> dict[str, Any]:
        return {
            "project": self.program,
            "rig_name": self.rig_name_env or rig_id,
            "comp_id": self.comp_id_env or rig_id,
            "version": version,
        }


def _unshadow(payload: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key in _DROPPED:
            continue
        out[f"extra_{key}" if key in _SHADOWING else key] = value
    return out
