"""``aind-log validate``: every line checked against the AIND standard."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from test_cli_common import assert_one_line_error, lines_of, record, run_cli, write_jsonl


def test_a_file_written_by_the_library_is_valid(tmp_path: Path) -> None:
    log_file = tmp_path / "capsule.jsonl"
    script = textwrap.dedent(
        f"""
        import logging
        from aind_log_utils import canonical, setup_logging
        setup_logging("capsule", asset_name="ecephys_123456_2026-01-01_23-00-00",
                      specimen_id="123456_001", log_file={str(log_file)!r}, console=False)
        log = logging.getLogger("work")
        log.info("rows %d", 3, extra={{"rows": 3}})
        with canonical("Session recorded", wt_g=23.9):
            pass
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    result = run_cli("validate", "--acquisition", log_file)
    assert result.returncode == 0, result.stdout
    assert result.stdout == ""
    assert result.stderr.startswith("valid: ")


# (record, the problem expected, exactly)
CASES: list[tuple[dict[str, Any], str]] = [
    ({"level": "INFO", "message": "m"}, "timestamp: missing (required)"),
    ({"timestamp": "2026-02-09T21:19:24.061270Z", "message": "m"}, "level: missing (required)"),
    ({"timestamp": "2026-02-09T21:19:24Z", "level": "INFO"}, "message: missing (required)"),
    (
        {"timestamp": "2026-02-09 21:19:24", "level": "INFO", "message": "m"},
        "timestamp: '2026-02-09 21:19:24' is not an ISO 8601 date and time "
        "(e.g. 2026-02-09T21:19:24.061270Z)",
    ),
    (
        {"timestamp": "2026-02-09T21:19:24.061", "level": "INFO", "message": "m"},
        "timestamp: '2026-02-09T21:19:24.061' has no time zone (UTC ends in Z)",
    ),
    (
        {"timestamp": "2026-02-09T21:19:24-08:00", "level": "INFO", "message": "m"},
        "timestamp: '2026-02-09T21:19:24-08:00' is not UTC (end it in Z)",
    ),
    (
        {"timestamp": "2026-02-30T21:19:24Z", "level": "INFO", "message": "m"},
        "timestamp: '2026-02-30T21:19:24Z' is not an ISO 8601 date and time "
        "(e.g. 2026-02-09T21:19:24.061270Z)",
    ),
    (
        {"timestamp": 1770671964.06, "level": "INFO", "message": "m"},
        "timestamp: expected an ISO 8601 UTC string, got number",
    ),
    (
        {"timestamp": "2026-02-09T21:19:24Z", "level": "info", "message": "m"},
        "level: 'info' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL (levels are upper case)",
    ),
    (
        {"timestamp": "2026-02-09T21:19:24Z", "level": 20, "message": "m"},
        "level: expected a level string, got integer 20",
    ),
    (
        {"timestamp": "2026-02-09T21:19:24Z", "level": "INFO", "message": ["m"]},
        "message: expected a string, got array",
    ),
    (
        {"timestamp": "2026-02-09T21:19:24Z", "level": "INFO", "message": "m", "lineno": "12"},
        "lineno: expected an integer, got string",
    ),
    (
        {"timestamp": "2026-02-09T21:19:24Z", "level": "INFO", "message": "m", "subject_id": 714392},
        "subject_id: expected a string, got integer",
    ),
    (
        {"timestamp": "2026-02-09T21:19:24Z", "level": "INFO", "message": "m",
         "acquisition_name": "123456_2026-01-01"},
        "acquisition_name: '123456_2026-01-01' is not of the form "
        "<subject_id>_<YYYY-MM-DD>_<HH-MM-SS>",
    ),
    (
        {"timestamp": "2026-02-09T21:19:24Z", "level": "INFO", "message": "m",
         "acquisition_name": "123456_2026-13-01_23-00-00"},
        "acquisition_name: '123456_2026-13-01_23-00-00' does not hold a real date and time",
    ),
    (
        {"timestamp": "2026-02-09T21:19:24Z", "level": "INFO", "message": "m",
         "acquisition_name": "123456_2026-01-01_23-00-00", "subject_id": "654321"},
        "subject_id: '654321' disagrees with acquisition_name '123456_2026-01-01_23-00-00'",
    ),
    (
        {"timestamp": "2026-02-09T21:19:24Z", "level": "INFO", "message": "m",
         "subject_id": "123456", "specimen_id": "999_001"},
        "specimen_id: '999_001' does not contain subject_id '123456'",
    ),
    (
        {"timestamp": "2026-02-09T21:19:24Z", "level": "INFO", "message": "m", "event_type": "done"},
        "event_type: 'done' is not one of stage_start, stage_complete, stage_failure",
    ),
]  # fmt: skip


