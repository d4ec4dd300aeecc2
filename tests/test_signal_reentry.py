"""A signal handler that logs runs on the thread it interrupted, maybe inside one of
the library's own locked sections (the session's SIGTERM handler logs the stop line
and closes the sinks). Every lock a record takes on the caller's thread is
re-entrant, so the handler never waits for its own thread; a sender link gives up
instead (see test_delivery_batching and the SIGTERM tests of test_loki_reliability).
"""

from __future__ import annotations

import io
import logging
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aind_log_utils import RunDirectory, _diagnostics
from aind_log_utils._cloudwatch import CloudWatchSink


def reentered(owner: Any, name: str, call: Callable[[], object]) -> bool:
    """Run ``call`` on a thread that already holds ``owner.<name>``, as an interrupted
    thread would; True if it came back.

    The lock is swapped for a fresh one of its own kind for the call, and put back
    after: were it not re-entrant, the stuck (daemon) thread holds the fresh one,
    and the owner still closes.
    """
    original = getattr(owner, name)
    lock = threading.RLock() if isinstance(original, type(threading.RLock())) else threading.Lock()
    setattr(owner, name, lock)
    done = threading.Event()

    def run() -> None:
        with lock:
            call()
        done.set()

    try:
        threading.Thread(target=run, daemon=True).start()
        return done.wait(5)
    finally:
        setattr(owner, name, original)


def record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("reentry", level, __file__, 1, message, None, None)


def test_the_run_directorys_handler_counts_a_record_logged_inside_its_count(
    tmp_path: Path,
) -> None:
    with RunDirectory("reentry", base_dir=tmp_path) as run:
        handler = run._handler
        assert reentered(handler, "_count_lock", lambda: handler.write(record("in the handler")))
        assert handler.counts_snapshot()["ERROR"] == 1  # (its own start line is INFO)
        assert handler.first_error == "in the handler"
    assert "in the handler" in (run.path / "log.jsonl").read_text()


def test_a_diagnostic_inside_a_diagnostic() -> None:
    assert reentered(_diagnostics, "_lock", lambda: _diagnostics.diagnose("reentry", "x"))


def test_cloudwatch_turned_off_counts_a_record_logged_inside_its_count(
    tmp_path: Path,
) -> None:
    sink = CloudWatchSink(program="p", spool_dir=tmp_path / "s")
    try:
        sink._transport.off_reason = "no_credentials"  # as after a refused call
        line = b'{"level":"ERROR","message":"m"}\n'
        event = {"level": "ERROR", "message": "m"}
        assert reentered(sink, "_off_lock", lambda: sink.handle_event(event, line, record("m")))
        assert sink.counters()["dropped"].get("no_credentials") == 1
    finally:
        sink.close(0)


def test_a_sipe_frame_encoded_inside_another_keeps_both_records() -> None:
    """Thread delivery encodes on the caller's thread with a reused pickler; a
    handler encoding its own record between another's pickling and the read of
    the result must not hand that other record its frame."""
    from aind_log_utils._sipe import _encode, _frame

    class Interrupted(_frame._PlainPickler):
        def dump(self, obj: Any) -> None:
            super().dump(obj)
            if "mine" in obj:  # the handler runs here, before the caller reads
                _frame.pickle_plain({"handler": 2})

    buffer = io.BytesIO()
    pickler = Interrupted(buffer, _encode.PICKLE_PROTOCOL)
    pickler.fast = True
    _frame._local.pickler = (pickler, buffer)
    try:
        framed = _frame.pickle_plain({"mine": 1})
    finally:
        _frame._local.__dict__.pop("pickler", None)
    assert pickle.loads(framed) == {"mine": 1}


def test_work_put_off_by_a_handler_runs_once_the_thread_has_left_every_link() -> None:
    """What the SIGTERM handler defers runs when the interrupted thread leaves its
    outermost link work, on that thread, with the thread no longer busy; another
    thread's depth is its own."""
    from aind_log_utils import _reentry

    ran: list[bool] = []
    _reentry.enter()
    _reentry.enter()  # two links' work, one inside the other
    other: list[bool] = []
    thread = threading.Thread(target=lambda: other.append(_reentry.busy()))
    thread.start()
    thread.join()
    assert _reentry.busy() and other == [False]
    _reentry.when_left(lambda: ran.append(_reentry.busy()))
    _reentry.leave()
    assert ran == [] and _reentry.busy()
    _reentry.leave()
    assert ran == [False] and not _reentry.busy()
    _reentry.enter()
    _reentry.leave()
    assert ran == [False]  # it ran once
