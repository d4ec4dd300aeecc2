"""Process delivery: a network sink's sender process and the caller's end of its pipe.

Real sender processes, a real Loki receiver and a real SIPE receiver on loopback.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from _support import FAST, loki_session_to, poll
from aind_log_utils import setup_logging
from aind_log_utils._delivery._link import WRITE_EVERY_S, ProcessLink
from aind_log_utils._delivery._spool import read_segment
from aind_log_utils._loki import LokiSink
from aind_log_utils._loki._encode import timestamp_ns
from aind_log_utils._sipe import SipeHandler, SipeSink
from aind_log_utils.testing import LokiReceiver, SipeReceiver

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="process delivery is POSIX")


def sender_of(link: ProcessLink) -> psutil.Process:
    assert link._sender is not None
    return psutil.Process(link._sender.proc.pid)


def test_process_delivery_is_the_default_and_matches_thread_delivery(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    """The sender rebuilds each entry from the line: labels, metadata, time and line are
    exactly those thread delivery sends for the same record."""
    seen: dict[str, list[Any]] = {}
    for mode in ("process", "thread"):
        receiver.clear()
        session = loki_session_to(receiver, tmp_path / mode, delivery=mode)
        sink = next(s for s in session.sinks if isinstance(s, LokiSink))
        assert sink.delivery == mode
        assert isinstance(sink.engine, ProcessLink) == (mode == "process")
        log = logging.getLogger("proc")
        log.info("frame %d", 1, extra={"camera": "cam-01", "note": "ü ✓"})
        log.warning("odd", extra={"subject_id": "654321"})  # a per-record override
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        assert session.flush(10)
        assert sink.counters()["sent"] == 3
        session.close()
        file_lines = (tmp_path / mode / "run.jsonl").read_text().splitlines()
        got = receiver.entries()
        assert [e.line for e in got] == file_lines  # the file's lines, in order
        for entry, line in zip(got, file_lines, strict=True):  # the record's own instant
            stamp = orjson.loads(line)["timestamp"]
            assert entry.ts_ns == timestamp_ns({"timestamp": stamp})
        # the log session differs from session to session; everything else must not
        seen[mode] = [
            (e.labels, {k: v for k, v in (e.metadata or {}).items() if k != "log_session"})
            for e in got
        ]
    assert seen["process"] == seen["thread"]
    assert seen["process"][0][0]["service_name"] == "proc-test"
    assert seen["process"][0][1]["subject_id"] == "123456"
    assert seen["process"][1][1]["subject_id"] == "654321"


def test_the_sender_is_a_separate_process_without_secrets_in_argv_or_env(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    secret = "s3cret-pass-0042"
    sink = LokiSink(receiver.url, username="u", password=secret, spool_dir=tmp_path / "s", **FAST)
    try:
        proc = sender_of(sink.engine)  # type: ignore[arg-type]
        assert proc.pid != os.getpid()
        assert "aind_log_utils._delivery._host" in " ".join(proc.cmdline())
        assert secret not in " ".join(proc.cmdline())
        assert all(secret not in v for v in proc.environ().values())
        sink.push_event({"level": "INFO"}, b'{"level":"INFO","message":"m"}', time.time_ns())
        assert sink.flush(10)
        assert receiver.lines() == ['{"level":"INFO","message":"m"}']
    finally:
        sink.close()
    popen = sink.engine._sender.proc  # type: ignore[union-attr]
    assert popen is not None and popen.wait(10) == 0  # the sender exits once closed
    assert not proc.is_running()


def test_bad_delivery_options_raise_in_the_caller_naming_them(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="delivery"):
        LokiSink("http://127.0.0.1:9", delivery="carrier-pigeon")
    with pytest.raises(ValueError, match="batch_wait_s"):
        LokiSink("http://127.0.0.1:9", batch_wait_s=-1, spool_dir=tmp_path)
    with pytest.raises(TypeError, match="max_queue_bytes"):
        LokiSink("http://127.0.0.1:9", max_queue_bytes="big", spool_dir=tmp_path)
    with pytest.raises(TypeError, match="no_such_option"):
        LokiSink("http://127.0.0.1:9", no_such_option=1, spool_dir=tmp_path)


def test_a_quiet_programs_last_record_goes_without_a_flush(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    """A record smaller than a pipe write still leaves within WRITE_EVERY_S + batch wait."""
    sink = LokiSink(receiver.url, spool_dir=tmp_path / "s", **FAST)
    try:
        start = time.monotonic()
        sink.push_event({"level": "INFO"}, b'{"level":"INFO","message":"alone"}', time.time_ns())
        assert receiver.wait_for(1, 10)
        # the sender's start, one write tick and one batch wait, with room for a slow CI
        assert time.monotonic() - start < 5 + WRITE_EVERY_S
        assert receiver.lines() == ['{"level":"INFO","message":"alone"}']
    finally:
        sink.close()


def test_a_killed_sender_is_replaced_by_delivery_from_this_process(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    sink = LokiSink(receiver.url, spool_dir=tmp_path / "s", **FAST)
    try:
        for i in range(10):
            sink.push_event({"level": "INFO"}, b'{"i":%d}' % i, time.time_ns() + i)
        assert sink.flush(10)
        proc = sender_of(sink.engine)  # type: ignore[arg-type]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while sink.engine._state == "live" and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.01)  # polling the link's state with a deadline
        for i in range(10, 20):
            sink.push_event({"level": "INFO"}, b'{"i":%d}' % i, time.time_ns() + i)
        assert sink.flush(10)
        assert receiver.wait_for(20, 10)
        assert sorted(receiver.lines()) == sorted('{"i":%d}' % i for i in range(20))
        assert sink.counters()["sent"] >= 10  # the local sink's, added to the sender's last
    finally:
        sink.close()


def test_closed_sink_exits_its_sender_and_later_records_go_to_the_spool(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    sink = LokiSink(receiver.url, spool_dir=tmp_path / "s", **FAST)
    proc = sender_of(sink.engine)  # type: ignore[arg-type]
    sink.push_event({"level": "INFO"}, b'{"i":0}', time.time_ns())
    sink.close()
    sink.close()  # idempotent
    popen = sink.engine._sender.proc  # type: ignore[union-attr]
    assert popen is not None and popen.wait(10) == 0
    assert not proc.is_running()
    assert receiver.lines() == ['{"i":0}']
    sink.push_event({"level": "INFO"}, b'{"i":1}', time.time_ns())
    assert sink.counters()["spooled"] == 1
    assert list((tmp_path / "s").glob("*.spool"))


def test_sipe_through_its_sender_process(tmp_path: Path) -> None:
    with SipeReceiver() as server:
        session = setup_logging(
            "water-log", console=False, log_file=False, handle_sigterm=False,
            send_start_log=False, rig_id="rig_7", sipe_url=server.url,
            sipe_options={**FAST, "spool_dir": str(tmp_path / "s")},
        )  # fmt: skip
        sink = next(s for s in session.sinks if isinstance(s, SipeSink))
        assert sink.delivery == "process"
        try:
            log = logging.getLogger("rig")
            log.info("not sent")
            log.info("sent: weblog", extra={"weblog": True})
            log.error("sent: error %s", "x")
            assert session.flush(10)
            assert server.wait_for(2, 10)
            records = server.dicts()
            assert [r["msg"] for r in records] == ["sent: weblog", "sent: error x"]
            assert records[0]["weblog"] is True
            assert records[1]["levelname"] == "ERROR"
            assert records[1]["funcName"] == "test_sipe_through_its_sender_process"
            assert records[1]["project"] == "water-log"
            assert records[1]["rig_id"] == "rig_7"
            assert sink.counters()["connects"] >= 1
        finally:
            session.close()


def test_a_sender_that_fails_to_start_loses_nothing(
    receiver: LokiReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records wait in the caller until the sender says it is ready; when it dies
    first, they and every later record are sent from this process instead."""
    from aind_log_utils._delivery import _sender

    monkeypatch.setattr(
        _sender, "HOST_ARGS", ("-c", "import sys, time; time.sleep(0.3); sys.exit(3)")
    )
    sink = LokiSink(receiver.url, spool_dir=tmp_path / "s", **FAST)
    try:
        assert isinstance(sink.engine, ProcessLink)
        for i in range(500):
            sink.push_event({"level": "INFO"}, b'{"i":%d}' % i, time.time_ns() + i)
        deadline = time.monotonic() + 10
        while sink.engine._state == "live" and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the link's state with a deadline
        assert sink.engine._state == "local"
        for i in range(500, 600):
            sink.push_event({"level": "INFO"}, b'{"i":%d}' % i, time.time_ns() + i)
        assert sink.flush(10)
        assert receiver.wait_for(600, 10)
        assert receiver.lines() == ['{"i":%d}' % i for i in range(600)]  # all, in order
    finally:
        sink.close()


