"""The SIPE sink when the server is down, restarts, crashes, or reads slowly.

Real loopback sockets, real subprocesses; every wait is an event or a poll with a
deadline.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aind_log_utils._delivery._segment import read_segment
from aind_log_utils._sipe import SipeHandler, SipeTransport, frame
from aind_log_utils._sipe._encode import PACKED_MARK
from aind_log_utils.testing import SipeReceiver

FAST: dict[str, Any] = {
    "batch_wait_s": 0.01,
    "retry_start_s": 0.05,
    "retry_max_s": 0.2,
    "timeout_s": 1.0,
}
SRC = str(Path(__file__).resolve().parents[1] / "src")


def eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        pause.wait(0.01)
    return True


@pytest.fixture
def receiver() -> Iterator[SipeReceiver]:
    with SipeReceiver() as server:
        yield server


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("rig.reliability")
    log.setLevel(logging.INFO)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


def attach(
    log: logging.Logger, receiver: SipeReceiver, tmp_path: Path, **options: Any
) -> SipeHandler:
    handler = SipeHandler(
        receiver.url, program="rel", spool_dir=tmp_path / "spool", **{**FAST, **options}
    )
    log.addHandler(handler)
    return handler


def numbers(receiver: SipeReceiver) -> list[int]:
    return [int(m.split()[1]) for m in receiver.messages()]


def _items(path: Path) -> list[bytes]:
    return read_segment(path).items


def send(log: logging.Logger, first: int, count: int, pad: str = "") -> None:
    for i in range(first, first + count):
        log.warning("line %d %s", i, pad)


@pytest.mark.parametrize("delivery", ["process", "thread"])
def test_server_down_at_start(
    receiver: SipeReceiver, logger: logging.Logger, tmp_path: Path, delivery: str
) -> None:
    receiver.go_away()
    handler = attach(logger, receiver, tmp_path, delivery=delivery)
    send(logger, 0, 25)
    assert eventually(lambda: handler.sink.counters()["retried"] >= 1)
    send(logger, 25, 25)
    assert eventually(lambda: handler.sink.counters()["spooled"] == 50)
    if delivery == "thread":  # what came while it spooled went packed, unencoded
        handler.sink.flush(timeout_s=0)  # the spool's buffer, on disk
        items = [i for path in sorted((tmp_path / "spool").iterdir()) for i in _items(path)]
        assert sum(item.startswith(PACKED_MARK) for item in items) >= 25
    receiver.come_back()
    assert receiver.wait_for(50, 20)
    handler.close()
    assert numbers(receiver) == list(range(50))
    assert {(d["project"], d["levelname"]) for d in receiver.dicts()} == {("rel", "WARNING")}
    assert receiver.refused == receiver.invalid == 0
    assert handler.sink.records_dropped == 0


def test_server_restarted_mid_stream(
    receiver: SipeReceiver, logger: logging.Logger, tmp_path: Path
) -> None:
    handler = attach(logger, receiver, tmp_path)
    send(logger, 0, 100)
    assert receiver.wait_for(100, 10)
    receiver.go_away()
    send(logger, 100, 100)
    assert eventually(lambda: handler.sink.counters()["retried"] >= 1)
    receiver.come_back()
    send(logger, 200, 100)
    assert receiver.wait_for(300, 20)
    handler.close()
    assert numbers(receiver) == list(range(300))  # all, in order, once
    assert receiver.invalid == 0
    assert handler.sink.counters()["connects"] >= 2


def test_server_crash_loses_nothing_logged_after_it(
    receiver: SipeReceiver, logger: logging.Logger, tmp_path: Path
) -> None:
    handler = attach(logger, receiver, tmp_path)
    send(logger, 0, 20)
    assert receiver.wait_for(20, 10)
    receiver.go_away(graceful=False)
    send(logger, 20, 80)
    assert eventually(lambda: handler.sink.counters()["retried"] >= 1)
    receiver.come_back()
    assert receiver.wait_for(100, 20)
    handler.close()
    assert numbers(receiver) == list(range(100))


def test_slow_server_nothing_lost_no_half_frames(logger: logging.Logger, tmp_path: Path) -> None:
    # A server that stops reading: the kernel buffers fill, writes time out half-way
    # through a frame; the rest of that frame goes first on the same connection.
    with SipeReceiver(rcvbuf_bytes=4096) as receiver:
        handler = attach(logger, receiver, tmp_path, timeout_s=0.3)
        receiver.set_mode("pause")
        pad = "x" * 1500
        send(logger, 0, 2000, pad)  # ~5 MB: more than the socket buffers hold
        assert eventually(lambda: handler.sink.counters()["retried"] >= 2, 20)
        receiver.set_mode("slow", slow_s=0.0005)
        assert eventually(lambda: receiver.count() >= 200, 20)
        receiver.set_mode("ok")
        assert receiver.wait_for(2000, 60)
        handler.close()
        state = (handler.sink.counters(), receiver.accepted, receiver.invalid)
        assert numbers(receiver) == list(range(2000)), state  # in order, none twice
        assert receiver.invalid == 0 and receiver.refused == 0
        assert receiver.accepted == 1  # never reconnected: the half frame was finished


def test_the_caller_never_waits_for_the_server(logger: logging.Logger, tmp_path: Path) -> None:
    with SipeReceiver(rcvbuf_bytes=4096) as receiver:
        handler = attach(logger, receiver, tmp_path, timeout_s=5.0)
        receiver.set_mode("pause")
        pad = "x" * 4000
        slowest = 0.0
        for i in range(3000):
            start = time.perf_counter()
            logger.warning("line %d %s", i, pad)
            slowest = max(slowest, time.perf_counter() - start)
        # A blocking handler would wait the whole 5 s send timeout here.
        assert slowest < 1.0, slowest
        receiver.set_mode("ok")
        assert receiver.wait_for(3000, 60)
        handler.close()
        assert numbers(receiver) == list(range(3000))


def big_frames() -> list[bytes]:
    """A frame bigger than every socket buffer: a paused server (which reads the
    first frame, then stops) cuts it."""
    return [frame({"msg": f"line {i} " + "y" * (16_000_000 if i == 1 else 1000)}) for i in range(5)]


def test_transport_finishes_a_cut_frame_first(tmp_path: Path) -> None:
    with SipeReceiver(rcvbuf_bytes=4096) as receiver:
        receiver.set_mode("pause")
        transport = SipeTransport("127.0.0.1", receiver.port)
        frames = big_frames()
        result = transport.send(frames, 0.3)
        assert result.outcome.value == "retry" and "slow" in result.reason
        assert transport._partial is not None  # cut inside a frame, kept for later
        receiver.set_mode("ok")
        deadline = time.monotonic() + 30
        while transport.send(frames, 1.0).outcome.value != "delivered":
            assert time.monotonic() < deadline
        assert receiver.wait_for(5, 30)
        transport.close()
        assert [m.split()[1] for m in receiver.messages()] == [str(i) for i in range(5)]
        assert receiver.invalid == 0 and receiver.accepted == 1


def test_transport_resends_the_cut_frame_whole_after_a_reset(tmp_path: Path) -> None:
    with SipeReceiver(rcvbuf_bytes=4096) as receiver:
        receiver.set_mode("pause")
        transport = SipeTransport("127.0.0.1", receiver.port)
        frames = big_frames()
        assert transport.send(frames, 0.3).outcome.value == "retry"
        assert transport._partial is not None
        receiver.go_away(graceful=False)  # what it held unread is lost, the cut frame too
        before = receiver.count()
        receiver.set_mode("ok")
        receiver.come_back()
        deadline = time.monotonic() + 30
        while transport.send(frames, 1.0).outcome.value != "delivered":
            assert time.monotonic() < deadline
        assert receiver.wait_for(before + 5, 30)
        transport.close()
        got = [int(m.split()[1]) for m in receiver.messages()]
        assert got[-5:] == list(range(5))  # the whole batch again, on the new connection
        assert receiver.invalid == 0


def test_transport_detects_a_closed_connection_before_writing(receiver: SipeReceiver) -> None:
    transport = SipeTransport("127.0.0.1", receiver.port)
    assert transport.send([frame({"msg": "one"})], 1.0).outcome.value == "delivered"
    assert receiver.wait_for(1)
    receiver.go_away()
    receiver.come_back()
    assert transport.send([frame({"msg": "two"})], 1.0).outcome.value == "delivered"
    assert receiver.wait_for(2)
    assert receiver.messages() == ["one", "two"] and transport.connects == 2
    transport.close()
    transport.close()
    assert transport.send([frame({"msg": "three"})], 1.0).outcome.value == "retry"


# -- processes --------------------------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    sys.path.insert(0, {src!r})
    from aind_log_utils._sipe import SipeHandler
    handler = SipeHandler({url!r}, program="proc", spool_dir={spool!r}, flush_timeout_s=2.0,
                          batch_wait_s=0.01, retry_start_s=0.05, retry_max_s=0.2, timeout_s=1.0)
    log = logging.getLogger("proc")
    log.addHandler(handler)
    for i in range({first}, {first} + {count}):
        log.warning("line %d", i)
    # no close(): the exit hook must flush within its bound
    """
)


