"""The caller's hand-over to a sender process in batches (``ProcessLink.hand``).

A record handed over waits in a list until PACK_EVERY of them are framed at once,
or the link's thread frames them on its tick, or a flush, a record sent at once,
the sender's loss or close takes them. Real sender processes, a real Loki
receiver and a real SIPE receiver on loopback.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from _support import FAST, loki_session_to, sipe_session_to
from aind_log_utils._delivery._link import PACK_EVERY, WRITE_EVERY_S, ProcessLink
from aind_log_utils._delivery._wire import HEADER
from aind_log_utils._loki import LokiSink
from aind_log_utils._loki._sink import _WITH_CREATED
from aind_log_utils.testing import LokiReceiver, SipeReceiver

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="process delivery is POSIX")


def record(i: int) -> logging.LogRecord:
    return logging.LogRecord("batch", logging.INFO, __file__, i, "m %d", (i,), None)


def arrived(receiver: LokiReceiver) -> list[dict[str, Any]]:
    """The stored lines, parsed; and none was sent twice (the receiver would drop it)."""
    assert receiver.dropped["duplicate"] == 0
    return [orjson.loads(line) for line in receiver.lines()]


def framed(prefix: bytes, payload: bytes) -> tuple[bytes, bytes]:
    """A record's two pieces as ``hand`` puts them in the link's list."""
    return HEADER.pack(len(prefix) + len(payload)) + prefix, payload


def link_of(sink: LokiSink) -> ProcessLink:
    link = sink.engine
    assert isinstance(link, ProcessLink)
    return link


def test_a_part_batch_leaves_on_the_links_tick_in_order(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    """Full batches go when the caller frames them; the rest on the link's next tick."""
    session = loki_session_to(receiver, tmp_path)
    try:
        n = 3 * PACK_EVERY + 5
        log = logging.getLogger("batch")
        start = time.monotonic()
        for i in range(n):
            log.info("record %d", i)
        assert receiver.wait_for(n, 10)  # no flush: the last 5 went on a tick
        assert time.monotonic() - start < 5 + WRITE_EVERY_S
        messages = [line["message"] for line in arrived(receiver)]
        assert messages == [f"record {i}" for i in range(n)]
    finally:
        session.close()


def test_a_flush_takes_what_waits_to_be_framed(receiver: LokiReceiver, tmp_path: Path) -> None:
    """The flush request goes behind the records handed over before it."""
    sink = LokiSink(receiver.url, spool_dir=tmp_path / "s", **FAST)
    try:
        event = {"level": "INFO", "message": "m"}
        for round_ in range(5):
            for i in range(3):
                sink.handle_event(event, b'{"r":%d,"i":%d}\n' % (round_, i), record(i))
            assert sink.flush(10)
            # At once: the flush's answer came after the sender sent them.
            assert len(arrived(receiver)) == 3 * (round_ + 1)
    finally:
        sink.close()