@contextmanager
def hung_sender_sink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[LokiSink, ProcessLink]]:
    """A Loki sink whose sender never reads its pipe nor says it is ready, 200 records in."""
    from aind_log_utils._delivery import _sender

    monkeypatch.setattr(_sender, "HOST_ARGS", ("-c", "import time; time.sleep(60)"))
    sink = LokiSink("http://127.0.0.1:9", spool_dir=tmp_path / "s", **FAST)
    link = sink.engine
    assert isinstance(link, ProcessLink) and link._sender is not None
    try:
        for i in range(200):
            sink.push_event({"level": "INFO"}, b'{"i":%d}' % i, time.time_ns() + i)
        yield sink, link
    finally:
        link._sender.proc.kill()
        link._sender.proc.wait(10)
        sink.close(0)  # if the test did not


def test_records_a_hung_sender_never_took_are_spooled_at_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with hung_sender_sink(tmp_path, monkeypatch) as (sink, _):
        start = time.monotonic()
        sink.close(0.5)
        assert time.monotonic() - start < 0.5 + 1.0 + 1.0  # the bound, its grace, slack
        assert sink.counters()["spooled"] == 200
    items = [i for p in (tmp_path / "s").glob("*.spool") for i in read_segment(p).items]
    assert len(items) == 200  # on disk, for the next start


