"""Real subprocesses: the stop line and the flush survive every way a program ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aind_log_utils.testing import read_jsonl

PRELUDE = """
import logging, os, sys, time
from aind_log_utils import setup_logging
session = setup_logging("lifecycle", console=False, log_file=sys.argv[1])
log = logging.getLogger("prog")
log.info("working")
"""


def run(tmp_path: Path, body: str, *, wait: bool = True) -> tuple[subprocess.Popen[bytes], Path]:
    script = tmp_path / "prog.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    out = tmp_path / "log.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    if wait:
        proc.wait(timeout=60)
    return proc, out


def test_normal_exit_writes_stop_line(tmp_path: Path) -> None:
    proc, out = run(tmp_path, "")
    assert proc.returncode == 0
    records = read_jsonl(out)
    assert [r["message"] for r in records] == ["Starting", "working", "Stopping"]
    assert records[-1]["status"] == "success" and records[-1]["records"] == {"INFO": 2}


def test_sys_exit_writes_stop_line(tmp_path: Path) -> None:
    proc, out = run(tmp_path, "sys.exit(3)")
    assert proc.returncode == 3
    assert read_jsonl(out)[-1]["message"] == "Stopping"


def test_uncaught_exception_is_logged_and_marks_failure(tmp_path: Path) -> None:
    proc, out = run(tmp_path, "raise RuntimeError('kaput')")
    assert proc.returncode == 1
    records = read_jsonl(out)
    crash = [r for r in records if r["message"] == "Uncaught exception"]
    assert crash and crash[0]["error_type"] == "RuntimeError" and crash[0]["level"] == "CRITICAL"
    stop = records[-1]
    assert stop["message"] == "Stopping" and stop["status"] == "fail"
    assert stop["error_type"] == "RuntimeError" and "kaput" in stop["failure_reason"]
    assert proc.stderr is not None
    assert b"kaput" in proc.stderr.read()  # the previous excepthook still ran


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_flushes_and_writes_stop_line_then_dies_by_sigterm(tmp_path: Path) -> None:
    proc, out = run(
        tmp_path,
        """
        log.info("ready")
        while True:
            time.sleep(0.05)
        """,
        wait=False,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if out.exists() and b'"ready"' in out.read_bytes():
            break
        time.sleep(0.02)  # polling the file with a deadline
    else:
        proc.kill()
        pytest.fail("the program never logged 'ready'")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    stop = read_jsonl(out)[-1]
    assert stop["message"] == "Stopping" and stop["status"] == "fail"
    assert "SIGTERM" in stop["failure_reason"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_program_with_its_own_sigterm_handler_is_left_alone(tmp_path: Path) -> None:
    script = tmp_path / "own.py"
    script.write_text(
        textwrap.dedent("""
        import logging, signal, sys
        signal.signal(signal.SIGTERM, lambda *a: None)
        from aind_log_utils import setup_logging
        setup_logging("own", console=False, log_file=sys.argv[1])
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        print(signal.getsignal(signal.SIGTERM).__name__)
    """)
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "o.jsonl")], capture_output=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.strip() == b"<lambda>"


def test_handle_sigterm_false_opts_out(tmp_path: Path) -> None:
    script = tmp_path / "opt.py"
    script.write_text(
        textwrap.dedent("""
        import signal, sys
        from aind_log_utils import setup_logging
        setup_logging("opt", console=False, log_file=sys.argv[1], handle_sigterm=False)
        print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    """)
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "o.jsonl")], capture_output=True, timeout=60
    )
    assert proc.stdout.strip() == b"True"


def test_no_network_call_and_light_import() -> None:
    code = (
        "import sys, aind_log_utils; "
        "heavy = [m for m in ('pydantic', 'requests', 'boto3', 'urllib3', 'yaml', 'rich', 'click') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, env={**os.environ}
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == b""
