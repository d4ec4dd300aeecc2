"""The delivery engine: batching, never blocking, retry, rejection, split, spool,
bounded close, replay by the next process, claims, torn files, fork, counters."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _support import RecordingTransport, Switch, poll
from aind_log_utils import _diagnostics
from aind_log_utils._delivery import (
    DeliveryEngine,
    DeliveryStats,
    SendResult,
    describe_error,
)
from aind_log_utils._delivery._segment import SegmentName, host_id
from aind_log_utils._delivery._spool import COMPRESS_FROM, SpoolWriter


def records(n: int, prefix: str = "rec", width: int = 0) -> list[bytes]:
    return [f"{prefix}-{i:06d}".encode().ljust(width, b".") for i in range(n)]


def segments(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.spool*") if not p.name.endswith(".corrupt"))


@pytest.fixture
def make_engine(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., DeliveryEngine]]:
    made: list[DeliveryEngine] = []
    base = re.sub(r"[^A-Za-z0-9]", "_", request.node.name)[:40]

    def make(transport: Any, **kwargs: Any) -> DeliveryEngine:
        options: dict[str, Any] = {
            "batch_wait_s": 0.02,
            "retry_start_s": 0.005,
            "retry_max_s": 0.02,
            "flush_timeout_s": 10.0,
            "spool_dir": tmp_path / "spool",
        }
        options.update(kwargs)
        engine = DeliveryEngine(f"{base}-{len(made)}", transport, **options)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close(timeout_s=0.2)


DEAD_PID_SCRIPT = "import os; print(os.getpid())"


def dead_pid() -> int:
    out = subprocess.run([sys.executable, "-c", DEAD_PID_SCRIPT], check=True, capture_output=True)
    return int(out.stdout)


# A child process that uses a real engine against a transport that is down.
CHILD = r"""
import json, os, sys, threading
from aind_log_utils._delivery import DeliveryEngine, SendResult

class Down:
    def send(self, batch, timeout_s):
        return SendResult.retry("down")

class Hang:
    def __init__(self):
        self.event = threading.Event()
    def send(self, batch, timeout_s):
        self.event.wait()
        return SendResult.ok()

class ToFile:
    def __init__(self, path):
        self.path = path
    def send(self, batch, timeout_s):
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, b"".join(item + b"\n" for item in batch))
        os.close(fd)
        return SendResult.ok()

mode, spool_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
items = [f"child-{i:06d}".encode() for i in range(n)]
common = dict(spool_dir=spool_dir, retry_start_s=0.01, retry_max_s=0.05)
if mode == "spool-and-wait":  # spool everything, stay alive until told
    engine = DeliveryEngine("child", Down(), **common)
    for item in items:
        engine.submit(item)
    engine.close(timeout_s=0)
    print(json.dumps(engine.stats().spooled), flush=True)
    sys.stdin.readline()
elif mode == "spill-and-hang":  # queue of 10, the rest spilled; then SIGKILLed
    engine = DeliveryEngine("child", Down(), max_queue_records=10, batch_wait_s=60, **common)
    for item in items:
        engine.submit(item)
    print(json.dumps(engine.stats().spooled), flush=True)
    sys.stdin.readline()
elif mode == "exit-without-close":  # the atexit hook must bound the exit
    engine = DeliveryEngine("child", Hang(), flush_timeout_s=0.5, batch_wait_s=0.01, **common)
    for item in items:
        engine.submit(item)
    print("ready", flush=True)
elif mode == "replay-to-file":  # replay what is there, writing it to a file
    engine = DeliveryEngine("child", ToFile(sys.argv[4]), **common)
    engine.submit(b"marker-" + str(os.getpid()).encode())
    ok = engine.flush(20)  # own items go after the replay, so this waits for it
    engine.close(5)
    sys.exit(0 if ok else 3)