def test_the_links_thread_waits_quietly_for_a_sender_that_is_not_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until the sender says it is ready nothing is written to its pipe: the link's
    thread must not wake every time the empty pipe has room (that loop took the GIL
    from the program thousands of times while a sender started)."""
    with hung_sender_sink(tmp_path, monkeypatch) as (_, link):
        thread = next(t for t in threading.enumerate() if t.name == "aind-log-loki-link")
        poll(lambda: not link.pending and bool(link._buf), 10)  # framed, not written

        def cpu_s() -> float:
            times = next(t for t in psutil.Process().threads() if t.id == thread.native_id)
            return float(times.user_time + times.system_time)

        before = cpu_s()
        threading.Event().wait(1.0)  # the window watched: ten of the link's ticks
        assert cpu_s() - before < 0.1  # spinning, it took most of the second
        assert link._state == "live" and not link._ready


def test_records_past_a_full_buffer_are_sent_from_this_process(
    receiver: LokiReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender that never reads: past the buffer's cap the program sends itself.

    The records go through the caller's usual path (a hinted record, handed over
    and framed into the buffer in batches); once the buffer is full each batch goes
    on to a sink in this process, and at close so does what the buffer held: every
    record is delivered, once.
    """
    from aind_log_utils._delivery import _sender

    monkeypatch.setattr(_sender, "HOST_ARGS", ("-c", "import time; time.sleep(60)"))
    session = loki_session_to(receiver, tmp_path, max_queue_bytes=64 * 1024)
    sink = next(s for s in session.sinks if s.name == "loki")
    link = sink.engine
    assert isinstance(link, ProcessLink) and link._sender is not None
    n = 400  # ~1 KB a line: several times the 64 KiB buffer
    try:
        log = logging.getLogger("full")
        for i in range(n):
            log.info("record %d %s", i, "x" * 400)
        overflowed = link._dropped.get("buffer_full_sent_locally", 0)
        assert 0 < overflowed < n
        session.close(timeout_s=10)
    finally:
        link._sender.proc.kill()
        link._sender.proc.wait(10)
    ids = [orjson.loads(line)["message"].split()[1] for line in receiver.lines()]
    assert sorted(ids, key=int) == [str(i) for i in range(n)]  # all, once


