"""The SIPE sink: URLs, the frame, the attributes, the levels, the start/stop lines.

Every record goes over a real loopback socket to the in-repo receiver, whose
unpickler refuses to load any class.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import logging
import logging.handlers
import math
import pickle
import struct
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from _support import FAST, poll, sipe_session_to
from aind_log_utils import SipeHandler, log_context, setup_logging
from aind_log_utils._delivery._spool import read_segment
from aind_log_utils._sipe import (
    PICKLE_PROTOCOL,
    SipeEncoder,
    SipeSink,
    frame,
    parse_sipe_url,
    plain,
)
from aind_log_utils._sipe._encode import PACKED_MARK
from aind_log_utils.testing import SipeReceiver

PLAIN_TYPES = (str, int, float, bool, type(None))
LOG_SERVER_FORMAT = (
    "%(asctime)s\n%(name)s\n%(levelname)s\n%(funcName)s (%(filename)s:%(lineno)d)\n%(message)s"
)


@pytest.fixture
def receiver() -> Iterator[SipeReceiver]:
    with SipeReceiver(keep_frames=True) as server:
        yield server


def assert_plain(d: dict[str, Any]) -> None:
    for key, value in d.items():
        assert type(key) is str
        assert type(value) in PLAIN_TYPES, (key, value)


# -- the address ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://eng-logtools.corp.alleninstitute.org:9000", ("eng-logtools.corp.alleninstitute.org", 9000)),
        ("http://eng-logtools:9000/", ("eng-logtools", 9000)),
        ("tcp://10.0.0.5:9100", ("10.0.0.5", 9100)),
        ("eng-logtools:9001", ("eng-logtools", 9001)),
        ("  eng-logtools  ", ("eng-logtools", 9000)),
        ("http://eng-logtools", ("eng-logtools", 9000)),
        ("[::1]:9000", ("::1", 9000)),
    ],
)  # fmt: skip
def test_url_forms(url: str, expected: tuple[str, int]) -> None:
    assert parse_sipe_url(url) == expected


@pytest.mark.parametrize(
    "url",
    ["", "   ", "https://host:9000", "ftp://host", "http://user:pw@host:9000", "host:99999",
     "host:abc", "http://host:9000/logs", "http://host:9000?x=1", "http://:9000", "host:0"],
)  # fmt: skip
def test_bad_urls_name_sipe_url(url: str) -> None:
    with pytest.raises(ValueError, match="sipe_url"):
        parse_sipe_url(url)


def test_bad_url_at_setup_names_sipe_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sipe_url"):
        SipeHandler("https://host:9000", spool_dir=tmp_path)
    with pytest.raises(TypeError, match="sipe_url"):
        parse_sipe_url(9000)  # type: ignore[arg-type]


@pytest.mark.parametrize("level", ["NOPE", -1, True, 1.5])
def test_bad_level_names_sipe_level(tmp_path: Path, level: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="sipe_level"):
        SipeSink("host:9000", level=level, spool_dir=tmp_path)


def test_level_by_name_or_number(tmp_path: Path) -> None:
    for given, expected in (("error", 40), ("35", 35), ("START_STOP", 35), (25, 25)):
        sink = SipeSink("127.0.0.1:9", level=given, spool_dir=tmp_path / str(expected))
        assert sink.always_level == expected
        sink.close(0)


# -- the frame ------------------------------------------------------------------------


def test_frame_is_the_socket_handlers_framing() -> None:
    payload = {"msg": "hello", "levelno": 20, "created": 1.5, "ok": True, "none": None}
    data = frame(payload)
    (size,) = struct.unpack(">L", data[:4])
    assert size == len(data) - 4
    assert pickle.loads(data[4:]) == payload
    assert data[4:6] == bytes([0x80, PICKLE_PROTOCOL])
    # the stdlib's frame has the same shape: the same reader takes both
    record = logging.makeLogRecord({"msg": "hello"})
    stdlib = logging.handlers.SocketHandler("127.0.0.1", 9).makePickle(record)
    assert struct.unpack(">L", stdlib[:4])[0] == len(stdlib) - 4


class Color(enum.Enum):
    RED = "red"


class Text(str):
    pass


class Number(int):
    pass


def test_plain_turns_everything_into_plain_values() -> None:
    assert plain([1, {"a": 2}]) == '[1,{"a":2}]'
    assert plain({"k": [1, 2]}) == '{"k":[1,2]}'
    assert type(plain(Text("x"))) is str and plain(Text("x")) == "x"
    assert type(plain(Number(3))) is int and plain(Number(3)) == 3
    assert math.isnan(plain(math.nan))  # type: ignore[arg-type]  # a float: plain
    assert isinstance(plain(Color.RED), str)
    assert isinstance(plain(object()), str)


def test_frame_never_names_a_class() -> None:
    data = frame({"a": Text("x"), Text("key"): 1, "b": [1, 2], "c": Color.RED, "d": Number(4)})
    assert b"__main__" not in data and b"test_sipe" not in data and b"enum" not in data
    loaded = pickle.loads(data[4:])
    assert_plain(loaded)
    assert loaded == {"a": "x", "key": 1, "b": "[1,2]", "c": loaded["c"], "d": 4}


def test_received_records_format_with_the_log_servers_formatter(
    receiver: SipeReceiver, tmp_path: Path
) -> None:
    sipe_session_to(receiver, tmp_path, subject_id="123456")
    log = logging.getLogger("rig.camera")

    def acquire() -> None:
        try:
            raise RuntimeError("camera gone")
        except RuntimeError:
            log.exception("frame %d lost", 7)

    acquire()
    assert receiver.wait_for(1)
    (record,) = receiver.records()
    assert receiver.refused == 0 and receiver.invalid == 0
    text = logging.Formatter(LOG_SERVER_FORMAT).format(record)
    lines = text.splitlines()
    assert lines[1:5] == ["rig.camera", "ERROR", f"acquire ({Path(__file__).name}:{record.lineno})",
                          "frame 7 lost"]  # fmt: skip
    assert "RuntimeError: camera gone" in text  # exc_text, appended by the formatter
    assert record.args is None and record.exc_info is None
    assert record.msg == "frame 7 lost" and record.levelno == logging.ERROR
    assert isinstance(record.created, float) and isinstance(record.process, int)
    assert record.threadName == "MainThread" and record.module == "test_sipe"


# -- the attributes -------------------------------------------------------------------


def test_attributes_the_servers_users_rely_on(
    receiver: SipeReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("aibs_comp_id", "W10DT700140")
    monkeypatch.setenv("aibs_rig_id", "frg_1_a")
    session = sipe_session_to(
        receiver, tmp_path, subject_id="123456", acquisition_name="123456_2026-01-01_23-00-00",
        software_version="1.0.4", instrument_id="MESO1", user_id="bobby.b",
    )  # fmt: skip
    logging.getLogger("rig").warning("water low", extra={"volume_ml": 1.5})
    assert receiver.wait_for(1)
    (d,) = receiver.dicts()
    assert_plain(d)
    assert d["project"] == "water-log"
    assert d["rig_name"] == "frg_1_a"  # aibs_rig_id
    assert d["rig_id"] == "W10DT700140"  # discovered from aibs_comp_id
    assert d["comp_id"] == "W10DT700140"
    assert d["version"] == "1.0.4"
    assert d["hostname"] == session.fields["hostname"]
    assert d["log_session"] == session.fields["log_session"] and len(d["log_session"]) == 7
    assert d["subject_id"] == "123456"
    assert d["acquisition_name"] == "123456_2026-01-01_23-00-00"
    assert d["instrument_id"] == "MESO1" and d["user_id"] == "bobby.b"
    assert d["volume_ml"] == 1.5
    assert "message" not in d and "exc_info" not in d


def test_rig_name_falls_back_to_the_rig_id(receiver: SipeReceiver, tmp_path: Path) -> None:
    sipe_session_to(receiver, tmp_path, rig_id="ephys_9_acq")
    logging.getLogger("rig").error("x")
    assert receiver.wait_for(1)
    (d,) = receiver.dicts()
    assert d["rig_name"] == d["rig_id"] == d["comp_id"] == "ephys_9_acq"


def test_unknown_attributes_are_none_never_undefined(
    receiver: SipeReceiver, tmp_path: Path
) -> None:
    handler = SipeHandler(receiver.url, program="p", spool_dir=tmp_path, **FAST)
    logger = logging.getLogger("standalone")
    logger.addHandler(handler)
    try:
        logger.error("x")
        assert receiver.wait_for(1)
    finally:
        logger.removeHandler(handler)
        handler.close()
    (d,) = receiver.dicts()
    for key in ("rig_name", "rig_id", "comp_id", "version"):
        assert key in d and d[key] is None
    assert "undefined" not in d.values()


def test_non_plain_values_arrive_as_json_text(receiver: SipeReceiver, tmp_path: Path) -> None:
    sipe_session_to(receiver, tmp_path)
    with log_context(stage=Color.RED, label=Text("cam")):
        logging.getLogger("rig").warning(
            "values", extra={"roi": [1, 2, 3], "cfg": {"gain": 2}, "nan": math.nan, "n": Number(5)}
        )
    assert receiver.wait_for(1)
    assert receiver.refused == 0
    (d,) = receiver.dicts()
    assert_plain(d)
    assert d["roi"] == "[1,2,3]" and d["cfg"] == '{"gain":2}'
    assert d["nan"] == "nan" and d["n"] in (5, "5") and "cam" in d["label"]


def test_record_attributes_a_factory_made_odd_arrive_plain(tmp_path: Path) -> None:
    """A record factory that puts a list, a dict or an object in a standard attribute:
    the frame still holds only plain values, live and read back by a sender."""
    from aind_log_utils._sipe._encode import get_record_attrs

    sink = SipeSink("127.0.0.1:9", delivery="thread", spool_dir=tmp_path / "s", **FAST)
    try:
        record = logging.LogRecord("rig", logging.WARNING, "/x/y.py", 3, "m", None, None)
        record.funcName = ["acquire", 2]  # type: ignore[assignment]
        record.module = {"name": "y"}  # type: ignore[assignment]
        record.thread = Number(7)
        event = {"level": "WARNING", "message": "m", "logger": "rig"}
        line = orjson.dumps(event) + b"\n"
        live = pickle.loads(sink._encode(0, event, record)[4:])
        attrs = orjson.dumps(get_record_attrs(record.__dict__), default=str)
        read_back_frame = sink._frame_of(0, attrs + b"\n" + line, None)
        assert read_back_frame is not None
        read_back = pickle.loads(read_back_frame[4:])
        for frame_dict in (live, read_back):
            assert_plain(frame_dict)
            assert frame_dict["funcName"] == '["acquire",2]'
            assert frame_dict["module"] == '{"name":"y"}'
        assert live["thread"] == 7 and read_back["thread"] in (7, "7")
    finally:
        sink.close(0)


def test_thread_and_process_delivery_send_the_same_frame(tmp_path: Path) -> None:
    """A thread-mode sink encodes the live event; a sender process reads the event
    back from the JSON line, and so does the replay of a record a thread-mode sink
    spooled packed. For every kind of value all three give the same dict."""
    from aind_log_utils._sipe._encode import get_record_attrs
    from aind_log_utils._sipe._sink import _PLAIN_KIND, _WEBLOG_KIND

    sink = SipeSink(
        "127.0.0.1:9", delivery="thread", spool_dir=tmp_path / "s", program="p",
        fields={"rig_id": "rig_1", "software_version": "1.0"}, **FAST,
    )  # fmt: skip
    seen: list[tuple[Any, bytes, logging.LogRecord]] = []
    sink.handle_event = lambda event, line, record: seen.append((event, line, record))  # type: ignore[method-assign]
    session = setup_logging(
        "p", console=False, log_file=False, handle_sigterm=False, send_start_log=False,
        sinks=[sink], subject_id="123456",
    )  # fmt: skip
    log = logging.getLogger("rig")
    try:
        log.warning("plain %s %d", "x", 3)
        log.info("values", extra={
            "weblog": True, "tup": (1, "a"), "nested": {"k": [1, 2.5, None]}, "nan": math.nan,
            "inf": -math.inf, "when": dt.datetime(2020, 1, 2, 3, 4, 5), "day": dt.date(2020, 1, 2),
            "id": uuid.UUID(int=7), "dec": decimal.Decimal("1.25"), "path": Path("/data/x"),
            "raw": b"\x00b", "big": 2**70, "none": None, "flag": False, "color": Color.RED,
            "n": Number(4), "text": Text("t"), "token": SecretStr("hidden"), "odd": "a\ud800b",
        })  # fmt: skip
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed %s", "here")
        log.warning("with stack", stack_info=True)
    finally:
        session.close()
        sink.close(0)
    assert len(seen) == 4
    for event, line, record in seen:
        kind = _WEBLOG_KIND if event.get("weblog") else _PLAIN_KIND
        live = pickle.loads(sink._encode(kind, event, record)[4:])
        attrs = orjson.dumps(get_record_attrs(record.__dict__), default=str)
        frame_ = sink._frame_of(kind, attrs + b"\n" + line, None)
        assert frame_ is not None
        read_back = pickle.loads(frame_[4:])
        assert_plain(live)
        assert live == read_back, record.msg
        # spooled packed while the server is away, the frame made when it is sent
        spooled = sink.expand(sink._spool_form(bytes([kind]), attrs, b"\n", line))
        assert spooled is not None and pickle.loads(spooled[4:]) == live, record.msg
    values = pickle.loads(sink._encode(_WEBLOG_KIND, seen[1][0], seen[1][2])[4:])
    assert values["when"] == "2020-01-02T03:04:05" and values["id"] == str(uuid.UUID(int=7))
    assert values["big"] == str(2**70) and values["weblog"] is True


def test_no_secret_reaches_the_wire(receiver: SipeReceiver, tmp_path: Path) -> None:
    sipe_session_to(receiver, tmp_path, secrets=["registered-secret-value"])
    log = logging.getLogger("rig")
    log.warning(
        "token registered-secret-value in the message",
        extra={"api_token": SecretStr("pydantic-secret-value"), "password": "key-secret-value",
               "nested": {"db_password": "nested-secret-value"}, "url": "http://u:pw-secret-value@h"},
    )  # fmt: skip
    try:
        raise ValueError("failed with registered-secret-value")
    except ValueError:
        log.exception("boom")
    log_names_with_secrets()
    assert receiver.wait_for(4)
    assert receiver.refused == 0 and receiver.invalid == 0
    wire = b"".join(receiver.frames())
    for secret in (*NAME_SECRETS, b"registered-secret-value", b"pydantic-secret-value",
                   b"key-secret-value", b"nested-secret-value", b"pw-secret-value"):  # fmt: skip
        assert secret not in wire
    first, second, by_dsn, by_thread = receiver.dicts()
    assert first["api_token"] == first["password"] == "**********"
    assert "**********" in first["msg"]
    assert second["exc_text"] and "ValueError" in second["exc_text"]
    assert by_dsn["name"] == by_dsn["logger"] == "db.postgres://bob:**********@h/x"
    assert by_thread["threadName"] == "fetch https://x.org/?token=**********"


#: What :func:`log_names_with_secrets` hides in a logger's and a thread's name.
NAME_SECRETS = (b"dsn-secret-value", b"thread-secret-value")


def log_names_with_secrets() -> None:
    """A warning from a logger named after a DSN, one from a thread named after a URL."""
    logging.getLogger("db.postgres://bob:dsn-secret-value@h/x").warning("connected")
    thread = threading.Thread(
        target=logging.getLogger("rig").warning, args=("fetched",),
        name="fetch https://x.org/?token=thread-secret-value",
    )  # fmt: skip
    thread.start()
    thread.join()


def test_a_spooled_record_of_old_sends_the_lines_scrubbed_name(tmp_path: Path) -> None:
    """Spools written before names were scrubbed hold the raw name in the packed
    attributes; the frame takes the name from the line's (scrubbed) ``logger``."""
    sink = SipeSink("127.0.0.1:9", delivery="thread", spool_dir=tmp_path / "s", **FAST)
    try:
        raw = "db.postgres://bob:dsn-secret-value@h/x"
        attrs = orjson.dumps([raw, "WARNING", 30, "/x/a.py", "a.py", "a", "f", 1.5, 500.0,
                              2.5, 7, 8])  # fmt: skip
        line = orjson.dumps({"timestamp": "2026-12-02T10:00:00.000000Z", "level": "WARNING",
                             "message": "m", "logger": "db.postgres://bob:**********@h/x"})  # fmt: skip
        framed = sink.expand(sink._spool_form(b"\x00", attrs, b"\n", line))
        assert framed is not None and b"dsn-secret-value" not in framed
        assert pickle.loads(framed[4:])["name"] == "db.postgres://bob:**********@h/x"
    finally:
        sink.close(0)