"""


def run_child(mode: str, spool_dir: Path, n: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(spool_dir), str(n), *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


# ---------------------------------------------------------------- construction
@pytest.mark.parametrize(
    ("param", "value", "error"),
    [
        ("max_queue_bytes", 0, ValueError),
        ("max_queue_records", 1.5, TypeError),
        ("max_batch_bytes", -1, ValueError),
        ("max_batch_records", True, TypeError),
        ("batch_wait_s", -0.1, ValueError),
        ("batch_wait_s", "1", TypeError),
        ("retry_start_s", 0, ValueError),
        ("retry_factor", 0.5, ValueError),
        ("retry_max_s", 0.001, ValueError),
        ("timeout_s", float("nan"), ValueError),
        ("flush_timeout_s", float("inf"), ValueError),
        ("max_spool_bytes", 3, ValueError),
        ("spool", 1, TypeError),
        ("replay_on_start", None, TypeError),
        ("spool_dir", 5, TypeError),
    ],
)
def test_bad_parameter_is_named(param: str, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=param):
        DeliveryEngine("bad", RecordingTransport(), **{param: value})


def test_bad_name_and_transport_are_named() -> None:
    with pytest.raises(ValueError, match="name"):
        DeliveryEngine("  ", RecordingTransport())
    with pytest.raises(TypeError, match="name"):
        DeliveryEngine(3, RecordingTransport())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="transport"):
        DeliveryEngine("x", object())  # type: ignore[arg-type]


def test_default_spool_dir_is_in_the_user_cache(make_engine: Callable[..., DeliveryEngine]) -> None:
    import platformdirs

    engine = make_engine(RecordingTransport(), spool_dir=None, replay_on_start=False)
    cache = platformdirs.user_cache_path("aind-log-utils", appauthor=False)
    assert engine.spool_dir == cache / "spool" / engine.name


def test_worker_thread_is_named_and_daemon(make_engine: Callable[..., DeliveryEngine]) -> None:
    engine = make_engine(RecordingTransport())
    threads = [t for t in threading.enumerate() if t.name == f"aind-log-{engine.name}"]
    assert len(threads) == 1 and threads[0].daemon


# ------------------------------------------------------------------- batching
def test_full_batches_go_at_once_by_record_count(
    make_engine: Callable[..., DeliveryEngine],
) -> None:
    transport = RecordingTransport()
    engine = make_engine(transport, max_batch_records=10, batch_wait_s=30)
    items = records(35)
    for item in items:
        engine.submit(item)
    transport.wait_delivered(30)  # three full batches, long before the 30 s timer
    assert engine.flush(5)
    assert [len(b) for _, b in transport.attempts] == [10, 10, 10, 5]
    assert transport.delivered == items


def test_full_batches_go_at_once_by_bytes(make_engine: Callable[..., DeliveryEngine]) -> None:
    transport = RecordingTransport()
    engine = make_engine(transport, max_batch_bytes=300, batch_wait_s=30)
    items = records(9, width=100)
    for item in items:
        engine.submit(item)
    transport.wait_delivered(9)
    assert [len(b) for _, b in transport.attempts] == [3, 3, 3]


def test_transport_batch_limit_lowers_the_engine_s(
    make_engine: Callable[..., DeliveryEngine],
) -> None:
    transport = RecordingTransport()
    transport.max_batch_bytes = 250  # type: ignore[attr-defined]
    engine = make_engine(transport, batch_wait_s=30)
    for item in records(6, width=100):
        engine.submit(item)
    assert engine.flush(5)
    assert [len(b) for _, b in transport.attempts] == [2, 2, 2]


def test_partial_batch_goes_when_batch_wait_elapses(
    make_engine: Callable[..., DeliveryEngine],
) -> None:
    transport = RecordingTransport()
    engine = make_engine(transport, batch_wait_s=0.3)
    start = time.monotonic()
    for item in records(3):
        engine.submit(item)
    transport.wait_delivered(3, timeout=5)
    elapsed = transport.attempts[0][0] - start
    assert 0.25 <= elapsed < 2.0
    assert [len(b) for _, b in transport.attempts] == [3]


def test_a_steady_stream_longer_than_batch_wait_still_goes_in_full_batches(
    make_engine: Callable[..., DeliveryEngine],
) -> None:
    # Each push carries a full batch; only the last, at flush, may be partial.
    transport = RecordingTransport()
    engine = make_engine(transport, batch_wait_s=0.2, max_batch_records=50)
    pace = threading.Event()  # never set: wait() paces the producer
    deadline = time.monotonic() + 0.8
    sent = 0
    while time.monotonic() < deadline:
        engine.submit(b"%06d" % sent)
        sent += 1
        pace.wait(0.001)  # ~1,000 items/s: 50 arrive well within the 0.2 s wait
    assert engine.flush(10)
    sizes = [len(batch) for _, batch in transport.attempts]
    assert transport.delivered == [b"%06d" % i for i in range(sent)]
    assert sent > 300 and all(size == 50 for size in sizes[:-1]), sizes


def test_submit_never_blocks_while_the_transport_hangs(
    make_engine: Callable[..., DeliveryEngine],
) -> None:
    gate = threading.Event()
    transport = RecordingTransport(gate=gate)
    engine = make_engine(transport, max_queue_records=20_000, batch_wait_s=0.001)
    engine.submit(b"first")
    assert transport.in_send.wait(5)  # the worker is now stuck in send()
    items = records(40_000)
    costs = []
    for item in items:
        t0 = time.perf_counter()
        engine.submit(item)
        costs.append(time.perf_counter() - t0)
    memory, spilled = costs[:19_000], costs[21_000:]
    mean_memory_us = statistics.fmean(memory) * 1e6
    mean_spill_us = statistics.fmean(spilled) * 1e6
    print(f"submit: {mean_memory_us:.2f} us/item queued, {mean_spill_us:.2f} us/item spooled")
    assert mean_memory_us < 50
    assert mean_spill_us < 200
    assert max(costs) < 0.1  # no call waits on the hung send (scheduling noise only)
    stats = engine.stats()
    assert stats.spooled > 0 and stats.queued + stats.spooled == 40_001
    gate.set()
    assert engine.flush(20)
    assert transport.delivered == [b"first", *items]


# ---------------------------------------------------------------------- retry
def test_retry_then_success_delivers_everything_once_in_order(
    make_engine: Callable[..., DeliveryEngine],
) -> None:
    failures = iter(range(3))

    def respond(batch: list[bytes]) -> SendResult:
        return SendResult.retry("503") if next(failures, None) is not None else SendResult.ok()

    transport = RecordingTransport(respond)
    engine = make_engine(transport, max_batch_records=20)
    items = records(50)
    for item in items:
        engine.submit(item)
    assert engine.flush(10)
    assert transport.delivered == items
    stats = engine.stats()
    assert (stats.sent, stats.retried, stats.queued, stats.errors) == (50, 3, 0, 0)


def test_backoff_grows_and_is_capped(make_engine: Callable[..., DeliveryEngine]) -> None:
    switch = Switch()
    transport = RecordingTransport(switch)
    engine = make_engine(transport, retry_start_s=0.01, retry_factor=2.0, retry_max_s=0.04)
    engine.submit(b"x")
    transport.wait_for(lambda: len(transport.attempts) >= 8)
    times = [t for t, _ in transport.attempts[:8]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) < 0.5  # full jitter under a 0.04 s cap (plus scheduling)
    switch.up = True
    assert engine.flush(5)


def test_transport_exception_is_retried_and_never_leaks_secrets(
    make_engine: Callable[..., DeliveryEngine], capfd: pytest.CaptureFixture[str]
) -> None:
    _diagnostics.set_quiet(False)  # the conftest silences them
    calls = iter(range(1))

    def respond(batch: list[bytes]) -> SendResult:
        if next(calls, None) is not None:
            raise ConnectionError(
                "POST https://alice:hunter2@loki.example:3100/loki/api/v1/push failed; "
                "headers={'Authorization': 'Bearer sekrit-token-123'} ?api_key=k3y"
            )
        return SendResult.ok()

    transport = RecordingTransport(respond)
    engine = make_engine(transport)
    engine.submit(b"x")
    assert engine.flush(5)
    stats = engine.stats()
    assert (stats.sent, stats.retried, stats.errors) == (1, 1, 1)
    err = capfd.readouterr().err
    assert "ConnectionError" in err and engine.name in err
    for secret in ("hunter2", "alice", "sekrit-token-123", "k3y"):
        assert secret not in err


def test_describe_error_strips_credentials() -> None:
    text = describe_error(
        RuntimeError("http://u:p@h/x Authorization: Basic dXNlcjpwYXNz token=abc&x=1")
    )
    assert text.startswith("RuntimeError: ")
    assert "u:p@" not in text and "dXNlcjpwYXNz" not in text and "abc" not in text
    assert describe_error(ValueError()) == "ValueError"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"
    shaped = describe_error(OSError(f"refused {jwt} with hf_abcdefghijklmnopqrstuvwxyzABCDEFGH"))
    assert "eyJzdWIi" not in shaped and "hf_abcdefghij" not in shaped


def test_retry_after_is_honoured(make_engine: Callable[..., DeliveryEngine]) -> None:
    answers = iter([SendResult.retry("429", retry_after_s=0.3)])
    transport = RecordingTransport(lambda batch: next(answers, SendResult.ok()))
    engine = make_engine(transport)
    engine.submit(b"x")
    assert engine.flush(5)
    (t1, _), (t2, _) = transport.attempts
    assert t2 - t1 >= 0.29  # retry_max_s is 0.02: only Retry-After explains the wait


def test_send_result_tolerates_bad_retry_after_and_checks_counts() -> None:
    assert SendResult.retry("x", retry_after_s=-1).retry_after_s is None
    assert SendResult.retry("x", retry_after_s=float("nan")).retry_after_s is None
    assert SendResult.retry("x", retry_after_s=float("inf")).retry_after_s == float("inf")
    assert SendResult.retry("x" * 500).reason.endswith("...")
    with pytest.raises(ValueError, match="rejected"):
        SendResult.reject(0, "nothing")


def test_permanent_rejection_is_counted_and_never_retried(
    make_engine: Callable[..., DeliveryEngine],
) -> None:
    answers = iter([SendResult.reject(2, "line too long")])
    transport = RecordingTransport(lambda batch: next(answers, SendResult.ok()))
    engine = make_engine(transport, batch_wait_s=30)
    items = records(5)
    for item in items:
        engine.submit(item)
    assert engine.flush(5)
    engine.submit(b"after")
    assert engine.flush(5)
    assert [b for _, b in transport.attempts] == [items, [b"after"]]  # no resend
    stats = engine.stats()
    assert stats.rejected == {"line too long": 2}
    assert (stats.sent, stats.retried) == (4, 0)


def test_too_large_batches_are_split_in_order(make_engine: Callable[..., DeliveryEngine]) -> None:
    def respond(batch: list[bytes]) -> SendResult:
        if any(b"huge" in item for item in batch) and len(batch) == 1:
            return SendResult.too_large("entry too large")
        if len(batch) > 3 or any(b"huge" in item for item in batch):
            return SendResult.too_large("entry too large")
        return SendResult.ok()

    transport = RecordingTransport(respond)
    engine = make_engine(transport, batch_wait_s=30)
    items = records(10)
    items[6] = b"huge-item"
    for item in items:
        engine.submit(item)
    assert engine.flush(5)
    assert transport.delivered == [item for item in items if item != b"huge-item"]
    assert [len(b) for _, b in transport.attempts][:4] == [10, 5, 2, 3]
    stats = engine.stats()
    assert stats.rejected == {"entry too large": 1}
    assert (stats.sent, stats.retried) == (9, 0)


def test_invalid_items_are_dropped_and_bytearrays_accepted(
    make_engine: Callable[..., DeliveryEngine],
) -> None:
    transport = RecordingTransport()
    engine = make_engine(transport)
    engine.submit("text")  # type: ignore[arg-type]
    engine.submit(bytearray(b"ba"))  # type: ignore[arg-type]
    engine.submit(memoryview(b"mv"))  # type: ignore[arg-type]
    assert engine.flush(5)
    assert transport.delivered == [b"ba", b"mv"]
    assert engine.stats().dropped == {"invalid_item": 1}


# ---------------------------------------------------------------------- spool
def test_overflow_goes_to_the_spool_and_is_replayed_in_order(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    switch = Switch()
    transport = RecordingTransport(switch)
    engine = make_engine(transport, max_queue_records=20, max_batch_records=5)
    items = records(500)
    for item in items:
        engine.submit(item)
    stats = engine.stats()
    assert stats.spooled >= 475 and stats.queued + stats.spooled == 500
    assert segments(tmp_path / "spool")
    assert not engine.flush(0.2)  # the server is away
    switch.up = True
    assert engine.flush(10)
    assert transport.delivered == items  # nothing lost, nothing twice, in order
    stats = engine.stats()
    assert (stats.sent, stats.replayed, stats.dropped) == (500, stats.spooled, {})
    assert segments(tmp_path / "spool") == []
    # and the engine is back to memory: new items no longer touch the disk
    engine.submit(b"later")
    assert engine.flush(5)
    assert engine.stats().spooled == stats.spooled


def test_segments_closed_on_the_callers_thread_are_fsynced_by_the_worker(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An fsync may take as long as the disk likes: never on the thread that logs.
    synced: list[tuple[str, str]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append((threading.current_thread().name, os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the file of an fd")
    monkeypatch.setattr(os, "fsync", fsync)
    # max_spool_bytes / 8 -> 64 KiB segments: 400 items of ~1 KB close several.
    engine = make_engine(
        RecordingTransport(Switch()), max_queue_records=10, max_spool_bytes=512 * 1024
    )
    for item in records(400, width=1000):
        engine.submit(item)
    caller = threading.current_thread().name
    assert not [name for name, _ in synced if name == caller]
    closed = [p for p in segments(tmp_path / "spool") if p.suffix == ".spool"]
    assert len(closed) >= 4

    def worker_synced() -> bool:
        done = {Path(path).name.split(".spool")[0] for name, path in synced if name != caller}
        # all but the open segment (and any compressed meanwhile, fsynced as they are written)
        return len(done) >= len(closed) - 1

    poll(worker_synced)
    assert all(name.startswith("aind-log-") for name, _ in synced)
    assert engine.stats().spooled + engine.stats().queued == 400


def test_spool_cap_drops_are_counted(make_engine: Callable[..., DeliveryEngine]) -> None:
    switch = Switch()
    transport = RecordingTransport(switch)
    engine = make_engine(transport, max_queue_records=10, max_spool_bytes=2000, max_batch_records=5)
    items = records(300, width=50)
    for item in items:
        engine.submit(item)
    stats = engine.stats()
    dropped = stats.dropped.get("spool_full", 0)
    assert dropped > 0
    assert stats.spooled == (2000 - 8) // 58
    assert stats.queued + stats.spooled + dropped == 300
    switch.up = True
    assert engine.flush(10)
    assert engine.stats().sent == 300 - dropped
    delivered = transport.delivered
    assert len(delivered) == 300 - dropped and delivered == sorted(delivered)


def test_without_spool_overflow_is_dropped_and_counted(
    make_engine: Callable[..., DeliveryEngine],
) -> None:
    gate = threading.Event()
    transport = RecordingTransport(gate=gate)
    engine = make_engine(transport, max_queue_records=10, spool=False, batch_wait_s=0)
    engine.submit(b"first")
    assert transport.in_send.wait(5)
    for item in records(30):
        engine.submit(item)
    assert engine.stats().dropped == {"queue_full": 20}
    gate.set()
    assert engine.flush(5)
    assert len(transport.delivered) == 11


def test_close_is_bounded_and_the_next_engine_replays_the_rest(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    gate = threading.Event()
    hanging = RecordingTransport(gate=gate)
    engine = make_engine(hanging, max_batch_records=10)
    items = records(100)
    try:
        for item in items:
            engine.submit(item)
        assert hanging.in_send.wait(5)
        t0 = time.monotonic()
        engine.close(timeout_s=0.5)
        elapsed = time.monotonic() - t0
        assert 0.45 <= elapsed < 1.5
        stats = engine.stats()
        assert (stats.spooled, stats.queued, stats.sent, stats.dropped) == (100, 0, 0, {})
        engine.close()  # idempotent
        assert segments(tmp_path / "spool")
        # the next start
        transport = RecordingTransport()
        later = make_engine(transport)
        transport.wait_delivered(100)
        assert transport.delivered == items
        poll(lambda: later.stats().replayed == 100)
        poll(lambda: segments(tmp_path / "spool") == [])
    finally:
        gate.set()


def test_next_start_replays_close_leftovers_and_overflow_in_submission_order(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    transport = RecordingTransport(Switch())
    engine = make_engine(transport, max_queue_records=10, max_batch_records=4)
    items = records(50)
    for item in items:
        engine.submit(item)
    transport.wait_for(lambda: len(transport.attempts) >= 1)
    engine.close(timeout_s=0)  # memory (older) is spooled AFTER the overflow (newer)
    assert engine.stats().spooled == 50
    assert len(segments(tmp_path / "spool")) >= 2
    replayer = RecordingTransport()
    make_engine(replayer)
    replayer.wait_delivered(50)
    assert replayer.delivered == items


def test_close_returns_at_once_when_the_server_is_known_away(
    make_engine: Callable[..., DeliveryEngine],
) -> None:
    transport = RecordingTransport(lambda batch: SendResult.retry("429", retry_after_s=60))
    engine = make_engine(transport)
    for item in records(10):
        engine.submit(item)
    transport.wait_for(lambda: len(transport.attempts) >= 1)
    poll(lambda: engine.stats().retried == 1)
    t0 = time.monotonic()
    engine.close(timeout_s=5)
    assert time.monotonic() - t0 < 1.0  # the next try is after the deadline: spool now
    assert engine.stats().spooled == 10


def test_items_after_close_go_to_the_spool(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    transport = RecordingTransport()
    engine = make_engine(transport)
    engine.close()
    engine.submit(b"late")
    assert engine.flush(1)
    assert engine.stats().spooled == 1 and transport.delivered == []
    # this process is alive: only a later process replays what came after close
    replayer = RecordingTransport()
    later = make_engine(replayer)
    later.submit(b"own")
    assert later.flush(5)  # own items go after the replay phase: it is over
    assert replayer.delivered == [b"own"]
    (path,) = segments(tmp_path / "spool")
    assert _read(path) == [b"late"]


def test_live_process_files_are_left_dead_process_files_replayed(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    child = run_child("spool-and-wait", spool_dir, 50)
    assert child.stdout is not None
    try:
        assert int(child.stdout.readline()) == 50
        transport = RecordingTransport()
        engine = make_engine(transport)
        engine.submit(b"own")
        assert engine.flush(5)  # own items go after the replay phase: it is over
        assert transport.delivered == [b"own"]
        assert engine.stats().replayed == 0
        assert segments(spool_dir) and not any(".claimed-" in p.name for p in segments(spool_dir))
    finally:
        assert child.stdin is not None
        child.stdin.write("\n")
        child.stdin.close()
        assert child.wait(10) == 0
    transport = RecordingTransport()
    engine = make_engine(transport)
    transport.wait_delivered(50)
    assert transport.delivered == [f"child-{i:06d}".encode() for i in range(50)]
    poll(lambda: engine.stats().replayed == 50)


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_sigkilled_process_spilled_records_survive(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    child = run_child("spill-and-hang", spool_dir, 200)
    assert child.stdout is not None
    spooled = int(child.stdout.readline())
    assert spooled == 190
    # Spooled frames are gathered in memory; the worker writes them within 0.1 s
    # (SPOOL_WRITE_S) with no flush asked for (it waits 60 s for its batch): from
    # then on a SIGKILL cannot take them.
    poll(lambda: sum(len(_read(p)) for p in segments(spool_dir)) == 190, timeout=5)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    transport = RecordingTransport()
    make_engine(transport)
    transport.wait_delivered(spooled)
    # the 10 in memory died with the process; the spooled ones arrive, in order
    assert transport.delivered == [f"child-{i:06d}".encode() for i in range(10, 200)]


def test_a_queue_overflow_is_on_disk_within_the_spool_write_time(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    # The worker waits out a batch (60 s) when the queue overflows into the spool:
    # the overflow must still reach the disk within SPOOL_WRITE_S (0.1 s), where a
    # SIGKILL cannot take it, not when the batch wait ends.
    engine = make_engine(RecordingTransport(Switch(False)), max_queue_records=2, batch_wait_s=60)
    engine.submit(b"queued-0")
    poll(lambda: len(engine._work._waiters) == 1, timeout=5)  # type: ignore[attr-defined]
    for i in range(1, 6):
        engine.submit(f"item-{i}".encode())  # one more fits the queue, four overflow
    spool_dir = tmp_path / "spool"
    poll(lambda: sum(len(_read(p)) for p in segments(spool_dir)) == 4, timeout=2)
    assert [item for p in segments(spool_dir) for item in _read(p)] == [
        f"item-{i}".encode() for i in range(2, 6)
    ]


FAILING_DISK_CHILD = r"""
import json, os, resource, signal, sys
from aind_log_utils._delivery import DeliveryEngine, SendResult

