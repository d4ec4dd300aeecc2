from __future__ import annotations

import datetime as dt
import decimal
import enum
import io
import json
import logging
import logging.config
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr
from pythonjsonlogger.core import BaseJsonFormatter

from aind_log_utils import JsonFormatter
from aind_log_utils._redact import MASK, MAX_STR_CHARS
from aind_log_utils._render import Renderer

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def make_record(msg: Any = "hello %s", args: Any = ("world",), **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("test.logger", logging.INFO, __file__, 42, msg, args, None)
    record.__dict__.update(extra)
    return record


def strict_loads(line: str) -> dict[str, Any]:
    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    value = json.loads(line, parse_constant=refuse)
    assert isinstance(value, dict)
    return value


def test_is_a_python_json_logger_formatter() -> None:
    assert isinstance(JsonFormatter(), BaseJsonFormatter)


def test_standard_fields_and_formats() -> None:
    record = make_record()
    out = strict_loads(JsonFormatter().format(record))
    assert TS_RE.match(out["timestamp"])
    assert out["level"] == "INFO"
    assert out["message"] == "hello world"
    assert out["lineno"] == 42
    assert out["process"] == str(record.process) and isinstance(out["process"], str)
    assert out["thread"] == str(record.thread) and isinstance(out["thread"], str)
    assert out["processName"] == record.processName
    assert out["threadName"] == record.threadName
    assert list(out)[:3] == ["timestamp", "level", "message"]


def test_timestamp_is_the_records_own_instant_in_utc() -> None:
    record = make_record()
    record.created = 1770671964.0612702  # 2026-02-09T21:19:24.061270Z
    out = strict_loads(JsonFormatter().format(record))
    assert out["timestamp"] == "2026-02-09T21:19:24.061270Z"


def test_record_is_never_mutated() -> None:
    record = make_record(exc_info=None, camera="cam-01")
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    before = dict(record.__dict__)
    JsonFormatter().format(record)
    assert record.__dict__ == before
    assert "message" not in record.__dict__ and record.exc_text is None


def test_exceptions_become_error_type_and_stack_trace() -> None:
    formatter = JsonFormatter()
    try:
        raise KeyError("missing")
    except KeyError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    out = strict_loads(formatter.format(record))
    assert out["error_type"] == "KeyError"
    assert "Traceback (most recent call last)" in out["stack_trace"]
    assert "KeyError: 'missing'" in out["stack_trace"]


def test_stack_info_kept() -> None:
    record = make_record()
    record.stack_info = "Stack (most recent call last):\n  File x"
    assert strict_loads(JsonFormatter().format(record))["stack_info"].startswith("Stack")


def test_values_rendered_sensibly() -> None:
    class Mode(enum.Enum):
        FAST = "fast"

    np = pytest.importorskip("numpy")
    record = make_record(
        when=dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc),
        day=dt.date(2026, 1, 2),
        amount=decimal.Decimal("1.25"),
        uid=uuid.UUID(int=1),
        path=Path("/data/x"),
        mode=Mode.FAST,
        raw=b"\x00bytes",
        tags={"b", "a"},
        n=np.int64(3),
        f=np.float32(0.5),
        arr=np.arange(4),
        nan=float("nan"),
        inf=float("-inf"),
    )
    out = strict_loads(JsonFormatter().format(record))
    assert out["when"] == "2026-01-01T12:00:00+00:00"
    assert out["day"] == "2026-01-02"
    assert out["amount"] == "1.25"
    assert out["uid"] == "00000000-0000-0000-0000-000000000001"
    assert out["path"] == "/data/x"
    assert out["mode"] == "fast"
    assert out["raw"] == "\x00bytes"
    assert out["tags"] == ["a", "b"]
    assert out["n"] == 3 and out["f"] == 0.5 and out["arr"] == [0, 1, 2, 3]
    assert out["nan"] == "nan" and out["inf"] == "-inf"


def test_lone_surrogates_replaced_and_one_line() -> None:
    record = make_record("bad \ud800 text\nsecond line", None, other="x\udfffy")
    line = JsonFormatter().format(record)
    assert "\n" not in line
    line.encode("utf-8")  # valid UTF-8
    out = strict_loads(line)
    assert out["message"] == "bad \ufffd text\nsecond line"
    assert out["other"] == "x\ufffdy"


