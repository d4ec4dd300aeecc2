"""``aind-log push``: backfill files into Loki (the in-repo receiver), and replay the spool.

Each push runs as a subprocess against a protocol-faithful Loki on loopback; 429s
and outages are injected while it runs, synchronised on what the receiver saw or
what the command said, never on sleeps.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from aind_log_utils.testing import LokiReceiver
from test_cli_common import CLI, assert_one_line_error, record, run_cli, stamp, write_jsonl


@pytest.fixture
def cache_env(tmp_path: Path) -> dict[str, str]:
    """Keep every spool of these tests inside tmp_path."""
    cache = tmp_path / "cache"
    cache.mkdir()
    return {"XDG_CACHE_HOME": str(cache)}


@pytest.fixture
def loki() -> Iterator[LokiReceiver]:
    with LokiReceiver() as receiver:
        yield receiver


def _records(n: int, **fields: str) -> list[dict[str, object]]:
    # distinct, increasing timestamps within Loki's accepted window
    return [
        {
            **record(f"record {i}", subject_id="123456", **fields),
            "timestamp": stamp(-600 + i * 1e-3),
        }
        for i in range(n)
    ]


def _messages(loki: LokiReceiver) -> list[str]:
    return sorted(orjson.loads(entry.line)["message"] for entry in loki.entries())


def test_a_file_written_live_is_pushed_as_the_live_sink_sent_it(
    tmp_path: Path, loki: LokiReceiver, cache_env: dict[str, str]
) -> None:
    log_file = tmp_path / "capsule.jsonl"
    script = textwrap.dedent(
        f"""
        import logging
        from aind_log_utils import canonical, setup_logging
        s = setup_logging("capsule", subject_id="123456", rig_id="frg_1_a",
                          log_file={str(log_file)!r}, console=False,
                          loki_url={loki.url!r}, loki_labels={{"team": "ephys"}})
        log = logging.getLogger("work")
        for i in range(50):
            log.info("step %d", i, extra={{"step": i}})
        log.warning("careful")
        with canonical("Session recorded", wt_g=23.9):
            pass
        s.close()
        """
    )
    subprocess.run(
        [sys.executable, "-c", script], check=True, timeout=60, env={**os.environ, **cache_env}
    )
    lines = log_file.read_bytes().splitlines()
    assert loki.wait_for(len(lines), timeout_s=10)
    live = sorted(
        (e.labels.items(), e.ts_ns, e.line, sorted((e.metadata or {}).items()))
        for e in loki.entries()
    )
    assert len(live) == len(lines)

    result = run_cli(
        "push", log_file, "--loki-url", loki.url, "--label", "team=ephys", env=cache_env
    )
    assert result.returncode == 0, result.stderr
    assert f"{len(lines)} of {len(lines)} record(s) delivered" in result.stdout
    # Every entry was identical to one the live sink sent: Loki kept none twice.
    assert loki.dropped["duplicate"] == len(lines)
    assert (
        sorted(
            (e.labels.items(), e.ts_ns, e.line, sorted((e.metadata or {}).items()))
            for e in loki.entries()
        )
        == live
    )
    one = next(e for e in loki.entries() if orjson.loads(e.line)["message"] == "careful")
    assert one.labels == {"service_name": "capsule", "level": "WARNING", "hostname": one.labels["hostname"],
                          "rig_id": "frg_1_a", "team": "ephys"}  # fmt: skip
    assert one.metadata is not None and one.metadata["subject_id"] == "123456"


def test_pushing_the_same_file_twice_stores_nothing_twice(
    tmp_path: Path, loki: LokiReceiver, cache_env: dict[str, str]
) -> None:
    path = write_jsonl(tmp_path / "rig.jsonl", _records(300))
    for attempt in range(2):
        result = run_cli("push", path, "--loki-url", loki.url + "/loki/api/v1/push", env=cache_env)
        assert result.returncode == 0, result.stderr
        assert "300 of 300 record(s) delivered" in result.stdout
        assert len(loki.entries()) == 300, attempt
    assert loki.dropped["duplicate"] == 300
    # no process_name or software_name: the service is named after the file, as setup names it
    assert {e.labels["service_name"] for e in loki.entries()} == {"rig"}


def test_gzip_bad_lines_and_a_torn_last_line(
    tmp_path: Path, loki: LokiReceiver, cache_env: dict[str, str]
) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl.gz",
        [*_records(20), "garbage", {"level": "INFO", "message": "no time"}],
        gz=True,
    )
    torn = write_jsonl(tmp_path / "b.jsonl", _records(5, process_name="other"))
    with torn.open("ab") as handle:
        handle.write(b'{"timestamp": "20')
    result = run_cli(
        "push", path, torn, "--loki-url", loki.url, "--service-name", "svc", env=cache_env
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == (
        f"{path}: 20 of 20 record(s) delivered to Loki; 1 line(s) not JSON skipped; "
        "1 record(s) without a readable timestamp skipped"
    )
    assert out[1] == f"{torn}: 5 of 5 record(s) delivered to Loki; 1 line(s) not JSON skipped"
    assert len(loki.entries()) == 25
    assert {e.labels["service_name"] for e in loki.entries()} == {"svc", "other"}


def test_a_429_in_the_middle_is_retried_and_nothing_is_lost(
    tmp_path: Path, cache_env: dict[str, str]
) -> None:
    path = write_jsonl(tmp_path / "big.jsonl", _records(5000))
    with LokiReceiver(slow_s=0.3) as loki:
        loki.set_mode("slow")  # each push takes 0.3 s: there is a middle to hit
        proc = subprocess.Popen(
            [*CLI, "push", str(path), "--loki-url", loki.url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **cache_env},
        )  # fmt: skip
        try:
            assert loki.wait_for(1000, timeout_s=20)  # the first chunk is in
            loki.fail_next(2, 429, retry_after=0.2)
            loki.set_mode("ok")
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err
        assert loki.status_counts[429] == 2
        assert "5,000 of 5,000 record(s) delivered" in out and "retried" in out
        assert _messages(loki) == sorted(f"record {i}" for i in range(5000))


def _stderr_lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in iter(proc.stderr.readline, ""):
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for_text(lines: queue.Queue[str], text: str, timeout_s: float) -> list[str]:
    deadline, seen = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            break
        if text in seen[-1]:
            return seen
    raise AssertionError(f"{text!r} not seen on stderr; saw {seen}")


def test_an_outage_is_waited_out(
    tmp_path: Path, loki: LokiReceiver, cache_env: dict[str, str]
) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", _records(2500))
    loki.go_away()  # connections refused, as a Loki being restarted
    proc = subprocess.Popen(
        [*CLI, "push", str(path), "--loki-url", loki.url, "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **cache_env},
    )  # fmt: skip
    try:
        _wait_for_text(_stderr_lines(proc), "Loki is not taking records", timeout_s=20)
        loki.come_back()
        assert proc.wait(timeout=60) == 0
        assert proc.stdout is not None
        assert "2,500 of 2,500 record(s) delivered" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _messages(loki) == sorted(f"record {i}" for i in range(2500))


def test_a_push_gives_up_when_loki_takes_nothing_for_the_timeout(
    tmp_path: Path, loki: LokiReceiver, cache_env: dict[str, str]
) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", _records(10))
    loki.go_away()
    result = run_cli("push", path, "--loki-url", loki.url, "--timeout", "1", env=cache_env)
    assert result.returncode == 1
    assert "0 of 10 record(s) delivered" in result.stdout
    assert "push the file again later (nothing is stored twice)" in result.stdout
    assert "Traceback" not in result.stderr
    assert not list(Path(cache_env["XDG_CACHE_HOME"]).rglob("*.spool"))  # the file is the copy


def test_records_loki_refuses_are_counted_and_exit_1(
    tmp_path: Path, loki: LokiReceiver, cache_env: dict[str, str]
) -> None:
    old = [{**r, "timestamp": stamp(-8 * 86400)} for r in _records(3)]
    path = write_jsonl(tmp_path / "a.jsonl", [*_records(2), *old])
    result = run_cli("push", path, "--loki-url", loki.url, env=cache_env)
    assert result.returncode == 1
    assert "2 of 5 record(s) delivered" in result.stdout
    assert "3 refused by Loki" in result.stdout
    assert len(loki.entries()) == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--loki-url", "ftp://loki"], "--loki-url"),
        (["--loki-url", "http://"], "--loki-url"),
        (["--loki-url", "http://loki:99999"], "port"),
        ([], "--loki-url is required"),
        (["--loki-url", "http://loki", "--label", "bad-name=x"], "label name"),
        (["--loki-url", "http://loki", "--label", "novalue"], "--label"),
        (["--loki-url", "http://loki", "--spool"], "--spool"),
    ],
)
def test_bad_urls_and_options_are_one_line_errors(
    tmp_path: Path, args: list[str], needle: str, cache_env: dict[str, str]
) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", _records(1))
    env = {**cache_env, "AIND_LOKI_URL": ""}
    assert needle in assert_one_line_error(run_cli("push", path, *args, env=env))


def test_push_spool_replays_what_a_program_could_not_send(
    tmp_path: Path, loki: LokiReceiver, cache_env: dict[str, str]
) -> None:
    loki.go_away()  # the program runs while Loki is down
    script = textwrap.dedent(
        f"""
        import logging
        from aind_log_utils import setup_logging
        s = setup_logging("capsule", console=False, log_file=False, loki_url={loki.url!r},
                          flush_timeout_s=0.5, send_start_log=False)
        for i in range(40):
            logging.getLogger("work").info("spooled %d", i)
        s.close()
        """
    )
    env = {**os.environ, **cache_env}
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, env=env)
    spooled = list(Path(cache_env["XDG_CACHE_HOME"]).rglob("*.spool"))
    assert spooled, "the program should have left its records in the spool"
    loki.come_back()

    result = run_cli("push", "--spool", "--loki-url", loki.url, env=cache_env)
    assert result.returncode == 0, result.stderr
    assert "40 of 40 spooled record(s) delivered" in result.stdout
    assert _messages(loki) == sorted(f"spooled {i}" for i in range(40))
    assert not [p for p in Path(cache_env["XDG_CACHE_HOME"]).rglob("*") if ".spool" in p.name]

    again = run_cli("push", "--spool", "--loki-url", loki.url, env=cache_env)
    assert again.returncode == 0
    assert "the spool is empty" in again.stdout