def test_each_problem_is_reported_as_file_line_problem(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [record("fine")] + [case for case, _ in CASES])
    result = run_cli("validate", path)
    assert result.returncode == 1
    expected = [f"{path}:{i}: {problem}" for i, (_, problem) in enumerate(CASES, start=2)]
    assert lines_of(result.stdout) == expected
    assert result.stderr.strip() == (
        f"{len(CASES)} problem(s) in {len(CASES)} of {len(CASES) + 1} line(s) in 1 file(s)"
    )


def test_lines_that_are_not_records_are_problems(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [record(), "", "nope", "[1]", "42", record()])
    with path.open("ab") as handle:
        handle.write(b'{"timestamp": "2026')
    result = run_cli("validate", path)
    assert result.returncode == 1
    out = lines_of(result.stdout)
    assert out[0] == f"{path}:2: empty line (JSON Lines holds one record per line)"
    assert out[1].startswith(f"{path}:3: not JSON (")
    assert out[2] == f"{path}:4: not a JSON object (got an array)"
    assert out[3] == f"{path}:5: not a JSON object (got int)"
    assert out[4] == f"{path}:7: truncated last line (no newline, not JSON)"
    assert len(out) == 5


def test_acquisition_flag_requires_acquisition_name(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl", [record(acquisition_name="123456_2026-01-01_23-00-00"), record()]
    )
    assert run_cli("validate", path).returncode == 0
    result = run_cli("validate", "--acquisition", path)
    assert result.returncode == 1
    assert lines_of(result.stdout) == [
        f"{path}:2: acquisition_name: missing (required with --acquisition)"
    ]


def test_json_report_for_machines(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [record(), record()])
    bad = write_jsonl(tmp_path / "bad.jsonl.gz", [record(), {"level": "LOUD"}], gz=True)
    result = run_cli("validate", "--json", good, bad)
    assert result.returncode == 1
    report = orjson.loads(result.stdout)
    assert report["valid"] is False
    assert report["lines"] == 4
    assert report["files"] == [
        {"file": str(good), "lines": 2, "valid_lines": 2, "problems": 0},
        {"file": str(bad), "lines": 2, "valid_lines": 1, "problems": 3},
    ]
    assert {(p["file"], p["line"], p["field"]) for p in report["problems"]} == {
        (str(bad), 2, "timestamp"),
        (str(bad), 2, "message"),
        (str(bad), 2, "level"),
    }
    clean = orjson.loads(run_cli("validate", "--json", good).stdout)
    assert clean["valid"] is True and clean["problems"] == []


def test_a_truncated_gzip_is_a_problem(tmp_path: Path) -> None:
    whole = write_jsonl(tmp_path / "a.jsonl.gz", [record(f"r{i}") for i in range(3000)], gz=True)
    data = whole.read_bytes()
    whole.write_bytes(data[: len(data) // 2])
    result = run_cli("validate", whole)
    assert result.returncode == 1
    out = lines_of(result.stdout)
    assert len(out) == 1
    assert out[0].startswith(f"{whole}: gzip data damaged after line ")


def test_a_huge_file_reports_exactly_its_one_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    line = orjson.dumps(record("steady", subject_id="1", rig_id="frg_1_a")) + b"\n"
    with path.open("wb") as handle:
        handle.write(line * 60_000)
        handle.write(b'{"level": "INFO", "message": "no time"}\n')
        handle.write(line * 60_000)
    result = run_cli("validate", path)
    assert result.returncode == 1
    assert lines_of(result.stdout) == [f"{path}:60001: timestamp: missing (required)"]


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    line = assert_one_line_error(run_cli("validate", tmp_path / "none.jsonl"))
    assert "no such file" in line


@pytest.mark.parametrize("timestamp", ["2026-02-09T21:19:24Z", "2026-02-09T21:19:24.061270+00:00"])
def test_utc_timestamps_in_either_spelling_are_valid(tmp_path: Path, timestamp: str) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{**record(), "timestamp": timestamp}])
    assert run_cli("validate", path).returncode == 0
