"""The README's example capsule, run as a newcomer would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from aind_log_utils.testing import read_jsonl

ROOT = Path(__file__).resolve().parent.parent


def test_example_capsule_runs_and_writes_standard_lines_without_its_secret(tmp_path: Path) -> None:
    out = tmp_path / "capsule.jsonl"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "capsule.py"), str(out)],
        capture_output=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    records = read_jsonl(out)
    printed = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert printed == records  # the console printed the same JSON lines (stdout is a pipe)
    messages = [r["message"] for r in records]
    assert messages[0] == "Starting" and messages[-1] == "Stopping"
    for record in records:
        assert {"timestamp", "level", "message"} <= record.keys()
        assert record["subject_id"] == "123456"
        assert record["acquisition_name"] == "123456_2026-01-01_23-00-00"
    failure = next(r for r in records if r["message"] == "sorting failed")
    assert failure["error_type"] == "ValueError" and failure["stage"] == "sorting"
    assert failure["probe"] == "ProbeB"
    assert records[-1]["units_total"] == 599
    raw = out.read_bytes() + proc.stdout + proc.stderr
    assert b"pa55-w0rd-never-logged" not in raw