def test_the_sender_imports_from_the_programs_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A capsule that put its own folder on sys.path gets a sender that sees it too,
    with the program's order kept (the standard library before site-packages)."""
    from aind_log_utils._delivery._sender import sender_path

    extra = tmp_path / "vendored"
    extra.mkdir()
    monkeypatch.setattr(sys, "path", [str(extra), *sys.path, str(tmp_path / "missing"), ""])
    monkeypatch.setenv("PYTHONPATH", "/from/env")
    parts = sender_path(str(tmp_path / "pkg" / "aind_log_utils" / "__init__.py")).split(os.pathsep)
    program = [p for p in sys.path if p and os.path.isdir(p)]
    assert parts[: len(program)] == list(dict.fromkeys(program))
    assert parts[len(program) :] == [str(tmp_path / "pkg"), "/from/env"]
    assert str(tmp_path / "missing") not in parts


def test_sipe_records_spooled_packed_keep_who_wrote_them(tmp_path: Path) -> None:
    """While the server is away the sender spools records unencoded; whoever replays
    them later (here another program) sends the frames the writer would have sent."""
    with SipeReceiver() as server:
        server.go_away()
        handler = SipeHandler(
            server.url, static_fields={"rig_id": "rig_1"}, program="first-program",
            spool_dir=tmp_path / "s", **FAST,
        )  # fmt: skip
        first = handler.sink
        log = logging.getLogger("writer")
        log.addHandler(handler)
        try:
            for i in range(300):
                log.warning("record %d", i)
                if i == 0:  # let the first attempt fail, so the rest are spooled packed
                    deadline = time.monotonic() + 10
                    while first.counters()["retried"] == 0 and time.monotonic() < deadline:
                        time.sleep(0.02)  # polling the sender's counters with a deadline
        finally:
            log.removeHandler(handler)
            first.close(0)
        packed = [
            item
            for path in (tmp_path / "s").glob("*.spool")
            for item in read_segment(path).items
            if item.startswith(b"\xa1P")
        ]
        assert len(packed) >= 250  # spooled without being encoded
        server.come_back()
        second = SipeSink(server.url, program="second-program", spool_dir=tmp_path / "s", **FAST)
        try:
            assert server.wait_for(300, 20)
        finally:
            second.close()
        records = server.dicts()
        assert [r["msg"] for r in records] == [f"record {i}" for i in range(300)]
        assert {r["project"] for r in records} == {"first-program"}
        assert {r["rig_id"] for r in records} == {"rig_1"}
        assert all(r["funcName"] == "test_sipe_records_spooled_packed_keep_who_wrote_them"
                   for r in records)  # fmt: skip


def test_an_unreadable_packed_record_is_skipped_and_counted(tmp_path: Path) -> None:
    from aind_log_utils._sipe import frame

    with SipeReceiver() as server:
        sink = SipeSink(server.url, spool_dir=tmp_path / "s", delivery="thread", **FAST)
        try:
            sink.engine.submit(b"\xa1P\x00not json\n{}")
            sink.engine.submit(frame({"msg": "fine", "levelno": 30, "name": "x"}))
            assert sink.flush(10)
            assert server.wait_for(1, 10)
            assert [r["msg"] for r in server.dicts()] == ["fine"]
            assert sink.counters()["errors"] >= 1
        finally:
            sink.close()