def test_secrets_in_names_are_not_spooled_either(receiver: SipeReceiver, tmp_path: Path) -> None:
    """While the server is away the sender spools records packed (the record's own
    attributes beside the line): the logger's name among them is the scrubbed one."""
    receiver.go_away()
    session = sipe_session_to(receiver, tmp_path)
    sink = next(s for s in session.sinks if isinstance(s, SipeSink))
    logging.getLogger("rig").warning("first")
    poll(lambda: sink.counters()["retried"] > 0)  # the rest are spooled packed
    log_names_with_secrets()
    session.close(timeout_s=0)
    items = [i for p in (tmp_path / "spool").glob("*.spool") for i in read_segment(p).items]
    packed = [item for item in items if item.startswith(PACKED_MARK)]
    assert len(items) == 3 and len(packed) == 2
    for item in packed:
        assert all(secret not in item for secret in NAME_SECRETS)
    receiver.come_back()


def test_shadowing_keys_cannot_break_the_servers_record(
    receiver: SipeReceiver, tmp_path: Path
) -> None:
    sipe_session_to(receiver, tmp_path)
    with log_context(getMessage="not a method", exc_info="not a tuple", asctime="no"):
        logging.getLogger("rig").error("still readable")
    assert receiver.wait_for(1)
    (record,) = receiver.records()
    assert record.getMessage() == "still readable"
    assert record.__dict__["extra_getMessage"] == "not a method"
    assert record.exc_info is None
    logging.Formatter(LOG_SERVER_FORMAT).format(record)


def test_the_record_is_never_modified(receiver: SipeReceiver, tmp_path: Path) -> None:
    encoder = SipeEncoder("p", {"rig_id": "r"})
    record = logging.makeLogRecord({"msg": "m %s", "args": ("a",), "name": "x", "levelno": 40})
    before = dict(record.__dict__)
    encoder.encode({"message": "m a", "roi": [1]}, record)
    assert record.__dict__ == before