def test_integers_beyond_64_bits_are_text_and_the_line_keeps_the_record() -> None:
    """orjson refuses them: the record still gives its own line (not a marker), the
    big ones as their decimal text, and the event the sinks get holds the same."""
    big, low = 2**64, -(2**63) - 1
    record = make_record(
        n=big, m=low, edge=[2**64 - 1, -(2**63)], nested={"k": [big]}, keyed={big: "v"}
    )
    event, line = Renderer().render(record)
    out = strict_loads(line.decode("utf-8"))
    assert out["message"] == "hello world" and "error_type" not in out
    assert out["n"] == str(big) and out["m"] == str(low)
    assert out["edge"] == [2**64 - 1, -(2**63)]  # within 64 bits: still numbers
    assert out["nested"] == {"k": [str(big)]} and out["keyed"] == {str(big): "v"}
    assert event == out
    # Past Python's digit limit for str(): its size, still the record's own line.
    out = strict_loads(Renderer().render(make_record(vast=10**5000))[1].decode("utf-8"))
    assert out["message"] == "hello world" and out["vast"] == "<int of 16610 bits>"


def test_oversized_value_truncated_with_marker() -> None:
    record = make_record(blob="y" * (MAX_STR_CHARS * 2))
    out = strict_loads(JsonFormatter().format(record))
    assert out["blob"].endswith(f"[truncated {MAX_STR_CHARS} chars]")


def test_bad_args_never_raise_and_keep_the_line() -> None:
    record = make_record("value %d %d", ("only-one",))
    out = strict_loads(JsonFormatter().format(record))
    assert "formatting failed" in out["message"]
    assert "only-one" in out["message"]


def test_unrepresentable_message_and_values() -> None:
    class Bad:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    out = strict_loads(JsonFormatter().format(make_record(Bad(), None, thing=Bad())))
    assert "unrepresentable" in out["message"]
    assert "unrepresentable" in out["thing"]


def test_secretstr_extra_and_secret_keys_redacted() -> None:
    record = make_record(password="pw", token=SecretStr("t0k3n"), nested={"api_key": "k"})
    line = JsonFormatter().format(record)
    assert "t0k3n" not in line and '"pw"' not in line
    out = strict_loads(line)
    assert out["password"] == MASK and out["token"] == MASK and out["nested"] == {"api_key": MASK}


def test_secrets_in_logger_thread_and_process_names_are_masked() -> None:
    """A logger named after a DSN, a thread or process named after a URL: the names
    are scrubbed as any text is (the record keeps them as they were)."""
    record = make_record()
    record.name = "db.postgres://bob:dsn-secret-1@h/x"
    record.threadName = "fetch https://x.org/?token=thread-secret-2"
    record.processName = "worker --password proc-secret-3"
    formatter = JsonFormatter()
    for _ in range(2):  # and again, from the text cache
        out = strict_loads(formatter.format(record))
        assert out["logger"] == f"db.postgres://bob:{MASK}@h/x"
        assert out["threadName"] == f"fetch https://x.org/?token={MASK}"
        assert out["processName"] == f"worker --password {MASK}"
    assert record.name == "db.postgres://bob:dsn-secret-1@h/x"
    other = make_record()
    plain = strict_loads(formatter.format(other))
    assert plain["logger"] == "test.logger" and plain["threadName"] == other.threadName


def test_extras_named_like_required_fields_do_not_overwrite_them() -> None:
    record = make_record(level="custom", timestamp="yesterday")
    out = strict_loads(JsonFormatter().format(record))
    assert out["level"] == "INFO"
    assert out["extra_level"] == "custom" and out["extra_timestamp"] == "yesterday"


def test_pjl_options_rename_static_prefix_fmt() -> None:
    formatter = JsonFormatter(
        "%(funcName)s %(pathname)s",
        rename_fields={"message": "msg"},
        static_fields={"team": "neuro"},
        prefix="@",
    )
    line = formatter.format(make_record())
    assert line.startswith("@")
    out = strict_loads(line[1:])
    assert out["msg"] == "hello world" and "message" not in out
    assert out["team"] == "neuro"
    assert "funcName" in out and out["pathname"] == __file__


def test_dict_message_becomes_fields() -> None:
    out = strict_loads(JsonFormatter().format(make_record({"event": "x", "n": 1}, None)))
    assert out["event"] == "x" and out["n"] == 1 and out["message"] == ""


