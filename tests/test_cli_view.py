"""``aind-log view``: readable lines from good, bad, gzip, huge and growing files."""

from __future__ import annotations

import gzip
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import orjson

from test_cli_common import CLI, lines_of, record, run_cli, stamp, write_jsonl

ANSI = "\x1b["


def test_records_are_readable_plain_lines_when_piped(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [record("first", subject_id="1"), record("second", "WARNING", rows=3)],
    )
    result = run_cli("view", path)
    assert result.returncode == 0
    out = lines_of(result.stdout)
    assert len(out) == 2
    assert "INFO" in out[0] and "demo: first" in out[0] and "subject_id=1" in out[0]
    assert "WARNING" in out[1] and "rows=3" in out[1]
    assert ANSI not in result.stdout  # piped: no colour


def test_colour_can_be_forced_and_no_color_wins_otherwise(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [record("x", "ERROR")])
    assert ANSI in run_cli("view", "--color", path).stdout
    assert ANSI not in run_cli("view", path, env={"NO_COLOR": "1"}).stdout


def test_a_bad_line_is_shown_marked_and_viewing_goes_on(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [record("before"), "this is not json \x1b[31m", "[1, 2]", record("after")],
    )
    with path.open("ab") as handle:
        handle.write(b'{"timestamp": "2026-')  # a torn last line, no newline
    result = run_cli("view", path)
    assert result.returncode == 0
    out = lines_of(result.stdout)
    assert "before" in out[0]
    assert out[1] == f"!! not JSON ({path}:2): this is not json \\x1b[31m"  # escaped
    assert out[2] == f"!! not JSON ({path}:3): [1, 2]"
    assert "after" in out[3]
    assert out[4] == f'!! truncated line ({path}:5): {{"timestamp": "2026-'


def test_level_where_and_since_filter_records(tmp_path: Path) -> None:
    old = {**record("old error", "ERROR", subject_id="7"), "timestamp": stamp(-7200)}
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [
            old,
            record("debug", "DEBUG", subject_id="7"),
            record("info", subject_id="8"),
            record("warn", "WARNING", subject_id="7", records={"ERROR": 2}),
            record("crit", "CRITICAL", subject_id="8"),
        ],
    )

    def messages(*args: str) -> list[str]:
        result = run_cli("view", "--json", path, *args)
        assert result.returncode == 0, result.stderr
        return [orjson.loads(line)["message"] for line in lines_of(result.stdout)]

    assert messages("--level", "warning") == ["old error", "warn", "crit"]
    assert messages("--where", "subject_id=7") == ["old error", "debug", "warn"]
    assert messages("--where", "subject_id=7", "--level", "INFO") == ["old error", "warn"]
    assert messages("--where", "records.ERROR=2") == ["warn"]
    assert messages("--since", "1h") == ["debug", "info", "warn", "crit"]
    assert messages("--since", stamp(-3 * 3600)[:10]) == [
        "old error",
        "debug",
        "info",
        "warn",
        "crit",
    ]


def test_json_output_keeps_lines_as_they_are_and_marks_bad_ones_on_stderr(tmp_path: Path) -> None:
    good = orjson.dumps(record("kept"))
    path = write_jsonl(tmp_path / "a.jsonl", [good, "oops"])
    result = run_cli("view", "--json", path)
    assert result.returncode == 0
    assert result.stdout.encode() == good + b"\n"
    assert "!! not JSON" in result.stderr


def test_bad_filter_values_are_one_line_errors(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [record()])
    for args, needle in (
        (["--where", "novalue"], "--where"),
        (["--since", "yesterday-ish"], "--since"),
        (["--level", "LOUD"], "--level"),
    ):
        result = run_cli("view", path, *args)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1
        assert needle in result.stderr and "Traceback" not in result.stderr


def test_gzip_files_are_read_and_a_truncated_one_shows_what_it_holds(tmp_path: Path) -> None:
    records = [record(f"gz {i}") for i in range(2000)]
    whole = write_jsonl(tmp_path / "a.jsonl.gz", records, gz=True)
    result = run_cli("view", whole)
    assert result.returncode == 0
    assert len(lines_of(result.stdout)) == 2000
    # gzip recognised by content, whatever the name
    renamed = tmp_path / "a.log"
    renamed.write_bytes(whole.read_bytes())
    assert len(lines_of(run_cli("view", renamed).stdout)) == 2000

    cut = tmp_path / "cut.jsonl.gz"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    result = run_cli("view", cut)
    assert result.returncode == 0  # a damaged file is shown as far as it goes
    shown = lines_of(result.stdout)
    assert 0 < len(shown) < 2000
    assert "gz 0" in shown[0]
    assert "gzip data damaged" in result.stderr and "Traceback" not in result.stderr


