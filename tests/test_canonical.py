"""Canonical lines: one summary line per unit of work, and per session."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from aind_log_utils import canonical, setup_logging
from aind_log_utils._canonical import CANONICAL_LOGGER, current_canonical
from aind_log_utils.testing import capture_logs, read_jsonl


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def canonical_lines(records: list[dict[str, object]]) -> list[dict[str, object]]:
    return [r for r in records if r.get("logger") == CANONICAL_LOGGER]


def test_success_line_carries_initial_and_added_fields() -> None:
    with capture_logs() as records, canonical("Session recorded", subject_id="123456") as scope:
        scope.add(wt_g=23.9, water_earned_ml=0.89)
    (line,) = canonical_lines(records)
    assert line["message"] == "Session recorded"
    assert line["level"] == "INFO"
    assert line["subject_id"] == "123456"
    assert line["wt_g"] == 23.9 and line["water_earned_ml"] == 0.89
    assert line["status"] == "success" and line["event_type"] == "stage_complete"
    assert isinstance(line["duration_s"], float) and line["duration_s"] >= 0
    assert "error_type" not in line


def test_failure_line_is_error_with_redacted_message_and_reraises() -> None:
    with (
        capture_logs() as records,
        pytest.raises(TimeoutError, match="could not connect"),
        canonical("Failed to save session", database="dataverse"),
    ):
        raise TimeoutError("could not connect: password=hunter2222")
    (line,) = canonical_lines(records)
    assert line["level"] == "ERROR"
    assert line["status"] == "fail" and line["event_type"] == "stage_failure"
    assert line["error_type"] == "TimeoutError"
    assert "could not connect" in str(line["error_message"])
    assert "hunter2222" not in str(line)
    assert "TimeoutError" in str(line["stack_trace"])
    assert line["database"] == "dataverse"


def test_start_line_is_optional() -> None:
    with capture_logs() as records:
        with canonical("work"):
            pass
        with canonical("work", start_line=True, stage="a"):
            pass
    events = [r["event_type"] for r in canonical_lines(records)]
    assert events == ["stage_complete", "stage_start", "stage_complete"]
    assert canonical_lines(records)[1]["stage"] == "a"


def test_nested_scopes_each_write_their_own_line() -> None:
    with capture_logs() as records:
        with canonical("outer") as outer:
            outer.add(level_of="outer")
            with canonical("inner") as inner:
                inner.add(level_of="inner")
                assert current_canonical() is inner
            assert current_canonical() is outer
        assert current_canonical() is None
    lines = canonical_lines(records)
    assert [(r["message"], r["level_of"]) for r in lines] == [
        ("inner", "inner"),
        ("outer", "outer"),
    ]


def test_inner_failure_caught_leaves_outer_successful() -> None:
    # pytest.raises sits inside "outer": the inner failure is caught there
    with (
        capture_logs() as records,
        canonical("outer"),
        pytest.raises(ValueError),
        canonical("inner"),
    ):
        raise ValueError("bad input")
    statuses = {r["message"]: r["status"] for r in canonical_lines(records)}
    assert statuses == {"inner": "fail", "outer": "success"}


def test_decorator_gives_one_line_per_call() -> None:
    @canonical("Processed item", stage="processing")
    def process(item: int) -> int:
        scope = current_canonical()
        assert scope is not None
        scope.add(item=item)
        if item < 0:
            raise ValueError("negative")
        return item * 2

    with capture_logs() as records:
        assert process(1) == 2
        assert process(2) == 4
        with pytest.raises(ValueError):
            process(-1)
    lines = canonical_lines(records)
    assert [(r["item"], r["status"]) for r in lines] == [
        (1, "success"),
        (2, "success"),
        (-1, "fail"),
    ]
    assert all(r["stage"] == "processing" for r in lines)
    assert process.__name__ == "process"


def test_async_decorator_and_async_context_manager() -> None:
    @canonical("fetch")
    async def fetch(n: int) -> int:
        await asyncio.sleep(0)
        scope = current_canonical()
        assert scope is not None
        scope.add(n=n)
        return n

    async def main() -> list[int]:
        async with canonical("batch") as scope:
            results = list(await asyncio.gather(fetch(1), fetch(2)))
            scope.add(count=len(results))
        return results

    with capture_logs() as records:
        assert asyncio.run(main()) == [1, 2]
    lines = canonical_lines(records)
    assert sorted(int(str(r["n"])) for r in lines if r["message"] == "fetch") == [1, 2]
    (batch,) = [r for r in lines if r["message"] == "batch"]
    assert batch["count"] == 2 and batch["status"] == "success"


def test_fields_named_like_record_attributes_are_kept() -> None:
    with capture_logs() as records, canonical("clash", name="mouse", process="sorting") as scope:
        scope.add(message="mine", lineno=3)
    (line,) = canonical_lines(records)
    assert line["extra_name"] == "mouse" and line["extra_process"] == "sorting"
    assert line["extra_message"] == "mine" and line["extra_lineno"] == 3
    assert line["message"] == "clash"


def test_a_scope_cannot_be_entered_twice_at_once() -> None:
    scope = canonical("once")
    with scope, pytest.raises(RuntimeError, match="already running"):
        scope.__enter__()


def test_system_exit_zero_is_success_but_keyboard_interrupt_is_failure() -> None:
    with capture_logs() as records:
        with pytest.raises(SystemExit), canonical("exit"):
            raise SystemExit(0)
        with pytest.raises(KeyboardInterrupt), canonical("interrupted"):
            raise KeyboardInterrupt
    statuses = {r["message"]: r["status"] for r in canonical_lines(records)}
    assert statuses == {"exit": "success", "interrupted": "fail"}


def test_custom_logger_and_level() -> None:
    with (
        capture_logs("my.app") as records,
        canonical("quiet", logger="my.app", level=logging.DEBUG),
    ):
        pass
    assert [(r["logger"], r["level"]) for r in records] == [("my.app", "DEBUG")]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="message"):
        canonical(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="logger"):
        canonical("x", logger=3)  # type: ignore[arg-type]


def test_canonical_line_reaches_the_session_file_with_standard_fields(tmp_path: Path) -> None:
    log_file = tmp_path / "out.jsonl"
    session = setup_logging("canon", subject_id="123456", console=False, log_file=log_file)
    with canonical("Session recorded") as scope:
        scope.add(water_earned_ml=0.89)
    session.close()
    records = read_jsonl(log_file)
    (line,) = [r for r in records if r["message"] == "Session recorded"]
    assert line["subject_id"] == "123456" and line["process_name"] == "canon"
    assert line["status"] == "success" and line["water_earned_ml"] == 0.89
    # the session's own canonical line is its single "Stopping" line
    stops = [r for r in records if r["message"] == "Stopping"]
    assert len(stops) == 1 and stops[0]["status"] == "success"


def test_no_stop_line_without_send_start_log(tmp_path: Path) -> None:
    log_file = tmp_path / "out.jsonl"
    session = setup_logging("canon", console=False, log_file=log_file, send_start_log=False)
    with canonical("unit"):
        pass
    session.close()
    assert [r["message"] for r in read_jsonl(log_file)] == ["unit"]
