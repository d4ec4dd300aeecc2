"""The aind-log command line as a whole: help, errors, exit codes; helpers for the others.

Every command runs as a real subprocess (``python -m aind_log_utils.cli``) on real
files in tmp_path.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

CLI = [sys.executable, "-m", "aind_log_utils.cli"]
COMMANDS = ("view", "validate", "push", "summary", "runs", "grafana-dashboard")


def run_cli(
    *args: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60,
    stdin: bytes | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``aind-log ARGS`` and capture its text output (never on a terminal)."""
    full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "", "AIND_LOG_DEBUG": ""}
    full_env.update(env or {})
    return subprocess.run(
        [*CLI, *map(str, args)],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout_s,
    )


def stamp(offset_s: float = 0.0) -> str:
    """An AIND timestamp ``offset_s`` seconds from now."""
    when = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=offset_s)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record(message: str = "hello", level: str = "INFO", **fields: Any) -> dict[str, Any]:
    """A valid AIND record, now."""
    return {"timestamp": stamp(), "level": level, "message": message, "logger": "demo", **fields}


def write_jsonl(
    path: Path, records: Iterable[Mapping[str, Any] | bytes | str], *, gz: bool = False
) -> Path:
    """Write records (dicts as JSON; bytes/str as they are) one per line."""
    lines = []
    for item in records:
        if isinstance(item, Mapping):
            lines.append(orjson.dumps(item) + b"\n")
        elif isinstance(item, str):
            lines.append(item.encode() + b"\n")
        else:
            lines.append(item + b"\n")
    data = b"".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The command failed with ``code`` and one line on stderr, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("aind-log")
    return lines[0]


def parse_json(text: str) -> Any:
    return orjson.loads(text)


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- the command line as a whole ---------------------------------------------------


def test_every_command_has_help_with_examples_and_exit_codes() -> None:
    top = run_cli("--help")
    assert top.returncode == 0
    for command in COMMANDS:
        assert command in top.stdout
        helped = run_cli(command, "--help")
        assert helped.returncode == 0, helped.stderr
        assert "Examples:" in helped.stdout
        assert f"aind-log {command}" in helped.stdout  # the examples are real invocations
        assert "Exit codes:" in helped.stdout


def test_version_is_the_package_version() -> None:
    from aind_log_utils import __version__

    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"aind-log {__version__}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["view", "--bogus", "x"], "--bogus"),
        (["frobnicate"], "frobnicate"),
        (["summary", "--limit", "0", "x"], "--limit"),
        (["runs"], "BASE_DIR"),
    ],
)
def test_a_bad_flag_is_one_line_and_exit_2(args: list[str], expected: str) -> None:
    line = assert_one_line_error(run_cli(*args))
    assert expected in line
    assert "--help" in line  # tells where to look


@pytest.mark.parametrize("command", ["view", "validate", "summary", "push"])
def test_a_missing_file_is_one_line_and_exit_2(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    extra = ["--loki-url", "http://127.0.0.1:9"] if command == "push" else []
    line = assert_one_line_error(run_cli(command, missing, *extra))
    assert str(missing) in line


def test_a_directory_without_logs_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    line = assert_one_line_error(run_cli("view", tmp_path))
    assert "no log file" in line


def test_no_command_shows_the_help_and_exits_2() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "Commands:" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreadable_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = write_jsonl(tmp_path / "secret.jsonl", [record()])
    path.chmod(0)
    line = assert_one_line_error(run_cli("view", path))
    assert "cannot read" in line


def test_the_cli_libraries_load_only_when_the_cli_runs() -> None:
    code = (
        "import sys, aind_log_utils, aind_log_utils._grafana as g;"
        "g.build_dashboard();"
        "print(sorted(m for m in ('click', 'rich') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_console_script_is_declared() -> None:
    from importlib.metadata import entry_points

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("aind-log") == "aind_log_utils.cli:main"


def test_output_closed_early_stops_quietly(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "big.jsonl", [record(f"line {i}") for i in range(50_000)])
    proc = subprocess.Popen(
        [*CLI, "view", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 0
    assert b"line 0" in first
    assert b"Traceback" not in err and b"Exception ignored" not in err
