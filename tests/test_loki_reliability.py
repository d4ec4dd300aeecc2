"""Loki reliability with real subprocesses: every way a program ends, SIGKILL, fork, outages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import psutil
import pytest

from aind_log_utils._delivery._link import PACK_EVERY, WRITE_AT_BYTES
from aind_log_utils.testing import LokiReceiver, read_jsonl

PROGRAM = """
import logging, os, sys, time
from aind_log_utils import setup_logging
url, log_path, spool, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
session = setup_logging("reliability", console=False, log_file=log_path, loki_url=url,
                        loki_options={{"spool_dir": spool, "batch_wait_s": 0.05, "retry_start_s": 0.05,
                                      "retry_max_s": 0.5, "timeout_s": 2.0}})
log = logging.getLogger("prog")
{before}
for i in range(n):
    log.info("line %d", i)
{ending}
"""


def start(receiver: LokiReceiver, tmp_path: Path, ending: str, n: int = 2000, name: str = "prog",
          url: str | None = None, before: str = "") -> tuple[subprocess.Popen[bytes], Path]:  # fmt: skip
    script = tmp_path / f"{name}.py"
    script.write_text(PROGRAM.format(ending=textwrap.dedent(ending), before=before))
    log_path = tmp_path / f"{name}.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(script), url or receiver.url, str(log_path), str(tmp_path / "spool"), str(n)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    return proc, log_path


def messages_in_loki(receiver: LokiReceiver) -> Counter[str]:
    return Counter(orjson.loads(line)["message"] for line in receiver.lines())


def assert_loki_has_the_file(receiver: LokiReceiver, log_path: Path) -> None:
    file_messages = Counter(r["message"] for r in read_jsonl(log_path))
    assert receiver.wait_for(sum(file_messages.values()), 20)
    assert messages_in_loki(receiver) == file_messages  # every line, exactly once
    assert receiver.dropped["duplicate"] == 0  # and none sent twice (Loki would hide it)


@pytest.mark.parametrize(
    ("ending", "code"),
    [("", 0), ("sys.exit(4)", 4), ("raise RuntimeError('boom')", 1)],
    ids=["normal-exit", "sys-exit", "uncaught-exception"],
)
def test_nothing_lost_at_exit(
    receiver: LokiReceiver, tmp_path: Path, ending: str, code: int
) -> None:
    proc, log_path = start(receiver, tmp_path, ending)
    assert proc.wait(timeout=60) == code
    assert_loki_has_the_file(receiver, log_path)
    assert messages_in_loki(receiver)["Stopping"] == 1


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_nothing_lost_on_sigterm(receiver: LokiReceiver, tmp_path: Path) -> None:
    proc, log_path = start(
        receiver, tmp_path, "print('ready', flush=True)\nwhile True: time.sleep(0.05)"
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM
    assert_loki_has_the_file(receiver, log_path)
    assert messages_in_loki(receiver)["Stopping"] == 1


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_while_the_caller_frames_a_batch_waits_for_it_and_loses_nothing(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    """The session's SIGTERM handler logs and closes on the thread it interrupted. If
    that thread was framing a batch (the link's lock held, its buffer half changed),
    the handler can neither wait for the lock (its own thread holds it) nor touch the
    buffer: it runs once the framing is done, on the same thread. The process ends by
    the signal (not by the watchdog), and Loki gets every line: the one being framed
    and the stop line too."""
    ending = """
    import signal
    session.flush(10)
    link = next(s for s in session.sinks if s.name == "loki").engine
    framing = link._pack_pending
    def interrupted():  # SIGTERM lands while the caller frames a batch, the lock held
        link._pack_pending = framing  # (once: a second SIGTERM during the stop kills)
        os.kill(os.getpid(), signal.SIGTERM)
        print("framing goes on", flush=True)  # the handler put its work off
        framing()
    link._pack_pending = interrupted
    log.info("handed over, not yet framed")
    link.pack_pending()
    print("not reached", flush=True)
    """
    proc, log_path = start(receiver, tmp_path, ending, n=100)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM  # the signal; the watchdog exits with 143
    assert out.decode().splitlines() == ["framing goes on"]
    written = [r["message"] for r in read_jsonl(log_path)]
    assert written[-2:] == ["handed over, not yet framed", "Stopping"]
    assert_loki_has_the_file(receiver, log_path)


def test_lines_spooled_during_an_outage_are_replayed_by_the_next_start(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    receiver.go_away()
    proc, log_path = start(receiver, tmp_path, "", n=3000, name="first")
    assert proc.wait(timeout=60) == 0  # exit is not held by the absent server
    assert receiver.requests == 0
    receiver.come_back()
    proc2, log2 = start(receiver, tmp_path, "", n=10, name="second")
    assert proc2.wait(timeout=60) == 0
    expected = Counter(r["message"] for r in read_jsonl(log_path)) + Counter(
        r["message"] for r in read_jsonl(log2)
    )
    assert receiver.wait_for(sum(expected.values()), 30)
    assert messages_in_loki(receiver) == expected
    assert not list((tmp_path / "spool").glob("*.spool"))  # replayed files are deleted


def senders_of(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The sender processes a program started (its children running the host module)."""
    return [
        child
        for child in psutil.Process(proc.pid).children()
        if "aind_log_utils._delivery._host" in " ".join(child.cmdline())
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
@pytest.mark.parametrize("server", ["away", "up"])
def test_sigkill_loses_at_most_the_unwritten_buffer(
    receiver: LokiReceiver, tmp_path: Path, server: str
) -> None:
    """SIGKILL takes only the newest records: the caller's unwritten buffer (< 64 KiB)
    and those not yet framed into it (< PACK_EVERY). The sender process reads what
    reached its pipe, delivers it (server up) or spools it (server away) for the
    next start, and exits."""
    if server == "away":
        receiver.go_away()
    # The flush before the burst waits for the sender to be up (and the spool
    # claimed): a burst into a sender still starting fills the pipe, and what
    # then waits in the caller's buffer would be lost too.
    proc, log_path = start(
        receiver,
        tmp_path,
        "print('logged', flush=True)\ntime.sleep(60)",
        n=5000,
        name="killed",
        before="session.flush(10)",
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"logged"
    senders = senders_of(proc)
    assert len(senders) == 1
    proc.kill()
    proc.wait(timeout=30)
    _, alive = psutil.wait_procs(senders, timeout=30)  # it ends once its input does
    assert not alive
    receiver.come_back()
    proc2, _ = start(receiver, tmp_path, "", n=0, name="next")
    assert proc2.wait(timeout=60) == 0
    written = [r["message"] for r in read_jsonl(log_path) if r["message"].startswith("line ")]
    assert len(written) == 5000

    def arrived_lines() -> Counter[str]:
        return Counter(m for m in messages_in_loki(receiver).elements() if m.startswith("line "))

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sum(arrived_lines().values()) < len(written):
        time.sleep(0.05)  # polling the receiver with a deadline
    arrived = arrived_lines()
    lost = [m for m in written if m not in arrived]
    print(f"SIGKILL, server {server}: 5000 lines written, {len(arrived)} arrived, {len(lost)} lost")
    assert max(arrived.values(), default=1) == 1  # none twice
    # What is lost is a tail of what was written, and no more than one buffer of it.
    assert lost == written[len(written) - len(lost) :]
    # The newest up to PACK_EVERY - 1 may never have been framed; the rest were
    # in the unwritten buffer.
    lines = {r["message"]: r for r in read_jsonl(log_path)}
    buffered = lost[: max(0, len(lost) - (PACK_EVERY - 1))]
    lost_bytes = sum(len(orjson.dumps(lines[m])) + 13 for m in buffered)
    assert lost_bytes <= WRITE_AT_BYTES + 1024


def test_forked_child_lines_arrive_and_parent_lines_are_not_duplicated(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    ending = """
    receiver_stalled = os.environ.get("STALL")
    pid = os.fork()
    if pid == 0:
        from aind_log_utils import log_context
        for i in range(300):
            if i % 3 == 0:
                log.info("child %d", i)  # the parent's labels and metadata
            elif i % 3 == 1:
                log.warning("child %d", i)  # a frame the parent never defined
            else:
                with log_context(subject_id=f"child-subject-{i % 2}"):
                    log.info("child %d", i)
        session.close()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    for i in range(300):
        log.info("parent-after %d", i)
    """
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    proc, log_path = start(receiver, tmp_path, ending, n=300)
    assert proc.wait(timeout=60) == 0
    records = read_jsonl(log_path)
    expected = Counter(r["message"] for r in records)
    assert receiver.wait_for(sum(expected.values()), 20)
    arrived = messages_in_loki(receiver)
    assert arrived == expected
    assert all(arrived[f"child {i}"] == 1 for i in range(300))
    assert all(arrived[f"line {i}"] == 1 for i in range(300))
    # Nothing was sent twice either (the receiver, as Loki, drops exact duplicates:
    # the child resending the parent's last records would show only here).
    assert receiver.dropped["duplicate"] == 0
    # Each entry's labels and metadata are its own line's, in the child too (its
    # sender knows none of the parent's frame ids).
    for entry in receiver.entries():
        line = orjson.loads(entry.line)
        assert entry.labels["level"] == line["level"], line["message"]
        assert (entry.metadata or {}).get("subject_id") == line.get("subject_id"), line["message"]
    subjects = {orjson.loads(e.line).get("subject_id") for e in receiver.entries()}
    assert {"child-subject-0", "child-subject-1"} <= subjects


def test_fifty_thousand_lines_across_a_ten_second_outage(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    script = tmp_path / "steady.py"
    script.write_text(
        textwrap.dedent("""
        import logging, sys, time
        from aind_log_utils import setup_logging
        url, log_path, spool = sys.argv[1:4]
        s = setup_logging("steady", console=False, log_file=log_path, send_start_log=False, loki_url=url,
                          loki_options={"spool_dir": spool, "batch_wait_s": 0.1, "retry_start_s": 0.1,
                                        "retry_max_s": 1.0, "timeout_s": 2.0})
        log = logging.getLogger("steady")
        start = time.monotonic()
        for i in range(50_000):
            log.info("n %d", i)
            # 50,000 lines over ~20 s, so the 10 s outage falls in the middle.
            ahead = i / 2500 - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
            if i == 12_500:
                print("quarter", flush=True)
        s.close(timeout_s=60)
    """)
    )
    proc = subprocess.Popen([sys.executable, str(script), receiver.url, str(tmp_path / "s.jsonl"), str(tmp_path / "sp")],
                            stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"quarter"
    receiver.go_away()
    outage_ends = threading.Event()

    def end_outage() -> None:
        receiver.come_back()
        outage_ends.set()

    timer = threading.Timer(10.0, end_outage)
    timer.start()
    assert proc.wait(timeout=180) == 0
    assert outage_ends.wait(30)
    assert receiver.wait_for(50_000, 60)
    arrived = messages_in_loki(receiver)
    assert len(arrived) == 50_000 and max(arrived.values()) == 1