def test_a_run_directory_shows_its_log_and_a_folder_shows_every_log(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "log_one"
    write_jsonl(run / "log.jsonl", [record("from the run")])
    write_jsonl(run / "metrics.jsonl", [{"step": 1, "metrics": {"loss": 1}}])
    (run / "metadata.json").write_text('{"status": "complete"}')
    write_jsonl(tmp_path / "runs" / "other.jsonl.gz", [record("from gz")], gz=True)

    result = run_cli("view", run)
    assert result.returncode == 0
    assert lines_of(result.stdout) == [lines_of(result.stdout)[0]]
    assert "from the run" in result.stdout

    result = run_cli("view", tmp_path / "runs")
    assert result.returncode == 0
    out = lines_of(result.stdout)
    assert f"==> {run / 'log.jsonl'} <==" in out
    assert f"==> {tmp_path / 'runs' / 'other.jsonl.gz'} <==" in out
    assert "loss" not in result.stdout  # a run's metrics are not log records


def test_standard_input_can_be_viewed(tmp_path: Path) -> None:
    data = orjson.dumps(record("piped in")) + b"\n"
    result = run_cli("view", "-", stdin=data)
    assert result.returncode == 0
    assert "piped in" in result.stdout


def test_a_huge_file_is_streamed_and_filtered(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    base = orjson.dumps(record("routine work " + "x" * 200, subject_id="1"))
    with path.open("wb") as handle:
        for i in range(150_000):
            handle.write(base + b"\n")
            if i % 50_000 == 0:
                handle.write(orjson.dumps(record(f"problem {i}", "ERROR")) + b"\n")
    assert path.stat().st_size > 30 * 1024 * 1024
    started = time.monotonic()
    result = run_cli("view", "--level", "ERROR", path)
    assert result.returncode == 0
    assert [line.split("demo: ")[1] for line in lines_of(result.stdout)] == [
        "problem 0", "problem 50000", "problem 100000",
    ]  # fmt: skip
    assert time.monotonic() - started < 30


def _reader(stream: object, into: queue.Queue[str]) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        into.put(line)


def _next_line(lines: queue.Queue[str], deadline: float) -> str:
    return lines.get(timeout=max(0.0, deadline - time.monotonic()))


def test_follow_shows_lines_as_the_file_grows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "live.jsonl", [record("already there")])
    proc = subprocess.Popen(
        [*CLI, "view", "-f", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_COLOR": ""},
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + 20
        assert "already there" in _next_line(lines, deadline)
        with path.open("ab") as handle:
            handle.write(orjson.dumps(record("appended")) + b"\n")
        assert "appended" in _next_line(lines, deadline)
        # A line written in two parts is shown once, whole.
        half = orjson.dumps(record("written in two parts"))
        with path.open("ab") as handle:
            handle.write(half[:20])
            handle.flush()
            os.fsync(handle.fileno())
        with path.open("ab") as handle:
            handle.write(half[20:] + b"\n" + b"not json\n")
        assert "written in two parts" in _next_line(lines, deadline)
        assert "!! not JSON" in _next_line(lines, deadline)
        # Truncated (rotated by copytruncate): followed from the start.
        path.write_bytes(orjson.dumps(record("after truncation")) + b"\n")
        assert "after truncation" in _next_line(lines, deadline)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=10)
    assert code == 0  # Ctrl-C is how following ends
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "truncated: reading it from the start" in err and "Traceback" not in err


def test_follow_does_not_show_an_unfinished_last_line_early(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    line = orjson.dumps(record("finished later"))
    path.write_bytes(orjson.dumps(record("first")) + b"\n" + line[:15])
    proc = subprocess.Popen(
        [*CLI, "view", "-f", "--json", str(path)], stdout=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    try:
        deadline = time.monotonic() + 20
        assert orjson.loads(_next_line(lines, deadline))["message"] == "first"
        with path.open("ab") as handle:
            handle.write(line[15:] + b"\n")
        assert orjson.loads(_next_line(lines, deadline))["message"] == "finished later"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_gzip_written_by_gzip_module_with_several_members(tmp_path: Path) -> None:
    path = tmp_path / "multi.jsonl.gz"
    with path.open("wb") as raw:
        for part in ("one", "two"):
            raw.write(gzip.compress(orjson.dumps(record(part)) + b"\n"))
    result = run_cli("view", path)
    assert [line.rsplit(": ", 1)[1] for line in lines_of(result.stdout)] == ["one", "two"]
