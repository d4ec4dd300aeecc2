"""The SIPE sink: which records go (levels, weblog), the start/stop lines, setup."""

from __future__ import annotations

import getpass
import logging
import logging.handlers
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from _support import FAST, sipe_session_to, sipe_sink_to
from aind_log_utils import SipeHandler, log_context, setup_logging
from aind_log_utils._sipe import START_STOP
from aind_log_utils.testing import SipeReceiver


@pytest.fixture
def receiver() -> Iterator[SipeReceiver]:
    with SipeReceiver() as server:
        yield server


# -- which records go -----------------------------------------------------------------


def test_levels_as_the_server_expects(receiver: SipeReceiver, tmp_path: Path) -> None:
    session = sipe_session_to(receiver, tmp_path, level="DEBUG")
    log = logging.getLogger("rig")
    log.debug("debug: stays")
    log.info("info: stays")
    log.info("info: weblog=False stays", extra={"weblog": False})
    log.info("info: goes", extra={"weblog": True})
    log.debug("debug: goes", extra={"weblog": True})
    with log_context(weblog=True):
        log.info("info: goes by context")
    log.warning("warning: goes")
    log.log(START_STOP, "start_stop: goes")
    log.critical("critical: goes")
    session.close()
    assert receiver.wait_for(6)
    messages = receiver.messages()
    assert messages == ["info: goes", "debug: goes", "info: goes by context", "warning: goes",
                        "start_stop: goes", "critical: goes"]  # fmt: skip
    dicts = receiver.dicts()
    assert dicts[0]["weblog"] is True and "weblog" not in dicts[3]
    assert dicts[4]["levelname"] == "START_STOP"


@pytest.mark.parametrize(("threshold", "expected"), [("ERROR", ["e"]), ("INFO", ["i", "w", "e"])])
def test_threshold_configurable(
    receiver: SipeReceiver, tmp_path: Path, threshold: str, expected: list[str]
) -> None:
    session = sipe_session_to(receiver, tmp_path, sink_options={"level": threshold})
    log = logging.getLogger("rig")
    log.info("i")
    log.warning("w")
    log.error("e")
    session.close()
    assert receiver.wait_for(len(expected))
    assert receiver.messages() == expected


def test_own_worker_threads_are_skipped(receiver: SipeReceiver, tmp_path: Path) -> None:
    """The handlers drop a record of our own worker threads before any sink sees it."""
    handler = SipeHandler(receiver.url, spool_dir=tmp_path / "spool", **FAST)
    session = sipe_session_to(receiver, tmp_path / "session")
    try:
        for name in ("aind-log-loki", "MainThread"):
            record = logging.makeLogRecord({"msg": name, "levelno": 40, "levelname": "ERROR",
                                            "threadName": name, "name": "urllib3"})  # fmt: skip
            handler.handle(record)  # the standalone handler
            logging.getLogger("urllib3").handle(record)  # setup_logging's handler
        assert handler.sink.flush(5) and session.flush(5)
    finally:
        handler.close()
        session.close()
    assert receiver.wait_for(2)
    assert receiver.messages() == ["MainThread", "MainThread"]
    assert handler.sink.counters()["sent"] == 1


def test_a_bad_event_is_counted_never_raised(receiver: SipeReceiver, tmp_path: Path) -> None:
    sink = sipe_sink_to(receiver, tmp_path)
    record = logging.makeLogRecord({"msg": "x", "levelno": 40})
    sink.handle_event(None, b"", record)  # type: ignore[arg-type]
    assert sink.counters()["errors"] == 1
    sink.close()


# -- start and stop -------------------------------------------------------------------


def test_start_level_is_registered() -> None:
    assert logging.getLevelName(35) == "START_STOP"
    assert logging.getLevelName("START_STOP") == 35


