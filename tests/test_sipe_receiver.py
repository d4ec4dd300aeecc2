"""The in-repo SIPE receiver reads frames as the server does and refuses classes.

Frames are written by hand on a raw loopback socket, one connection carrying
good and bad frames together: the receiver reuses one unpickler across a
connection's frames, so every bad frame must leave the next good one intact.
"""

from __future__ import annotations

import datetime
import pickle
import socket
import struct
from collections.abc import Iterator

import pytest

from aind_log_utils.testing import SipeReceiver


@pytest.fixture
def receiver() -> Iterator[SipeReceiver]:
    with SipeReceiver() as server:
        yield server


def framed(body: bytes) -> bytes:
    return struct.pack(">L", len(body)) + body


def send(receiver: SipeReceiver, *bodies: bytes) -> None:
    with socket.create_connection(receiver.address, timeout=5) as sock:
        sock.sendall(b"".join(framed(body) for body in bodies))


def good(i: int) -> bytes:
    return pickle.dumps({"msg": f"good {i}", "args": None, "levelno": 20}, 1)


def settle(receiver: SipeReceiver, records: int, rejected: int) -> None:
    """Wait until the receiver has taken ``records`` records and ``rejected`` bad frames."""
    assert receiver.wait_for(records, 5)
    with receiver._cond:  # the counters are stored with the records of the same read
        assert receiver._cond.wait_for(lambda: receiver.refused + receiver.invalid >= rejected, 5)


def test_many_frames_on_one_connection_arrive_whole_and_in_order(
    receiver: SipeReceiver,
) -> None:
    bodies = [good(i) for i in range(3000)]
    send(receiver, *bodies)
    assert receiver.wait_for(3000, 10)
    assert receiver.messages() == [f"good {i}" for i in range(3000)]
    assert receiver.refused == receiver.invalid == 0


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_every_pickle_protocol_is_read(receiver: SipeReceiver, protocol: int) -> None:
    # Protocol 0 is read line by line; a 300 kB string is bigger than what the
    # unpickler takes from memory in one go, so it is read through read().
    big = "x" * 300_000
    record = {"msg": "%s and %d", "args": ("text\nwith newline", 7), "note": big}
    send(receiver, good(0), pickle.dumps(record, protocol), good(1))
    assert receiver.wait_for(3)
    dicts = receiver.dicts()
    assert dicts[1] == record
    assert [d["msg"] for d in (dicts[0], dicts[2])] == ["good 0", "good 1"]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(pickle.dumps(socket.AF_INET, 4), id="stack-global"),
        pytest.param(pickle.dumps({"when": datetime.date(2026, 1, 1)}, 0), id="global"),
        pytest.param(pickle.dumps({"msg": "x"}, 2)[:-1], id="no-stop"),
        pytest.param(pickle.dumps([1, 2], 1), id="not-a-dict"),
        pytest.param(pickle.dumps({1: "x"}, 1), id="non-string-key"),
        pytest.param(b"\xffgarbage", id="garbage"),
        pytest.param(b"", id="empty"),
    ],
)
def test_a_bad_frame_between_good_ones_loses_only_itself(
    receiver: SipeReceiver, bad: bytes
) -> None:
    send(receiver, good(0), bad, good(1), good(2))
    settle(receiver, 3, 1)
    assert receiver.messages() == ["good 0", "good 1", "good 2"]
    assert receiver.refused + receiver.invalid == 1


def test_classes_are_refused_not_counted_invalid(receiver: SipeReceiver) -> None:
    send(receiver, pickle.dumps(socket.AF_INET, 4), good(0))
    settle(receiver, 1, 1)
    assert (receiver.refused, receiver.invalid) == (1, 0)


def test_bytes_after_the_pickle_end_do_not_leak_into_the_next_frame(
    receiver: SipeReceiver,
) -> None:
    # The frame's pickle stops before its length says; the server's unpickler
    # reads the pickle and ignores the rest, and so does this receiver.
    padded = pickle.dumps({"msg": "padded"}, 1) + pickle.dumps({"msg": "smuggled"}, 1)
    send(receiver, good(0), padded, good(1))
    assert receiver.wait_for(3)
    assert receiver.messages() == ["good 0", "padded", "good 1"]
    assert receiver.refused == receiver.invalid == 0


def test_a_frame_cannot_refer_to_objects_of_the_frame_before(receiver: SipeReceiver) -> None:
    # {"msg": <memo 1>}: memo 1 is the string "msg" the frame before stored.
    first = pickle.dumps({"msg": "first"}, 1)
    assert b"q\x01" in first  # the frame before puts "msg" in memo slot 1
    refers_back = b"}(X\x03\x00\x00\x00msgh\x01u."
    send(receiver, first, refers_back, good(1))
    settle(receiver, 2, 1)
    assert receiver.messages() == ["first", "good 1"]
    assert receiver.invalid == 1


def test_frames_cut_across_reads_are_joined(receiver: SipeReceiver) -> None:
    payload = b"".join(framed(good(i)) for i in range(50))
    with socket.create_connection(receiver.address, timeout=5) as sock:
        for start in range(0, len(payload), 7):  # 7 bytes at a time, mid-header too
            sock.sendall(payload[start : start + 7])
    assert receiver.wait_for(50, 10)
    assert receiver.messages() == [f"good {i}" for i in range(50)]


def test_a_counting_receiver_reads_and_checks_every_frame_but_keeps_none() -> None:
    with SipeReceiver(keep_records=False) as receiver:
        send(receiver, good(0), pickle.dumps(socket.AF_INET, 4), good(1), b"junk")
        settle(receiver, 2, 2)
        assert (receiver.count(), receiver.refused, receiver.invalid) == (2, 1, 1)
        with pytest.raises(RuntimeError, match="keep_records"):
            receiver.messages()
        receiver.clear()
        assert receiver.count() == 0
        send(receiver, good(2))
        assert receiver.wait_for(1)