def run_script(url: str, spool: Path, first: int, count: int) -> float:
    code = SCRIPT.format(src=SRC, url=url, spool=str(spool), first=first, count=count)
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    return time.monotonic() - start


def test_exit_flushes_everything(receiver: SipeReceiver, tmp_path: Path) -> None:
    run_script(receiver.url, tmp_path / "spool", 0, 1000)
    assert receiver.wait_for(1000, 10)
    assert numbers(receiver) == list(range(1000))


def test_exit_is_bounded_while_the_server_is_away_and_the_next_run_replays(
    receiver: SipeReceiver, tmp_path: Path
) -> None:
    receiver.go_away()
    spool = tmp_path / "spool"
    elapsed = run_script(receiver.url, spool, 0, 500)
    assert elapsed < 2.0 + 8.0  # the flush bound, plus an interpreter's start and stop
    assert receiver.count() == 0
    receiver.come_back()
    run_script(receiver.url, spool, 500, 10)  # the next run sends the spool first
    assert receiver.wait_for(510, 20)
    assert numbers(receiver) == list(range(510))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_gets_its_own_connection(
    receiver: SipeReceiver, logger: logging.Logger, tmp_path: Path
) -> None:
    handler = attach(logger, receiver, tmp_path)
    send(logger, 0, 10)
    assert receiver.wait_for(10)
    pid = os.fork()
    if pid == 0:  # the child: log, flush, leave without running the parent's exit hooks
        code = 1
        try:
            send(logger, 1000, 10)
            code = 0 if handler.sink.flush(10) else 2
        finally:
            os._exit(code)
    send(logger, 10, 10)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert receiver.wait_for(30, 10)
    handler.close()
    got = numbers(receiver)
    assert sorted(got) == [*range(20), *range(1000, 1010)]
    assert receiver.invalid == 0 and receiver.accepted == 2
