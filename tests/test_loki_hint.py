"""Frame ids: the program names each entry's labels and metadata; the sender trusts only what it was told.

Unit tests of the two sides (:class:`FrameIds`, :class:`FrameTable`), then the
sender's handling of hinted records against a real Loki receiver, then whole
programs through a real sender process compared with thread delivery.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from _support import FAST
from aind_log_utils import log_context, setup_logging
from aind_log_utils._loki import LokiSink
from aind_log_utils._loki._encode import created_ns, timestamp_ns
from aind_log_utils._loki._hint import (
    FLAG_HINTED,
    HINTED,
    FrameIds,
    FrameTable,
    definition,
)
from aind_log_utils._loki._sink import _WITH_CREATED
from aind_log_utils.testing import LokiReceiver

FIELDS = ("level", "subject_id", "event_type")


def frame_id(ids: FrameIds, event: dict[str, Any], generation: int = 1) -> int | None:
    """What the sink does: the quick lookup, else the slow path."""
    found = ids.lookup(event, generation)
    if found is not None:
        return found
    assigned = ids.assign(event)
    return None if assigned is None else assigned[0]


# -- the program's side --------------------------------------------------------------


def test_one_frame_one_id_and_the_quick_lookup_finds_it() -> None:
    ids = FrameIds(FIELDS)
    event = {"level": "INFO", "subject_id": "1", "message": "a"}
    first = frame_id(ids, event)
    assert first is not None
    assert ids.lookup({**event, "message": "b", "other": 5}, 1) == first  # same frame fields
    assert ids.assign(event) == (first, False)


def test_other_values_or_other_fields_get_other_ids() -> None:
    ids = FrameIds(FIELDS)
    base = {"level": "INFO", "subject_id": "1"}
    seen = {
        frame_id(ids, base),
        frame_id(ids, {**base, "level": "ERROR"}),
        frame_id(ids, {**base, "subject_id": "2"}),
        frame_id(ids, {**base, "event_type": "stage_start"}),  # one more field
        frame_id(ids, {"level": "INFO"}),  # one field fewer
        frame_id(ids, {}),
    }
    assert None not in seen and len(seen) == 6
    # back to the first shape: the same id as before, not a new one
    assert frame_id(ids, dict(base)) == frame_id(ids, {**base, "message": "x"})


def test_a_field_the_shape_lacks_is_never_missed() -> None:
    ids = FrameIds(FIELDS)
    plain = frame_id(ids, {"level": "INFO", "subject_id": "1"})
    assert ids.lookup({"level": "INFO", "subject_id": "1", "event_type": "x"}, 1) is None
    assert frame_id(ids, {"level": "INFO", "subject_id": "1", "event_type": "x"}) != plain


def test_unhashable_values_get_no_id() -> None:
    ids = FrameIds(FIELDS)
    assert frame_id(ids, {"level": "INFO", "subject_id": ["a"]}) is None
    assert frame_id(ids, {"level": "INFO", "subject_id": "1"}) is not None


@pytest.mark.parametrize("others", [{}, {"level": "INFO"}])  # one field, or a tuple of them
def test_equal_numbers_of_other_types_get_frames_of_their_own(others: dict[str, Any]) -> None:
    # 1 == 1.0 == True: one shared id would give all three the metadata "1"
    ids = FrameIds(FIELDS)
    values = (1, True, 1.0, "1", False, 0, 0.0, -0.0)
    events = [{**others, "subject_id": value} for value in values]
    first = [frame_id(ids, event) for event in events]
    assert None not in first and len(set(first)) == len(events)
    assert [frame_id(ids, dict(event)) for event in events] == first  # and keep them
    assert ids.lookup(events[3], 1) == first[3]  # text: the quick lookup finds it


def test_a_new_generation_forgets_every_id_and_never_reuses_one() -> None:
    ids = FrameIds(FIELDS)
    event = {"level": "INFO"}
    before = frame_id(ids, event, generation=1)
    assert ids.lookup(event, 2) is None  # a new sender knows none of them
    after = frame_id(ids, event, generation=2)
    assert before is not None and after is not None and after != before


def test_ids_stay_unique_past_the_bound() -> None:
    ids = FrameIds(FIELDS)
    got = [frame_id(ids, {"level": "INFO", "subject_id": str(i)}) for i in range(3000)]
    assert len(set(got)) == 3000


# -- the sender's side ---------------------------------------------------------------


def test_frame_table_reads_back_a_definition_and_refuses_a_short_one() -> None:
    table = FrameTable()
    prefix, payload = definition(7, (b'{"a":"b"}\n["', b',{"m":"1"}]'))
    assert HINTED.unpack_from(prefix)[::2] == (3, 7)
    table.define(7, payload)
    assert table.get(7) == (b'{"a":"b"}\n["', b',{"m":"1"}]')
    assert table.get(8) is None
    for bad in (b"", b"\x00\x00\x00\x09short"):
        with pytest.raises(ValueError):
            table.define(9, bad)


def line_of(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event) + b"\n"


def test_hinted_records_become_the_entries_of_read_back_ones(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    sink = LokiSink(receiver.url, program="hint", spool_dir=tmp_path / "s", delivery="thread",
                    max_line_bytes=2048, **FAST)  # fmt: skip
    try:
        base = float(int(time.time()))
        now = created_ns(base)

        def at(micros: int) -> float:  # a record's created, micros after base
            return base + (micros + 0.5) / 1e6

        event = {"timestamp": "2026-12-01T08:00:00.000000Z", "level": "INFO",
                 "subject_id": "123456", "message": "m", "logger": "x"}  # fmt: skip
        frame = sink._frame(event)
        prefix, payload = definition(5, frame)
        long_event = {**event, "message": "y" * 5000}
        odd = {**event, "message": 'quote " backslash \\ tab \t caf\u00e9 \u2603 \U0001f600'}
        fits = line_of({**event, "message": ""})
        fits = line_of({**event, "message": "z" * (2048 - len(fits) + 1)})  # exactly 2048
        assert len(fits) - 1 == 2048
        hinted = [
            prefix + payload,
            HINTED.pack(FLAG_HINTED, at(1), 5) + line_of({**event, "message": "hinted"}),
            HINTED.pack(FLAG_HINTED, at(2), 6) + line_of({**event, "message": "unknown id"}),
            HINTED.pack(FLAG_HINTED, at(3), 5) + line_of(long_event),  # must be truncated
            HINTED.pack(FLAG_HINTED, at(4), 5) + line_of(odd),  # escaped, not mangled
            HINTED.pack(FLAG_HINTED, at(5), 5) + line_of(event)[:-1],  # no newline to strip
            HINTED.pack(FLAG_HINTED, at(6), 5) + fits,  # at the limit: kept whole
            HINTED.pack(FLAG_HINTED, at(7), 5)[:-2],  # cut short: unreadable, counted
        ]
        sink.host_records(hinted)
        read_back = [
            _WITH_CREATED.pack(0, at(11)) + line_of({**event, "message": "hinted"}),
            _WITH_CREATED.pack(0, at(12)) + line_of({**event, "message": "unknown id"}),
            _WITH_CREATED.pack(0, at(13)) + line_of(long_event),
            _WITH_CREATED.pack(0, at(14)) + line_of(odd),
            _WITH_CREATED.pack(0, at(15)) + line_of(event)[:-1],
            _WITH_CREATED.pack(0, at(16)) + fits,
        ]
        sink.host_records(read_back)
        assert sink.flush(10)
        assert sink.counters()["errors"] == 1
        entries = sorted(receiver.entries(), key=lambda e: e.ts_ns)
        micros = [1, 2, 3, 4, 5, 6, 11, 12, 13, 14, 15, 16]
        assert [(e.ts_ns - now) // 1000 for e in entries] == micros
        assert orjson.loads(entries[3].line)["message"] == odd["message"]
        assert entries[4].line == line_of(event)[:-1].decode()
        assert entries[5].line == fits[:-1].decode()
        for mine, theirs in zip(entries[:6], entries[6:], strict=True):
            assert (mine.labels, mine.metadata, mine.line) == (
                theirs.labels, theirs.metadata, theirs.line
            )  # fmt: skip
        assert entries[0].metadata == {"subject_id": "123456", "logger": "x"}
        assert orjson.loads(entries[2].line)["truncated"] is True
    finally:
        sink.close()


# -- whole programs ------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="process delivery is POSIX")
def test_changing_frames_arrive_as_thread_delivery_sends_them(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    """Levels, bound context, per-record overrides and stage lines change the frame
    from record to record; each entry must carry its own."""
    seen: dict[str, dict[str, Any]] = {}
    for mode in ("process", "thread"):
        receiver.clear()
        session = setup_logging(
            "hint-test", console=False, log_file=tmp_path / f"{mode}.jsonl",
            handle_sigterm=False, send_start_log=False, subject_id="123456", rig_id="rig_1",
            loki_url=receiver.url,
            loki_options={**FAST, "spool_dir": str(tmp_path / mode), "delivery": mode},
        )  # fmt: skip
        log = logging.getLogger("hint")
        for i in range(3):
            log.info("plain %d", i)
            log.warning("warn %d", i)
            with log_context(subject_id="654321", acquisition_name="x_2026-01-01_00-00-00"):
                log.info("bound %d", i)
            log.info("override %d", i, extra={"subject_id": "111111"})
            log.info("stage %d", i, extra={"event_type": "stage_start"})
            log.info({"message": f"as a dict {i}", "asset_name": f"asset-{i}"})
        logging.getLogger("other.logger").error("another logger")
        assert session.flush(10)
        session.close()
        lines = (tmp_path / f"{mode}.jsonl").read_text().splitlines()
        got = receiver.entries()
        assert sorted(e.line for e in got) == sorted(lines)  # a push groups by stream
        # each entry's time is its line's own instant (the sender makes it of created)
        assert [e.ts_ns for e in got] == [timestamp_ns(orjson.loads(e.line)) for e in got]
        seen[mode] = {
            _title(e.line): (
                e.labels, {k: v for k, v in (e.metadata or {}).items() if k != "log_session"}
            )
            for e in got
        }  # fmt: skip
        assert len(seen[mode]) == len(lines) == 19
    assert seen["process"] == seen["thread"]
    by_message = {message: meta for message, (_, meta) in seen["thread"].items()}
    assert by_message["bound 1"]["subject_id"] == "654321"
    assert by_message["override 2"]["subject_id"] == "111111"
    assert by_message["plain 2"]["subject_id"] == "123456"
    assert by_message["stage 0"]["event_type"] == "stage_start"
    assert "event_type" not in by_message["plain 0"]
    assert by_message["another logger"]["logger"] == "other.logger"
    assert by_message["as a dict 2"]["asset_name"] == "asset-2"
    assert seen["thread"]["warn 0"][0]["level"] == "WARNING"


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_equal_numbers_of_other_types_keep_their_own_metadata(
    receiver: LokiReceiver, tmp_path: Path, mode: str
) -> None:
    if mode == "process" and sys.platform == "win32":
        pytest.skip("process delivery is POSIX")
    session = setup_logging(
        "hint-test", console=False, log_file=False, handle_sigterm=False, send_start_log=False,
        loki_url=receiver.url, loki_options={**FAST, "spool_dir": str(tmp_path), "delivery": mode},
    )  # fmt: skip
    values = (1, True, 1.0, "1", 1, True, 1.0, 0, False, 0.0, -0.0)
    for number, value in enumerate(values):
        logging.getLogger("hint").info("record %d", number, extra={"subject_id": value})
    assert session.flush(10)
    session.close()
    got = {orjson.loads(e.line)["message"]: e.metadata or {} for e in receiver.entries()}
    assert [got[f"record {n}"].get("subject_id") for n in range(len(values))] == [
        "1", "True", "1.0", "1", "1", "True", "1.0", "0", "False", "0.0", "-0.0"
    ]  # fmt: skip


def _title(line: str) -> str:
    event = orjson.loads(line)
    return str(event.get("extra_message") or event["message"])  # a dict message's own


@pytest.mark.skipif(sys.platform == "win32", reason="process delivery is POSIX")
def test_threads_logging_different_frames_at_once_each_get_their_own(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    """Four threads, each with a context of its own, define and use frames at the same
    time: a record may name an id before its definition reaches the sender, which
    must then read its line back rather than guess."""
    import threading

    session = setup_logging(
        "hint-threads", console=False, log_file=tmp_path / "run.jsonl", handle_sigterm=False,
        send_start_log=False, loki_url=receiver.url,
        loki_options={**FAST, "spool_dir": str(tmp_path / "s"), "delivery": "process"},
    )  # fmt: skip
    log = logging.getLogger("threads")
    start = threading.Barrier(4)

    def work(t: int) -> None:
        start.wait()
        for i in range(400):
            with log_context(subject_id=f"subject-{t}-{i % 5}"):
                (log.warning if i % 2 else log.info)("t%d n%d", t, i)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert session.flush(20)
    session.close()
    entries = receiver.entries()
    assert len(entries) == 1600
    for entry in entries:
        line = orjson.loads(entry.line)
        assert entry.labels["level"] == line["level"]
        assert (entry.metadata or {}).get("subject_id") == line["subject_id"]


class _OddMapping(dict[str, Any]):
    def keys(self) -> Any:
        raise RuntimeError("odd")


@pytest.mark.skipif(sys.platform == "win32", reason="process delivery is POSIX")
def test_an_event_the_lookup_chokes_on_is_sent_read_back(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    sink = LokiSink(receiver.url, program="odd", spool_dir=tmp_path / "s", **FAST)
    try:
        assert sink.delivery == "process"
        event = _OddMapping(level="INFO", subject_id="1", message="odd", timestamp="t")
        line = orjson.dumps(dict(event)) + b"\n"
        record = logging.makeLogRecord({"msg": "odd", "levelname": "INFO"})
        for _ in range(2):  # the second goes through the quick lookup, which raises
            sink.handle_event(event, line, record)  # must not raise
        assert sink.flush(10)
        entries = receiver.entries()
        assert len(entries) == 1  # the same line and time twice: Loki keeps one
        assert entries[0].labels["level"] == "INFO"
        assert entries[0].metadata == {"subject_id": "1"}
        assert receiver.dropped["duplicate"] == 1
    finally:
        sink.close()