def test_usable_in_dictconfig() -> None:
    stream = io.StringIO()
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "json": {"()": "aind_log_utils.JsonFormatter", "static_fields": {"app": "t"}}
            },
            "handlers": {
                "s": {"class": "logging.StreamHandler", "formatter": "json", "stream": stream}
            },
            "loggers": {"dictcfg": {"handlers": ["s"], "level": "INFO", "propagate": False}},
        }
    )
    logging.getLogger("dictcfg").info("configured", extra={"k": 1})
    out = strict_loads(stream.getvalue().strip())
    assert out["message"] == "configured" and out["app"] == "t" and out["k"] == 1


def test_render_gives_event_and_line_that_agree() -> None:
    event, line = Renderer({"subject_id": "1"}).render(make_record(camera="c"))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == event
    assert event["subject_id"] == "1" and event["camera"] == "c"


def test_unknown_static_fields_are_left_out() -> None:
    event, _ = Renderer({"subject_id": None, "rig_id": "r1"}).render(make_record())
    assert "subject_id" not in event and event["rig_id"] == "r1"
    assert "undefined" not in json.dumps(event)


def test_custom_record_factory_fields_are_kept_whatever_their_order() -> None:
    previous = logging.getLogRecordFactory()

    class EarlyRecord(logging.LogRecord):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.early_field = "set-before-init"
            super().__init__(*args, **kwargs)
            self.late_field = "set-after-init"

    logging.setLogRecordFactory(EarlyRecord)
    try:
        record = logging.getLogger("f").makeRecord(
            "f", logging.INFO, __file__, 1, "m", (), None, extra={"x": 1}
        )
    finally:
        logging.setLogRecordFactory(previous)
    out = strict_loads(JsonFormatter().format(record))
    assert (
        out["early_field"] == "set-before-init"
        and out["late_field"] == "set-after-init"
        and out["x"] == 1
    )


HEAD = ["timestamp", "level", "message", "logger", "lineno", "process", "processName",
        "thread", "threadName"]  # fmt: skip


def test_event_order_record_then_included_then_static_then_extras() -> None:
    renderer = Renderer({"subject_id": "1", "rig_id": "r1"}, include_attrs=["funcName"])
    for _ in range(2):  # every record gets the same order, not only the first
        event, line = renderer.render(make_record(camera="c"))
        assert list(event) == [*HEAD, "funcName", "subject_id", "rig_id", "camera"]
        assert list(orjson.loads(line)) == list(event)
        assert event["subject_id"] == "1" and event["rig_id"] == "r1" and event["camera"] == "c"


def test_static_field_named_like_a_record_attribute_wins_in_its_place() -> None:
    renderer = Renderer({"logger": "static-logger", "subject_id": "1"})
    event, _ = renderer.render(make_record())
    assert event["logger"] == "static-logger"
    assert list(event) == [*HEAD, "subject_id"]
    assert event["message"] == "hello world" and event["lineno"] == 42


def test_with_static_renders_the_new_static_fields_only() -> None:
    first = Renderer({"subject_id": "1", "rig_id": "r1"})
    second = first.with_static({"subject_id": "2"})
    event, _ = second.render(make_record())
    assert event["subject_id"] == "2" and "rig_id" not in event
    assert first.render(make_record())[0]["rig_id"] == "r1"


def test_process_and_thread_ids_are_each_records_own() -> None:
    import threading

    renderer = Renderer()
    records: list[logging.LogRecord] = [make_record()]
    worker = threading.Thread(target=lambda: records.append(make_record()))
    worker.start()
    worker.join()
    records.append(make_record())
    events = [renderer.render(r)[0] for r in records]
    assert [e["thread"] for e in events] == [str(r.thread) for r in records]
    assert events[0]["thread"] != events[1]["thread"]
    # A record of another process (a hand-made or unpickled record) too.
    other = make_record()
    other.process = 12345
    assert renderer.render(other)[0]["process"] == "12345"
    assert renderer.render(make_record())[0]["process"] == str(records[0].process)


def test_ids_turned_off_in_logging_render_as_before() -> None:
    # logging.logThreads / logProcesses = False leave the ids None: "None" as ever,
    # even on a renderer's first record.
    record = make_record()
    record.process = None
    record.thread = None
    event, _ = Renderer().render(record)
    assert event["process"] == "None" and event["thread"] == "None"