def test_records_sent_at_once_keep_their_place_behind_the_batch(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    """``push_event`` goes through ``submit`` (not batched), a new frame's definition
    too: both go behind every record handed over before them, so one stream's
    entries arrive in the order of the calls."""
    sink = LokiSink(receiver.url, spool_dir=tmp_path / "s", **FAST)
    try:
        events = [{"level": "INFO", "message": "m", "subject_id": f"s{k}"} for k in range(3)]
        for i in range(4 * PACK_EVERY):
            line = b'{"level":"INFO","i":%d}\n' % i
            event = events[(i // 50) % 3]  # a new frame now and then: a definition
            if i % 7 == 3:
                sink.push_event(event, line, time.time_ns())
            else:
                sink.handle_event(event, line, record(i))
        assert sink.flush(10)
        assert [line["i"] for line in arrived(receiver)] == list(range(4 * PACK_EVERY))
        metadata = [(e.metadata or {}).get("subject_id") for e in receiver.entries()]
        assert metadata == [f"s{(i // 50) % 3}" for i in range(4 * PACK_EVERY)]
    finally:
        sink.close()


def test_threads_handing_over_at_once_lose_and_repeat_nothing(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    session = loki_session_to(receiver, tmp_path)
    threads_n, per_thread = 8, 700
    go = threading.Barrier(threads_n)

    def work(t: int) -> None:
        log = logging.getLogger(f"batch.{t}")
        go.wait()
        for i in range(per_thread):
            log.info("t%d %d", t, i)

    try:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert session.flush(timeout_s=20)
        assert receiver.wait_for(threads_n * per_thread, 10)
    finally:
        session.close()
    seen: dict[int, list[int]] = {t: [] for t in range(threads_n)}
    for line in arrived(receiver):
        t, i = line["message"][1:].split()
        seen[int(t)].append(int(i))
    assert all(seen[t] == list(range(per_thread)) for t in range(threads_n))  # once, in order


def test_a_record_handed_over_as_the_sender_was_lost_is_delivered(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    """A thread that saw the link batching just before its sender was lost leaves its
    record in the list after the loss moved the rest to a sink in this process: the
    next record sent, or close, takes it, in its place."""
    sink = LokiSink(receiver.url, spool_dir=tmp_path / "s", **FAST)
    link = link_of(sink)
    event = {"level": "INFO", "message": "m"}
    try:
        sink.handle_event(event, b'{"level":"INFO","i":0}\n', record(0))
        assert sink.flush(10)
        assert link._sender is not None
        link._sender.proc.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while link._state == "live" and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the link's state with a deadline
        assert not link.batching
        # What such threads appended: a record the sender reads back (flag 0).
        link.pending += framed(_WITH_CREATED.pack(0, time.time()), b'{"level":"INFO","i":1}\n')
        sink.push_event(event, b'{"level":"INFO","i":2}\n', time.time_ns())
        link.pending += framed(_WITH_CREATED.pack(0, time.time()), b'{"level":"INFO","i":3}\n')
    finally:
        sink.close(10)
    assert receiver.wait_for(4, 10)
    assert [line["i"] for line in arrived(receiver)] == [0, 1, 2, 3]


def test_a_record_appended_as_batching_stops_is_not_left_waiting(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    """The race itself: a thread saw the link batching, then, before its append, the
    sender was lost and what waited went to a sink in this process. Its record must
    still leave at once, not wait in the list for another record or close."""
    sink = LokiSink(receiver.url, spool_dir=tmp_path / "s", **FAST)
    link = link_of(sink)
    event = {"level": "INFO", "message": "m"}

    class LostBeforeAppend(list[bytes]):
        def __iadd__(self, pieces: Iterable[bytes]) -> list[bytes]:  # type: ignore[override, misc]
            assert link._sender is not None
            link._sender.proc.send_signal(signal.SIGKILL)
            deadline = time.monotonic() + 10
            while link._state == "live" and time.monotonic() < deadline:
                time.sleep(0.01)  # polling the link's state with a deadline
            return super().__iadd__(pieces)

    try:
        sink.handle_event(event, b'{"level":"INFO","i":0}\n', record(0))
        assert sink.flush(10)
        link.pending = LostBeforeAppend()
        assert link.batching
        sink.handle_event(event, b'{"level":"INFO","i":1}\n', record(1))
        assert not link.pending
        assert receiver.wait_for(2, 10)  # before any other record, flush or close
        assert [line["i"] for line in arrived(receiver)] == [0, 1]
    finally:
        sink.close(10)


def test_a_signal_handler_that_logs_inside_the_links_work_neither_waits_nor_loses(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    """A handler that runs while its thread frames a batch (the lock held) and logs,
    flushes, asks for counters and closes, then returns: it waits for nothing, and
    its records go out behind the batch once the interrupted work goes on."""
    sink = LokiSink(receiver.url, spool_dir=tmp_path / "s", **FAST)
    link = link_of(sink)
    event = {"level": "INFO", "message": "m"}
    framing = link._pack_pending
    answers: list[object] = []

    def handler() -> None:  # what a signal handler logging here would do
        start = time.monotonic()
        sink.handle_event(event, b'{"level":"INFO","i":%d}\n' % PACK_EVERY, record(PACK_EVERY))
        sink.push_event(event, b'{"level":"INFO","i":%d}\n' % (PACK_EVERY + 1), time.time_ns())
        answers.extend([link.flush(5), link.counters()["errors"]])
        link.close(5)  # leaves the link open: the interrupted work has to finish
        answers.append(time.monotonic() - start)

    def interrupted() -> None:
        if not answers and len(link.pending) >= 2 * PACK_EVERY:  # the batch, not a definition
            handler()
        framing()

    def log_a_batch() -> None:
        for i in range(PACK_EVERY):  # the last one frames the batch: the handler runs
            sink.handle_event(event, b'{"level":"INFO","i":%d}\n' % i, record(i))

    link._pack_pending = interrupted  # type: ignore[method-assign]
    try:
        # On a thread of its own: a handler waiting for the lock its thread holds
        # would hang this test instead of failing it.
        logger = threading.Thread(target=log_a_batch, daemon=True)
        logger.start()
        logger.join(10)
        assert not logger.is_alive(), "the handler waited for the link's lock"
        flushed, errors, took = answers
        assert flushed is False and errors == 0 and isinstance(took, float) and took < 1.0
        assert sink.flush(10)
        assert [line["i"] for line in arrived(receiver)] == list(range(PACK_EVERY + 2))
    finally:
        if not logger.is_alive():  # else the lock is held for good: close would wait too
            sink.close(10)


def test_sipe_hands_records_over_in_batches_in_order(tmp_path: Path) -> None:
    with SipeReceiver() as server:
        session = sipe_session_to(server, tmp_path)
        try:
            n = 2 * PACK_EVERY + 9
            log = logging.getLogger("rig")
            for i in range(n):
                log.warning("frame %d", i)
            assert server.wait_for(n, 10)  # the last 9 on the link's tick
        finally:
            session.close()
        assert [r.msg for r in server.records()] == [f"frame {i}" for i in range(n)]
