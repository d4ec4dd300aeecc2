"""Frames filled in from a template are exactly the frames the full encoding gives.

The sender process makes the frame of a record like one seen before from a
template (:mod:`aind_log_utils._sipe._template`). These tests compare the two
ways byte for byte on drawn records, check when a template is and is not used,
and send records over a real socket from a real sender process.
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from _support import FAST
from aind_log_utils import setup_logging
from aind_log_utils._sipe import SipeSink
from aind_log_utils._sipe._template import _CHECK_EVERY, FrameTemplates
from aind_log_utils.testing import SipeReceiver

ORIGIN = ("other-program", "rig-7", None)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SipeSink]:
    made = SipeSink(
        "127.0.0.1:9", delivery="thread", spool_dir=tmp_path / "s", program="p",
        fields={"rig_id": "rig_1", "software_version": "1.0"}, **FAST,
    )  # fmt: skip
    try:
        yield made
    finally:
        made.close(0)


def packed(
    message: Any = "frame 3 acquired",
    timestamp: Any = "2026-12-02T10:00:00.123456Z",
    times: tuple[Any, Any, Any] = (1796216552.1717653, 171.0, 278.0475616455078),
    extras: dict[str, Any] | None = None,
    level: str = "WARNING",
) -> tuple[bytes, bytes]:
    """The packed attributes and the line of a record, as a program hands them over."""
    event = {"timestamp": timestamp, "level": level, "message": message, "logger": "rig"}
    event.update({"lineno": 12, "process": "77", "processName": "MainProcess"})
    event.update({"rig_id": "rig_1", "software_version": "1.0", "log_session": "abc1234"})
    event.update(extras if extras is not None else {"camera": "cam-01", "frame": 7})
    attrs = ["rig", level, 30, "/x/acq.py", "acq.py", "acq", "grab", *times, 140001, 77]
    return orjson.dumps(attrs), orjson.dumps(event)


def frame_via_templates(templates: FrameTemplates, attrs: bytes, line: bytes) -> bytes | None:
    return templates.frame(0, attrs, line, None)


def test_a_record_like_one_seen_twice_is_filled_in_and_the_same(sink: SipeSink) -> None:
    templates = FrameTemplates(sink._encode_packed)
    frames = []
    for i in range(5):
        attrs, line = packed(f"frame {i} acquired", times=(1.5e9 + i / 7, i / 3, 1000.0 + i))
        frame = frame_via_templates(templates, attrs, line)
        assert frame is not None and frame == sink._encode_packed(0, attrs, line, None)
        frames.append(pickle.loads(frame[4:]))
    # the first is encoded, the second makes the template, the rest are filled in
    assert templates.filled == 3
    assert [d["msg"] for d in frames] == [f"frame {i} acquired" for i in range(5)]
    assert frames[4]["created"] == 1.5e9 + 4 / 7 and frames[4]["msecs"] == 4 / 3
    assert frames[4]["project"] == "p" and frames[4]["rig_name"] == "rig_1"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"message": 'said "hi"'}, "an escaped quote in the message"),
        ({"message": "two\nlines"}, "an escaped newline in the message"),
        ({"message": "C:\\data"}, "a backslash in the message"),
        ({"times": (1796216552, 171.0, 278.5)}, "created written as an int"),
        ({"times": (math.nan, 171.0, 278.5)}, "created written as null"),
        ({"times": ("1.5", 171.0, 278.5)}, "created written as a string"),
        ({"timestamp": 'a"b'}, "an escaped quote in the timestamp"),
    ],
)
def test_a_record_a_template_cannot_carry_is_encoded_in_full(
    sink: SipeSink, change: dict[str, Any], why: str
) -> None:
    templates = FrameTemplates(sink._encode_packed)
    for _ in range(2):  # makes the template of the plain record
        frame_via_templates(templates, *packed())
    attrs, line = packed(**change)
    frame = frame_via_templates(templates, attrs, line)
    assert frame == sink._encode_packed(0, attrs, line, None), why
    assert templates.filled == 0, why
    assert frame_via_templates(templates, *packed("back to plain")) is not None
    assert templates.filled == 1


def test_other_extras_or_another_writer_have_their_own_template(sink: SipeSink) -> None:
    templates = FrameTemplates(sink._encode_packed)
    variants = [
        (packed(extras={"camera": "cam-01"}), None),
        (packed(extras={"camera": "cam-02"}), None),
        (packed(level="ERROR"), None),
        (packed(), ORIGIN),
    ]
    for _ in range(3):
        for (attrs, line), origin in variants:
            frame = templates.frame(1, attrs, line, origin)
            assert frame is not None and frame == sink._encode_packed(1, attrs, line, origin)
            received = pickle.loads(frame[4:])
            assert received["weblog"] is True
            assert received["project"] == ("other-program" if origin else "p")
    assert templates.filled == len(variants)  # the third round only


def test_start_and_stop_lines_never_use_a_template(sink: SipeSink) -> None:
    """Their frame depends on their message ("Starting" or "Stopping")."""
    from aind_log_utils._sipe._sink import _START_STOP_KIND

    for message, event_type, action in [
        ("Starting", "stage_start", "Start"), ("Stopping", "stage_complete", "Stop"),
    ]:  # fmt: skip
        for _ in range(3):
            attrs, line = packed(message, extras={"event_type": event_type})
            frame = sink._frame_of(_START_STOP_KIND, attrs + b"\n" + line, None)
            assert frame is not None
            msg = pickle.loads(frame[4:])["msg"]
            assert msg.startswith(f"Action, {action}, log_session, abc1234")
    assert sink._templates.filled == 0


def test_templates_rest_where_records_are_all_unlike(sink: SipeSink) -> None:
    """Each record with extras of its own: after a check, no key is made for a while."""
    templates = FrameTemplates(sink._encode_packed)
    for i in range(_CHECK_EVERY + 10):
        attrs, line = packed(extras={"frame": i})
        assert frame_via_templates(templates, attrs, line) is not None
    assert templates.filled == 0
    assert templates._resting > 0 and not templates._seen
    for _ in range(3):
        frame_via_templates(templates, *packed())
    assert templates.filled == 0  # still resting: encoded in full


def test_an_unreadable_record_stays_unreadable(sink: SipeSink) -> None:
    templates = FrameTemplates(sink._encode_packed)
    attrs, line = packed()
    for _ in range(3):
        assert templates.frame(0, attrs, line[:-5], None) is None
        assert templates.frame(9, attrs, line, None) is None  # no such kind
    assert templates.filled == 0


# -- drawn records ---------------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**60), 2**60), st.none(), texts
)
#: Text a template can carry (no escape in its JSON), non-ASCII included.
unescaped = st.text(
    st.characters(exclude_categories=["Cs", "Cc"], exclude_characters='"\\'), max_size=40
)
extras_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), texts
)
extras_maps = st.dictionaries(
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=8),
    extras_values,
    max_size=4,
)


def assert_frames_as_encoded_in_full(
    tmp_path_factory: pytest.TempPathFactory, records: list[tuple[int, Any, bytes, bytes]]
) -> None:
    """Frame ``(kind, origin, attrs, line)`` records in order through one FrameTemplates:
    each frame must be byte for byte the one the full encoding makes."""
    sink = SipeSink(
        "127.0.0.1:9", delivery="thread", program="p",
        spool_dir=tmp_path_factory.mktemp("s"), **FAST,
    )  # fmt: skip
    try:
        templates = FrameTemplates(sink._encode_packed)
        for kind, origin, attrs, line in records:
            assert templates.frame(kind, attrs, line, origin) == sink._encode_packed(
                kind, attrs, line, origin
            )
        event("filled from a template" if templates.filled else "all encoded in full")
    finally:
        sink.close(0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    extras=extras_maps,
    kind=st.sampled_from([0, 1]),
    origin=st.sampled_from([None, ORIGIN]),
    records=st.lists(
        st.tuples(
            st.one_of(unescaped, texts),
            st.one_of(st.just("2026-12-02T10:00:00.123456Z"), unescaped, texts),
            st.one_of(
                st.tuples(st.floats(0, 2e9), st.floats(0, 999), st.floats(0, 1e7)),
                st.tuples(numbers, numbers, numbers),
            ),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_drawn_records_give_the_frames_the_full_encoding_gives(
    tmp_path_factory: pytest.TempPathFactory,
    extras: dict[str, Any],
    kind: int,
    origin: Any,
    records: list[tuple[str, str, tuple[Any, Any, Any]]],
) -> None:
    """Records alike but for their message, timestamp and times (of any kind, any
    characters): each frame is byte for byte the one the full encoding makes."""
    # each record twice first, so that templates are made, then all again
    assert_frames_as_encoded_in_full(
        tmp_path_factory,
        [(kind, origin, *packed(m, ts, times, extras)) for m, ts, times in records * 3],
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pool=st.lists(extras_maps, min_size=1, max_size=3),
    records=st.lists(
        st.tuples(
            st.integers(0, 2),  # which extras
            st.sampled_from([0, 1]),  # kind
            st.sampled_from([None, ORIGIN]),
            st.sampled_from(["INFO", "WARNING"]),
            st.one_of(unescaped, texts),
            st.one_of(st.just("2026-12-02T10:00:00.123456Z"), unescaped),
            st.tuples(st.floats(0, 2e9), st.floats(0, 999), st.floats(0, 1e7)),
        ),
        min_size=2,
        max_size=12,
    ),
)
def test_records_of_several_keys_in_any_order_give_the_full_encodings_frames(
    tmp_path_factory: pytest.TempPathFactory,
    pool: list[dict[str, Any]],
    records: list[tuple[int, int, Any, str, str, str, tuple[float, float, float]]],
) -> None:
    """The template used last is tried first, without its key: a record of another
    key (other extras, kind, writer or level) right after it must not take it."""
    assert_frames_as_encoded_in_full(
        tmp_path_factory,
        [
            (kind, origin, *packed(message, timestamp, times, pool[which % len(pool)], level))
            for which, kind, origin, level, message, timestamp, times in records * 2
        ],
    )


# -- end to end ------------------------------------------------------------------------


def test_a_sender_process_sends_filled_in_frames_that_match_the_file(tmp_path: Path) -> None:
    """Through a real sender process and socket: every record arrives with its own
    message and times, as the JSONL file has them."""
    log_file = tmp_path / "run.jsonl"
    with SipeReceiver() as receiver:
        session = setup_logging(
            "water-log", console=False, log_file=log_file, handle_sigterm=False,
            send_start_log=False, sipe_url=receiver.url,
            sipe_options={**FAST, "spool_dir": str(tmp_path / "spool")},
        )  # fmt: skip
        try:
            log = logging.getLogger("rig")
            for i in range(200):
                log.warning("frame %d acquired", i, extra={"camera": "cam-01"})
            assert session.flush(timeout_s=30)
        finally:
            session.close()
        assert receiver.wait_for(200)
        received = receiver.dicts()
    lines = [orjson.loads(text) for text in log_file.read_text().splitlines()]
    assert [d["msg"] for d in received] == [f"frame {i} acquired" for i in range(200)]
    assert [d["timestamp"] for d in received] == [line["timestamp"] for line in lines]
    created = [d["created"] for d in received]
    assert created == sorted(created) and len(set(created)) > 1
    for d in received:
        assert d["camera"] == "cam-01" and d["project"] == "water-log"
        assert d["timestamp"][:19] == _utc(d["created"])


def _utc(created: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
