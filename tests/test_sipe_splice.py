"""A spliced SIPE frame unpickles to the very dict the frame built the usual way holds."""

from __future__ import annotations

import io
import logging
import pickle
import struct
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aind_log_utils import setup_logging
from aind_log_utils._sipe import SipeEncoder, SipeSink
from aind_log_utils._sipe._encode import RECORD_ATTRS, get_record_attrs
from aind_log_utils._sipe._splice import SPLICE_OK, FrameSplicer, pairs_run

FIELDS = {"rig_id": "rig_1", "software_version": "1.0", "hostname": "h", "log_session": "abc1234"}
#: Keys a record's event holds besides its extras (what the renderer writes first).
HEAD = {
    "timestamp": "2026-01-01T00:00:00.000001Z", "level": "INFO", "message": "m",
    "logger": "rig", "lineno": 3, "process": "11", "processName": "MainProcess",
    "thread": "12", "threadName": "MainThread",
}  # fmt: skip


class _NoClasses(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name}")


def unpickled(frame: bytes) -> dict[str, Any]:
    (length,) = struct.unpack(">L", frame[:4])
    assert length == len(frame) - 4
    value = _NoClasses(io.BytesIO(frame[4:])).load()
    assert type(value) is dict
    return value


def built_the_usual_way(encoder: SipeEncoder, *args: Any, **kwargs: Any) -> bytes:
    splicer, encoder._splicer = encoder._splicer, None
    try:
        return encoder.encode_owned(*args, **kwargs)
    finally:
        encoder._splicer = splicer


plain_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False), st.text(max_size=30),
)  # fmt: skip
odd_values = st.one_of(plain_values, st.lists(st.integers(), max_size=2), st.integers(2**64))
#: Extra keys, among them every key a frame adds and the ones it renames.
extra_keys = st.one_of(
    st.text(min_size=1, max_size=12),
    st.sampled_from([*RECORD_ATTRS, "msg", "args", "exc_text", "stack_info", "project",
                     "rig_name", "comp_id", "version", "weblog", "getMessage", "asctime",
                     "exc_info", "message", "rig_id", "software_version"]),
)  # fmt: skip


@pytest.mark.skipif(not SPLICE_OK, reason="this Python's pickles have another layout")
@settings(max_examples=300, deadline=None)
@given(
    extras=st.dictionaries(extra_keys, odd_values, max_size=8),
    values=st.lists(odd_values, min_size=len(RECORD_ATTRS), max_size=len(RECORD_ATTRS)),
    weblog=st.booleans(),
    origin=st.none() | st.tuples(st.text(max_size=5), st.none() | st.text(max_size=5),
                                 st.none() | st.text(max_size=5)),
    stack_trace=st.none() | st.text(max_size=20),
    drop=st.none() | st.sampled_from(sorted({*FIELDS, *HEAD})),
)  # fmt: skip
def test_a_spliced_frame_is_the_frame_built_the_usual_way(
    extras: dict[str, Any], values: list[Any], weblog: bool,
    origin: tuple[str, str | None, str | None] | None, stack_trace: str | None,
    drop: str | None,
) -> None:  # fmt: skip
    encoder = SipeEncoder("prog", {"rig_id": "rig_1", "software_version": "1.0"})
    event = {**HEAD, **FIELDS, **extras}
    if drop is not None:  # an event the renderer did not make
        event.pop(drop, None)
    kwargs: dict[str, Any] = {"weblog": weblog, "origin": origin, "stack_trace": stack_trace}
    usual = unpickled(built_the_usual_way(encoder, dict(event), list(values), **kwargs))
    spliced = unpickled(encoder.encode_owned(dict(event), list(values), **kwargs))
    assert spliced == usual
    assert all(type(v) in (str, int, float, bool, type(None)) for v in spliced.values())


@pytest.mark.skipif(not SPLICE_OK, reason="this Python's pickles have another layout")
def test_the_usual_record_is_spliced_in_both_delivery_modes(tmp_path: Any) -> None:
    """The splice is what runs for a record of setup_logging's, live and read back."""
    sink = SipeSink("127.0.0.1:9", delivery="thread", spool_dir=tmp_path / "s", program="p",
                    fields={"rig_id": "rig_1"}, batch_wait_s=0.05)  # fmt: skip
    seen: list[tuple[Any, bytes, logging.LogRecord]] = []
    sink.handle_event = lambda event, line, record: seen.append((event, line, record))  # type: ignore[method-assign]
    session = setup_logging("p", console=False, log_file=False, handle_sigterm=False,
                            send_start_log=False, sinks=[sink], subject_id="1")  # fmt: skip
    try:
        logging.getLogger("rig").warning("frame %d of [3] {x}", 7, extra={"camera": "c"})
    finally:
        session.close()
        sink.close(0)
    ((event, line, record),) = seen
    spliced: list[bool] = []
    splice = sink._encoder._splice

    def spy(*args: Any, **kwargs: Any) -> bytes | None:
        out = splice(*args, **kwargs)
        spliced.append(out is not None)
        return out

    sink._encoder._splice = spy  # type: ignore[method-assign]
    live = unpickled(sink._encode(0, event, record))
    attrs = orjson.dumps(get_record_attrs(record.__dict__), default=str)
    frame = sink._frame_of(0, attrs + b"\n" + line, None)
    assert frame is not None and unpickled(frame) == live
    assert spliced == [True, True]
    assert live["msg"] == "frame 7 of [3] {x}" and "message" not in live
    assert live["project"] == "p" and live["args"] is None and live["camera"] == "c"


def test_a_splicer_refuses_a_tail_of_another_length() -> None:
    splicer = FrameSplicer(("a", "b"))
    with pytest.raises(ValueError):
        splicer.splice({"k": 1}, ("only one",), pairs_run({"c": 2}))
    with pytest.raises(ValueError, match="tail_keys"):
        FrameSplicer(())
    data = splicer.splice({"k": 1, "a": 0}, ("x", None), pairs_run({"c": 2}))
    assert pickle.loads(data) == {"k": 1, "a": "x", "b": None, "c": 2}