class Switch:
    up = False
    delivered = []
    def send(self, batch, timeout_s):
        if not self.up:
            return SendResult.retry("down")
        self.delivered.extend(batch)
        return SendResult.ok()

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))
server = Switch()
engine = DeliveryEngine("child", server, spool_dir=sys.argv[1], max_queue_records=1,
                        batch_wait_s=0, retry_start_s=0.05, retry_max_s=0.05)
for i in range(600):
    engine.submit(f"item-{i:04d}-".encode() + b"x" * 990)
engine.flush(0)  # what the spool gathered, written
stats = engine.stats()
print(json.dumps([stats.spooled, stats.dropped, stats.errors, stats.queued]), flush=True)
sys.stdin.readline()  # the parent has read the spool
server.up = True
ok = engine.flush(20)
print(json.dumps([ok, [int(item[5:9]) for item in server.delivered]]), flush=True)
os._exit(0)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
def test_a_failed_gathered_spool_write_counts_exactly_the_records_it_lost(
    tmp_path: Path,
) -> None:
    """Spooled frames are written 64 KiB at a time. When such a write fails (here:
    each file may hold 150 kB), the records that did not reach the disk whole are
    counted dropped, not spooled: what the spool holds is what it says it holds;
    and the process replays it all itself once the server is back, the segments
    the failures closed included."""
    spool_dir = tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, "-c", FAILING_DISK_CHILD, str(spool_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    spooled, dropped, errors, queued = json.loads(child.stdout.readline())
    # The child may exit while its worker compresses a segment: both copies, or a
    # temp file, may be left; a replay takes the compressed copy, as this does.
    copies: dict[tuple[str, int, str, int], Path] = {}
    for path in segments(spool_dir):
        name = SegmentName.parse(path.name)
        if name is not None and (name.compressed or name.key not in copies):
            copies[name.key] = path
    on_disk = [item for _, path in sorted(copies.items()) for item in _read(path)]
    assert dropped.get("spool_error", 0) > 0 and errors > 0
    assert spooled + dropped["spool_error"] + queued == 600
    assert len(on_disk) == spooled
    numbers = [int(item[5:9]) for item in on_disk]
    assert numbers == sorted(set(numbers))  # in order, none twice
    # The segments a failed write closed are this process's to replay, with the rest.
    child.stdin.write("go\n")
    child.stdin.flush()
    ok, delivered = json.loads(child.stdout.readline())
    assert child.wait(30) == 0
    assert ok and delivered == numbers


def test_exit_without_close_is_bounded_and_spools(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    t0 = time.monotonic()
    child = run_child("exit-without-close", spool_dir, 30)
    out, _ = child.communicate(timeout=20)
    elapsed = time.monotonic() - t0
    assert child.returncode == 0 and out.strip() == "ready"
    assert elapsed < 5.0  # flush_timeout_s is 0.5: the hanging send does not hold exit
    got = [i for p in segments(spool_dir) for i in _read(p)]
    assert got == [f"child-{i:06d}".encode() for i in range(30)]


def _read(path: Path) -> list[bytes]:
    from aind_log_utils._delivery._spool import read_segment

    return read_segment(path).items


def _write_dead_files(spool_dir: Path, files: int, per_file: int) -> list[bytes]:
    pid = dead_pid()
    expected = []
    for f in range(files):
        writer = SpoolWriter(spool_dir, host=host_id(), pid=pid, token=f"{f:04x}")
        for i in range(per_file):
            item = f"dead-{f:03d}-{i:04d}".encode()
            writer.append(item, i + 1)
            expected.append(item)
        writer.rotate(fsync=True)
    return expected


def test_two_engines_racing_replay_each_record_once(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    expected = _write_dead_files(tmp_path / "spool", files=30, per_file=40)
    transports = [RecordingTransport(), RecordingTransport()]
    barrier = threading.Barrier(2)
    engines: list[DeliveryEngine] = []

    def start(t: RecordingTransport) -> None:
        barrier.wait()
        engines.append(make_engine(t))

    threads = [threading.Thread(target=start, args=(t,)) for t in transports]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    poll(lambda: sum(e.stats().replayed for e in engines) >= len(expected))
    got = Counter(item for t in transports for item in t.delivered)
    assert got == Counter(expected)
    assert sum(e.stats().replayed for e in engines) == len(expected)


def test_processes_racing_replay_each_record_once(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    expected = _write_dead_files(spool_dir, files=40, per_file=25)
    outs = [tmp_path / f"out-{i}.txt" for i in range(2)]
    children = [run_child("replay-to-file", spool_dir, 0, str(out)) for out in outs]
    transport = RecordingTransport()
    engine = make_engine(transport)  # and this process races too
    engine.submit(b"own")
    assert engine.flush(20)
    for child in children:
        child.communicate(timeout=30)
        assert child.returncode == 0
    lines = [line for out in outs if out.exists() for line in out.read_bytes().splitlines()]
    got = Counter(line for line in lines + transport.delivered if line.startswith(b"dead-"))
    assert got == Counter(expected)


def test_torn_tail_replays_the_intact_records(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    expected = _write_dead_files(spool_dir, files=1, per_file=10)
    (path,) = segments(spool_dir)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size - 3)  # killed while writing the last record
    transport = RecordingTransport()
    engine = make_engine(transport)
    transport.wait_delivered(9)
    engine.submit(b"own")
    assert engine.flush(5)
    assert transport.delivered == [*expected[:9], b"own"]
    assert engine.stats().errors == 0
    assert segments(spool_dir) == []


def test_foreign_file_in_the_spool_is_set_aside(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    junk = spool_dir / f"{host_id()}-{dead_pid()}-abcd-0000000000000001.spool"
    junk.write_bytes(b"this is not a spool file")
    transport = RecordingTransport()
    engine = make_engine(transport)
    engine.submit(b"own")
    assert engine.flush(5)
    assert transport.delivered == [b"own"]
    assert [p.name.endswith(".corrupt") for p in spool_dir.iterdir()] == [True]


def test_replay_on_start_off_leaves_files(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    _write_dead_files(tmp_path / "spool", files=1, per_file=3)
    transport = RecordingTransport()
    engine = make_engine(transport, replay_on_start=False)
    engine.submit(b"own")
    assert engine.flush(5)
    assert transport.delivered == [b"own"] and len(segments(tmp_path / "spool")) == 1


# ----------------------------------------------------------------------- fork
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_sends_its_own_items_not_the_parent_s(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    out = tmp_path / "out.txt"
    parent_pid = os.getpid()
    gate = threading.Event()

    class ToFile:
        def send(self, batch: list[bytes], timeout_s: float) -> SendResult:
            if os.getpid() == parent_pid:
                gate.wait()
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.write(fd, b"".join(item + b"\n" for item in batch))
            os.close(fd)
            return SendResult.ok()

    engine = make_engine(ToFile(), max_batch_records=5)
    parent_items = records(20, "parent")
    for item in parent_items:  # 5 in flight (held by the gate), 15 queued
        engine.submit(item)
    poll(lambda: engine.stats().queued == 20)
    child_items = records(7, "child")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            for item in child_items:
                engine.submit(item)
            own_files = engine._spool.writer._pid == os.getpid()  # spools under its own pid
            engine.close(timeout_s=10)
            stats = engine.stats()
            code = 0 if (stats.sent, stats.spooled, own_files) == (7, 0, True) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert out.read_bytes().splitlines() == child_items  # the child's only
    gate.set()
    assert engine.flush(10)
    lines = out.read_bytes().splitlines()
    assert Counter(lines) == Counter(parent_items + child_items)  # nothing twice
    assert [line for line in lines if line.startswith(b"parent")] == parent_items


# ------------------------------------------------------------------- counters
def test_counters_snapshot(make_engine: Callable[..., DeliveryEngine]) -> None:
    answers = iter([SendResult.retry("x"), SendResult.reject(1, "bad line")])
    transport = RecordingTransport(lambda batch: next(answers, SendResult.ok()))
    engine = make_engine(transport, batch_wait_s=30)
    for item in records(4):
        engine.submit(item)
    assert engine.flush(5)
    stats = engine.stats()
    # The failed attempt moved the batch to the spool (the server was away), so
    # the rest was sent from there: spooled and replayed count it.
    assert stats == DeliveryStats(
        sent=3,
        retried=1,
        spooled=4,
        replayed=3,
        rejected={"bad line": 1},
        dropped={},
        queued=0,
        errors=0,
    )
    stats.rejected["bad line"] = 99  # a copy: the engine's counters are untouched
    assert engine.stats().rejected == {"bad line": 1}


def test_context_manager_closes(tmp_path: Path) -> None:
    transport = RecordingTransport()
    with DeliveryEngine("ctx", transport, spool_dir=tmp_path, batch_wait_s=30) as engine:
        engine.submit(b"x")
    assert transport.delivered == [b"x"]
    assert not any(t.name == "aind-log-ctx" and t.is_alive() for t in threading.enumerate())


def test_flush_and_close_from_many_threads(make_engine: Callable[..., DeliveryEngine]) -> None:
    transport = RecordingTransport()
    engine = make_engine(transport, batch_wait_s=30)
    items = records(200)
    results: list[bool] = []

    def work(chunk: list[bytes]) -> None:
        for item in chunk:
            engine.submit(item)
        results.append(engine.flush(5))

    threads = [threading.Thread(target=work, args=(items[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    closers = [threading.Thread(target=engine.close) for _ in range(3)]
    for t in closers:
        t.start()
    for t in closers:
        t.join(10)
    assert results == [True] * 4
    assert Counter(transport.delivered) == Counter(items)


def test_a_failed_attempt_moves_memory_to_the_spool_in_order(
    make_engine: Callable[..., DeliveryEngine],
) -> None:
    gate = threading.Event()
    answers = iter([SendResult.retry("away")])

    def answer(batch: list[bytes]) -> SendResult:
        result = next(answers, None)
        if result is not None:
            return result
        gate.wait(10)
        return SendResult.ok()

    transport = RecordingTransport(answer)
    engine = make_engine(transport, batch_wait_s=0.01, max_batch_records=10, retry_start_s=0.01)
    items = records(30)
    for item in items[:10]:
        engine.submit(item)
    deadline = time.monotonic() + 10
    while engine.stats().retried < 1 and time.monotonic() < deadline:
        time.sleep(0.01)  # polling with a deadline
    for item in items[10:]:
        engine.submit(item)  # the server is away: these go to disk too
    assert engine.stats().spooled == 30  # nothing waits only in memory
    gate.set()
    assert engine.flush(10)
    assert transport.delivered == items  # in order, once


# ------------------------------------------------- replay in batches, backoff cap
def test_default_retry_cap_is_10_s() -> None:
    import inspect

    params = inspect.signature(DeliveryEngine.__init__).parameters
    assert params["retry_max_s"].default == 10.0
    assert "default 10 s" in (DeliveryEngine.__doc__ or "")


def _within(attempts: list[tuple[float, list[bytes]]], max_bytes: int, max_records: int) -> bool:
    return all(
        len(batch) <= max_records and (len(batch) == 1 or sum(map(len, batch)) <= max_bytes)
        for _, batch in attempts
    )


def test_replay_of_a_dead_writer_s_segment_goes_in_bounded_batches(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    expected = _write_dead_files(tmp_path / "spool", files=2, per_file=500)  # 14-byte items
    transport = RecordingTransport()
    engine = make_engine(transport, max_batch_records=64, max_batch_bytes=600)
    engine.submit(b"own")
    assert engine.flush(10)
    assert transport.delivered == [*expected, b"own"]
    assert _within(transport.attempts, 600, 64)
    assert len(transport.attempts) >= 2 * 500 * 14 // 600


def test_outage_replay_goes_in_bounded_batches_in_order(
    make_engine: Callable[..., DeliveryEngine],
) -> None:
    switch = Switch()
    transport = RecordingTransport(switch)
    engine = make_engine(
        transport, max_queue_records=20, max_batch_records=50, max_batch_bytes=2000
    )
    items = records(2000, width=100)
    for item in items:
        engine.submit(item)
    assert engine.stats().spooled >= 1900
    switch.up = True
    assert engine.flush(20)
    assert transport.delivered == items
    assert _within(transport.attempts, 2000, 50)


def test_a_replay_stopped_midway_resumes_where_it_stopped_in_this_process(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    expected = _write_dead_files(tmp_path / "spool", files=1, per_file=100)
    answers = iter([SendResult.ok(), SendResult.ok()])
    first = RecordingTransport(lambda batch: next(answers, SendResult.retry("away")))
    engine = make_engine(first, max_batch_records=10, retry_start_s=10.0, retry_max_s=10.0)
    first.wait_for(lambda: len(first.attempts) >= 3)
    engine.close(timeout_s=0)  # the file stays, 20 of its records taken
    assert first.delivered == expected[:20]
    second = RecordingTransport()
    other = make_engine(second, max_batch_records=10)
    other.submit(b"own")
    assert other.flush(10)
    assert second.delivered == [*expected[20:], b"own"]  # the taken batches are not resent
    assert segments(tmp_path / "spool") == []


# ------------------------------------------------------- compressed spool
def _json_lines(n: int) -> list[bytes]:
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_spool import json_lines
    finally:
        sys.path.pop(0)
    return json_lines(n)


def _outage(
    make_engine: Callable[..., DeliveryEngine], spool_dir: Path, cap: int, lines: list[bytes]
) -> tuple[DeliveryEngine, RecordingTransport, Switch]:
    """Submit more raw bytes than ``cap`` while the server is away, paced like a
    program logging steadily: each closed segment gets compressed before the next."""
    switch = Switch()
    transport = RecordingTransport(switch)
    engine = make_engine(
        transport, max_queue_records=50, max_spool_bytes=cap, retry_start_s=0.05, retry_max_s=0.1
    )
    chunk = 100
    segment = engine._spool.segment_bytes
    for start in range(0, len(lines), chunk):
        for line in lines[start : start + chunk]:
            engine.submit(line)
        # raw: the segment being retried, the open one, and those closed before the
        # directory held COMPRESS_FROM of its cap
        poll(lambda: len(raw_segments(spool_dir)) <= 2 + int(cap * COMPRESS_FROM) // segment)
    return engine, transport, switch


def raw_segments(spool_dir: Path) -> list[Path]:
    return list(spool_dir.glob("*.spool"))


def test_a_long_outage_fits_the_spool_compressed_and_is_delivered_once_in_order(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    spool_dir, cap = tmp_path / "spool", 1024 * 1024
    lines = _json_lines(6000)  # ~3.5 MB raw: 3.4 times the cap
    assert sum(map(len, lines)) > 3 * cap
    engine, transport, switch = _outage(make_engine, spool_dir, cap, lines)
    assert engine.stats().dropped == {}
    assert len(list(spool_dir.glob("*.spoolz"))) >= 10
    switch.up = True
    assert engine.flush(30)
    assert transport.delivered == lines
    assert engine.stats().dropped == {} and engine.stats().sent == len(lines)
    assert segments(spool_dir) == []


def test_the_next_start_replays_compressed_segments_in_order(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    spool_dir, cap = tmp_path / "spool", 1024 * 1024
    lines = _json_lines(5000)
    engine, _, _ = _outage(make_engine, spool_dir, cap, lines)
    engine.close(timeout_s=0)
    assert engine.stats().dropped == {}
    files = segments(spool_dir)
    assert any(p.name.endswith(".spoolz") for p in files)
    assert any(p.name.endswith(".spool") for p in files)  # the open and the retried one
    transport = RecordingTransport()
    other = make_engine(transport, max_batch_records=200)  # a new engine: the next start
    other.submit(b"own")
    assert other.flush(30)
    assert transport.delivered == [*lines, b"own"]
    assert _within(transport.attempts, 1024 * 1024, 200)
    assert segments(spool_dir) == []


def test_a_process_killed_while_compressing_leaves_each_record_once(
    make_engine: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, "-c", COMPRESSING_CHILD, str(spool_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert int(child.stdout.readline()) >= 8000 - 10  # the 10 queued are spilled next
    submitted = 8000
    poll(lambda: bool(list(spool_dir.glob("*.spoolz"))), timeout=20)  # compressing
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    transport = RecordingTransport()
    engine = make_engine(transport)
    engine.submit(b"own")
    assert engine.flush(30)
    got = transport.delivered[:-1]
    assert len(got) == len(set(got)) == submitted  # every record once
    assert got == sorted(got)  # in submission order
    assert [p for p in spool_dir.iterdir()] == []


COMPRESSING_CHILD = r"""
import sys
from aind_log_utils._delivery import DeliveryEngine, SendResult

class Down:
    def send(self, batch, timeout_s):
        return SendResult.retry("down")

engine = DeliveryEngine("child", Down(), spool_dir=sys.argv[1], max_queue_records=10,
                        max_spool_bytes=4 << 20, retry_start_s=0.2, retry_max_s=0.2)
for i in range(8000):  # 3.6 MB in 512 KiB segments, compressed as they close
    engine.submit(b'{"seq": %08d, "msg": "a line of a steady program"}' % i + b" " * 400)
print(engine.stats().spooled, flush=True)
sys.stdin.readline()  # SIGKILLed while it waits (and compresses)
"""


def test_a_spill_larger_than_a_segment_keeps_order(tmp_path: Path) -> None:
    # Found by the SIPE tests: a spill that rotated segments part-way sent newer
    # records first (and some twice).
    class Away:
        def __init__(self) -> None:
            self.calls = 0
            self.got: list[int] = []
            self.gate = threading.Event()

        def send(self, batch: list[bytes], timeout_s: float) -> SendResult:
            self.calls += 1
            if self.calls == 1:
                self.gate.wait(5)
                return SendResult.retry("away")
            self.got.extend(int(b.split(b":")[0]) for b in batch)
            return SendResult.ok()

    transport = Away()
    engine = DeliveryEngine(
        "spill-order", transport, spool_dir=tmp_path, max_spool_bytes=1024 * 1024,
        batch_wait_s=0.0, max_batch_records=10, retry_start_s=0.01, retry_max_s=0.02,
    )  # fmt: skip
    for i in range(400):
        engine.submit(b"%d:" % i + b"x" * 1000)
    transport.gate.set()
    assert engine.flush(10)
    engine.close()
    assert transport.got == list(range(400))