def test_start_level_never_clobbers_a_name_given_before() -> None:
    code = (
        "import logging; logging.addLevelName(35, 'MINE');"
        "import aind_log_utils._sipe;"
        "print(logging.getLevelName(35))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "MINE"


def test_start_and_stop_lines(receiver: SipeReceiver, tmp_path: Path) -> None:
    session = sipe_session_to(receiver, tmp_path, send_start_log=True, user_id="bobby.b")
    logging.getLogger("rig").warning("in between")
    session.close()
    assert receiver.wait_for(3)
    start, middle, stop = receiver.records()
    ident = session.fields["log_session"]
    assert start.getMessage() == f"Action, Start, log_session, {ident}, WinUserID, bobby.b,"
    assert stop.getMessage() == f"Action, Stop, log_session, {ident}, WinUserID, bobby.b,"
    for record in (start, stop):
        assert record.levelno == START_STOP and record.levelname == "START_STOP"
        assert record.name == "aind_log_utils.session"
    assert stop.__dict__["status"] == "success"
    assert middle.getMessage() == "in between"


def test_start_line_user_defaults_to_the_login(receiver: SipeReceiver, tmp_path: Path) -> None:
    session = sipe_session_to(receiver, tmp_path, send_start_log=True)
    session.close()
    assert receiver.wait_for(2)
    user = getpass.getuser()
    assert receiver.messages()[0].endswith(f"WinUserID, {user},")


def test_failed_run_still_stops_with_a_start_stop_line(
    receiver: SipeReceiver, tmp_path: Path
) -> None:
    session = sipe_session_to(receiver, tmp_path, send_start_log=True, user_id="u")
    session.mark_failed("camera gone")
    session.close()
    assert receiver.wait_for(2)
    stop = receiver.dicts()[-1]
    assert stop["msg"].startswith("Action, Stop, log_session, ")
    assert stop["levelno"] == START_STOP and stop["status"] == "fail"
    assert stop["event_type"] == "stage_failure" and stop["failure_reason"] == "camera gone"


def test_start_stop_lines_can_be_turned_off(receiver: SipeReceiver, tmp_path: Path) -> None:
    session = sipe_session_to(
        receiver, tmp_path, send_start_log=True, sink_options={"start_stop_lines": False}
    )
    (sink,) = session.sinks
    session.close()
    assert sink.counters()["sent"] == 0  # Starting/Stopping are INFO: not sent
    assert receiver.count() == 0


# -- the handler and setup ------------------------------------------------------------


def test_handler_without_setup(receiver: SipeReceiver, tmp_path: Path) -> None:
    handler = SipeHandler(
        receiver.url, program="water-log", static_fields={"rig_id": "frg_1_a", "subject_id": "1"},
        spool_dir=tmp_path, **FAST,
    )  # fmt: skip
    logger = logging.getLogger("rig.standalone")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("session started", extra={"weblog": True})
        logger.info("not for the server")
        assert receiver.wait_for(1)
    finally:
        logger.removeHandler(handler)
        handler.close()
        handler.close()  # idempotent
    (d,) = receiver.dicts()
    assert d["msg"] == "session started" and d["project"] == "water-log"
    assert d["rig_name"] == "frg_1_a" and d["subject_id"] == "1"
    assert d["log_session"] == handler.sink.log_session
    assert "SipeHandler" in repr(handler) and str(receiver.port) in repr(handler)


def test_setup_logging_sipe_url(receiver: SipeReceiver, tmp_path: Path) -> None:
    session = setup_logging(
        "water-log", console=False, log_file=False, handle_sigterm=False, send_start_log=False,
        sipe_url=receiver.url, sipe_options={**FAST, "spool_dir": str(tmp_path)},
    )  # fmt: skip
    assert [sink.name for sink in session.sinks] == ["sipe"]
    logging.getLogger("rig").error("via setup")
    session.close()
    assert receiver.wait_for(1)
    assert receiver.messages() == ["via setup"]
    assert session.stats()["sinks"]["sipe"]["sent"] == 1


def test_setup_logging_aind_sipe_url(
    receiver: SipeReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIND_SIPE_URL", f"127.0.0.1:{receiver.port}")
    monkeypatch.setenv("AIND_SIPE_LEVEL", "ERROR")
    monkeypatch.setenv("AIND_SIPE_OPTIONS", f'{{"spool_dir": "{tmp_path.as_posix()}"}}')
    session = setup_logging(
        "water-log", console=False, log_file=False, handle_sigterm=False, send_start_log=False
    )
    assert [sink.name for sink in session.sinks] == ["sipe"]
    logging.getLogger("rig").warning("stays")
    logging.getLogger("rig").error("goes")
    session.close()
    assert receiver.wait_for(1)
    assert receiver.messages() == ["goes"]


def test_stdlib_socket_handler_frames_with_objects_are_refused(receiver: SipeReceiver) -> None:
    # What the receiver guards against: SocketHandler pickles whatever the record holds.
    handler = logging.handlers.SocketHandler(*receiver.address)
    record = logging.makeLogRecord({"msg": "x", "token": SecretStr("s3cret")})
    handler.handle(record)
    handler.handle(logging.makeLogRecord({"msg": "plain"}))
    handler.close()
    assert receiver.wait_for(1)
    assert receiver.refused == 1 and receiver.messages() == ["plain"]
