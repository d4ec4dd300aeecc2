"""The console and JSONL file sinks."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from aind_log_utils import setup_logging
from aind_log_utils._console import ConsoleSink, format_text
from aind_log_utils._file import JsonlFileSink
from aind_log_utils.testing import read_jsonl


def test_file_sink_creates_parents_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "log.jsonl"
    sink = JsonlFileSink(path)
    assert sink.write_line(b'{"n":1}\n')
    sink.close()
    sink = JsonlFileSink(path)
    assert sink.write_line(b'{"n":2}\n')
    sink.close()
    sink.close()
    assert read_jsonl(path) == [{"n": 1}, {"n": 2}]


def test_torn_last_line_gets_a_newline_before_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"n":1}\n{"n":2, "torn')
    sink = JsonlFileSink(path)
    sink.write_line(b'{"n":3}\n')
    sink.write_line(b'{"n":4}\n')
    sink.close()
    lines = path.read_bytes().splitlines()
    assert lines == [b'{"n":1}', b'{"n":2, "torn', b'{"n":3}', b'{"n":4}']


def test_processes_sharing_one_file_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    script = tmp_path / "writer.py"
    script.write_text(
        textwrap.dedent("""
        import logging, sys
        from aind_log_utils import setup_logging
        setup_logging("w", console=False, log_file=sys.argv[1], send_start_log=False, handle_sigterm=False)
        log = logging.getLogger("w")
        for i in range(2000):
            log.info("line", extra={"writer": sys.argv[2], "i": i, "pad": "x" * 300})
    """)
    )
    procs = [subprocess.Popen([sys.executable, str(script), str(path), str(w)]) for w in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    records = read_jsonl(path)  # every line parses: nothing interleaved
    assert len(records) == 8000
    for w in range(4):
        assert [r["i"] for r in records if r["writer"] == str(w)] == list(range(2000))


def test_console_json_mode_on_a_pipe() -> None:
    stream = io.StringIO()
    sink = ConsoleSink("auto", stream)
    assert sink.mode == "json"
    sink.handle_event({"message": "x"}, b'{"message":"x"}\n', logging.makeLogRecord({}))
    assert orjson.loads(stream.getvalue()) == {"message": "x"}


def test_console_text_escapes_control_characters() -> None:
    event = {
        "timestamp": "2026-02-09T21:19:24.061270Z",
        "level": "WARNING",
        "message": "bad \x1b[31m red\r",
        "logger": "rig",
        "camera": "c\x07",
        "stack_trace": "Traceback\n  line\x1b",
    }
    plain = format_text(event, colour=False)
    assert "\x1b" not in plain and "\r" not in plain and "\x07" not in plain
    assert plain.startswith("21:19:24.061 WARNING  rig: bad \\x1b[31m red\\x0d camera=c\\x07")
    assert plain.split("\n")[1:] == ["Traceback", "  line\\x1b"]
    coloured = format_text(event, colour=True)
    assert "\x1b[33m" in coloured  # WARNING in yellow, from us not from the value


def test_console_stream_configurable_and_text_mode(tmp_path: Path) -> None:
    stream = io.StringIO()
    session = setup_logging(
        "c", console="text", console_stream=stream, log_file=False, handle_sigterm=False
    )
    logging.getLogger("cam").warning("hot", extra={"temp_c": 41})
    session.close()
    out = stream.getvalue()
    assert "WARNING" in out and "cam: hot" in out and "temp_c=41" in out


@pytest.mark.skipif(sys.platform == "win32", reason="pty")
def test_console_is_coloured_text_on_a_tty(tmp_path: Path) -> None:
    import pty

    script = tmp_path / "tty.py"
    script.write_text(
        textwrap.dedent("""
        import logging
        from aind_log_utils import setup_logging
        s = setup_logging("tty", log_file=False, send_start_log=False, handle_sigterm=False)
        logging.getLogger("t").error("on a terminal")
        s.close()
    """)
    )
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(script)], stdout=slave, stderr=slave)
    os.close(slave)
    chunks = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks += data
    proc.wait(timeout=60)
    os.close(master)
    assert b"on a terminal" in chunks
    assert b"\x1b[31m" in chunks  # ERROR in red
    assert b'"message"' not in chunks  # not JSON
