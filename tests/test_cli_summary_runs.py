"""``aind-log summary`` and ``aind-log runs``: canonical lines, levels, errors, run status."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson

from test_cli_common import assert_one_line_error, record, run_cli, write_jsonl

RUN_SCRIPT = textwrap.dedent(
    """
    import logging, os, signal, sys
    from aind_log_utils import RunDirectory
    base, run_id, mode = sys.argv[1:4]
    run = RunDirectory(run_id, base_dir=base)
    logging.getLogger("work").warning("halfway")
    if mode == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "fail":
        run.mark_failed("no frames in the input")
    else:
        run.mark_complete()
    """
)


def _make_run(base: Path, run_id: str, mode: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", RUN_SCRIPT, str(base), run_id, mode], capture_output=True, timeout=60
    )
    assert proc.returncode == (-signal.SIGKILL if mode == "crash" else 0), proc.stderr


def test_summary_of_a_file_counts_levels_and_lists_canonical_lines_and_errors(
    tmp_path: Path,
) -> None:
    path = write_jsonl(
        tmp_path / "capsule.jsonl",
        [
            record("Starting", event_type="stage_start"),
            record("debugging", "DEBUG"),
            record("Session recorded", status="success", event_type="stage_complete",
                   duration_s=1.5, wt_g=23.9),
            record("Failed to save session", "ERROR", status="fail", event_type="stage_failure",
                   error_type="TimeoutError", duration_s=30.0),
            record("disk nearly full", "WARNING"),
            "not json",
            record("crashed hard", "CRITICAL", error_type="MemoryError"),
            record("Stopping", status="fail", event_type="stage_failure", duration_s=40.0),
        ],
    )  # fmt: skip
    result = run_cli("summary", "--json", path)
    assert result.returncode == 0, result.stderr
    data = orjson.loads(result.stdout)
    assert data["records"] == 7 and data["not_json"] == 1 and data["lines"] == 8
    assert data["levels"] == {"DEBUG": 1, "INFO": 3, "WARNING": 1, "ERROR": 1, "CRITICAL": 1}
    assert [c["message"] for c in data["canonical"]] == [
        "Session recorded", "Failed to save session", "Stopping",
    ]  # fmt: skip
    assert [e["message"] for e in data["errors"]] == ["Failed to save session", "crashed hard"]
    assert data["errors_total"] == 2

    table = run_cli("summary", path)
    assert table.returncode == 0
    text = table.stdout
    assert "Canonical lines (3)" in text and "Errors (2)" in text
    assert "Session recorded" in text and "wt_g=23.9" in text and "1.5s" in text
    assert "1 line(s) not JSON" in text
    assert "Traceback" not in table.stderr


def test_summary_limit_keeps_the_latest_canonical_lines_and_the_first_errors(
    tmp_path: Path,
) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [record(f"unit {i}", event_type="stage_complete", status="success") for i in range(10)]
        + [record(f"error {i}", "ERROR") for i in range(10)],
    )
    data = orjson.loads(run_cli("summary", "--json", "--limit", "3", path).stdout)
    assert [c["message"] for c in data["canonical"]] == ["unit 7", "unit 8", "unit 9"]
    assert [e["message"] for e in data["errors"]] == ["error 0", "error 1", "error 2"]
    assert data["canonical_total"] == 10 and data["errors_total"] == 10


def test_summary_of_run_directories_includes_their_status(tmp_path: Path) -> None:
    _make_run(tmp_path, "good", "ok")
    _make_run(tmp_path, "bad", "fail")
    _make_run(tmp_path, "dead", "crash")

    failed = orjson.loads(run_cli("summary", "--json", tmp_path / "log_bad").stdout)
    assert failed["runs"][0]["status"] == "failed"
    assert failed["runs"][0]["failure_reason"] == "no frames in the input"
    assert [c["status"] for c in failed["canonical"]] == ["fail"]
    assert failed["levels"].get("WARNING") == 1

    crashed = run_cli("summary", tmp_path / "log_dead")
    assert crashed.returncode == 0
    assert "Run dead: crashed" in crashed.stdout
    assert "Canonical lines (0)" in crashed.stdout  # it never wrote its end


def test_summary_of_a_truncated_gzip_says_so_and_exits_1(tmp_path: Path) -> None:
    whole = write_jsonl(tmp_path / "a.jsonl.gz", [record(f"r{i}") for i in range(3000)], gz=True)
    whole.write_bytes(whole.read_bytes()[:-200])
    result = run_cli("summary", "--json", whole)
    assert result.returncode == 1
    data = orjson.loads(result.stdout)
    assert 0 < data["records"] < 3000
    assert data["damaged"] and "gzip data damaged" in data["damaged"][0]


def test_runs_lists_complete_failed_and_crashed_runs(tmp_path: Path) -> None:
    _make_run(tmp_path, "good", "ok")
    _make_run(tmp_path, "bad", "fail")
    _make_run(tmp_path, "dead", "crash")
    result = run_cli("runs", "--json", tmp_path)
    assert result.returncode == 0
    runs = {r["run_id"]: r for r in orjson.loads(result.stdout)}
    assert {k: r["status"] for k, r in runs.items()} == {
        "good": "complete", "bad": "failed", "dead": "crashed",
    }  # fmt: skip
    assert runs["bad"]["failure_reason"] == "no frames in the input"
    assert isinstance(runs["good"]["runtime_sec"], float)
    assert runs["dead"]["runtime_sec"] is None
    assert all(r["start_time"] for r in runs.values())

    table = run_cli("runs", tmp_path)
    assert table.returncode == 0
    for needle in ("run_id", "status", "start", "runtime", "failure reason", "crashed",
                   "no frames in the input", f"Runs in {tmp_path} (3)"):  # fmt: skip
        assert needle in table.stdout

    only = orjson.loads(run_cli("runs", "--json", "--status", "crashed", tmp_path).stdout)
    assert [r["run_id"] for r in only] == ["dead"]


def test_runs_recursive_finds_runs_in_sub_folders(tmp_path: Path) -> None:
    _make_run(tmp_path / "exp" / "runs", "deep", "ok")
    assert orjson.loads(run_cli("runs", "--json", tmp_path).stdout) == []
    found = orjson.loads(run_cli("runs", "--json", "--recursive", tmp_path).stdout)
    assert [r["run_id"] for r in found] == ["deep"]


def test_runs_of_a_missing_directory_or_bad_status_is_a_usage_error(tmp_path: Path) -> None:
    assert "does not exist" in assert_one_line_error(run_cli("runs", tmp_path / "nope"))
    assert "--status" in assert_one_line_error(run_cli("runs", tmp_path, "--status", "weird"))
