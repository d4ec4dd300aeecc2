"""Spooling a batch at once (``Spool.append_many``, ``DeliveryEngine.submit_many``).

A sender process hands its engine all it has read in one call; while the engine
spools (the server is away, or the queue is full) the batch is framed with one
join instead of record by record. It must leave the disk exactly as appending
each record would: the same segments, the same frames, the same cap, the same
SIGKILL window.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _support import RecordingTransport, Switch, poll
from aind_log_utils._delivery import DeliveryEngine
from aind_log_utils._delivery._segment import FRAME_OVERHEAD, MAGIC, SegmentName, read_segment
from aind_log_utils._delivery._spool import Spool
from aind_log_utils._delivery._writer import PENDING_BYTES


def _layout(spool: Spool) -> list[tuple[int, list[bytes]]]:
    """Each closed segment's first seq and records, oldest first (the open one closed)."""
    spool.rotate(fsync=False)
    out = []
    for path in spool.own:
        name = SegmentName.parse(path.name)
        assert name is not None
        out.append((name.seq, read_segment(path).items))
    return out


def _fresh(directory: Path, segment_bytes: int, cap: int) -> Spool:
    spool = Spool(directory, max_bytes=cap, label="batch")
    spool.segment_bytes = segment_bytes
    return spool


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=60),
    cuts=st.lists(st.integers(1, 20), min_size=1, max_size=60),
    segment_bytes=st.integers(500, 20_000),
    cap=st.integers(2_000, 120_000),
)
def test_a_batch_leaves_the_disk_as_appending_each_record_would(
    tmp_path_factory: pytest.TempPathFactory,
    sizes: list[int],
    cuts: list[int],
    segment_bytes: int,
    cap: int,
) -> None:
    """Same segments (names and frames), same records refused by the cap; the
    engine appends what a batch left one by one, as here."""
    items = [bytes([65 + i % 26]) * size for i, size in enumerate(sizes)]
    one = _fresh(tmp_path_factory.mktemp("one"), segment_bytes, cap)
    many = _fresh(tmp_path_factory.mktemp("many"), segment_bytes, cap)
    try:
        taken_one = [one.append(item, seq) is None for seq, item in enumerate(items, 1)]
        taken_many: list[bool] = []
        start, cut = 0, 0
        while start < len(items):
            chunk = items[start : start + cuts[cut % len(cuts)]]
            cut += 1
            done = many.append_many(chunk, start + 1)
            assert 0 <= done <= len(chunk)
            taken_many += [True] * done
            taken_many += [
                many.append(item, start + 1 + k) is None
                for k, item in enumerate(chunk[done:], done)
            ]
            start += len(chunk)
        assert taken_many == taken_one
        assert _layout(many) == _layout(one)
    finally:
        one.release()
        many.release()


def test_a_batch_past_64_kib_is_on_disk_when_append_many_returns(tmp_path: Path) -> None:
    """A SIGKILL takes at most 64 KiB of spooled records, batch or not; a small
    batch waits in memory as single records do (the worker writes it within 0.1 s)."""
    spool = Spool(tmp_path, max_bytes=1 << 30, label="batch")
    try:
        small = [b"s" * 100] * 10
        assert spool.append_many(small, 1) == 10
        path = spool.writer.path
        assert path is not None and read_segment(path).items == []
        big = [b"b" * 1000] * 100  # ~100 kB of frames
        assert spool.append_many(big, 11) == 100
        assert spool.writer.pending_bytes == 0 < PENDING_BYTES
        assert read_segment(path).items == small + big  # readable by a replay now
    finally:
        spool.rotate(fsync=False)
        spool.release()


def test_a_batch_fills_a_segment_to_its_size_then_opens_the_next_named_after_its_first(
    tmp_path: Path,
) -> None:
    spool = _fresh(tmp_path, 1000, 1 << 30)
    try:
        items = [b"%03d" % i + b"x" * 89 for i in range(25)]  # 100-byte frames
        assert spool.append_many(items, 7) == 25
        layout = _layout(spool)
        # A segment closes once it holds 1000 bytes: the magic and 10 frames (1008).
        assert [seq for seq, _ in layout] == [7, 17, 27]
        assert [len(records) for _, records in layout] == [10, 10, 5]
        assert [r for _, records in layout for r in records] == items
    finally:
        spool.release()


def test_a_batch_stops_at_the_cap_and_the_rest_is_told_apart(tmp_path: Path) -> None:
    record_bytes = 40 + FRAME_OVERHEAD
    spool = _fresh(tmp_path, 1 << 20, len(MAGIC) + 5 * record_bytes)
    try:
        assert spool.append_many([b"y" * 40] * 8, 1) == 0  # the whole batch does not fit
        assert spool.append_many([b"y" * 40] * 3, 1) == 3
        assert spool.append_many([b"y" * 40] * 3, 4) == 0
        assert [spool.append(b"y" * 40, seq) for seq in (4, 5, 6)] == [None, None, "spool_full"]
    finally:
        spool.rotate(fsync=False)
        spool.release()


def _spilling_engine(
    tmp_path: Path, transport: RecordingTransport, **options: object
) -> DeliveryEngine:
    engine = DeliveryEngine(
        "batch", transport, spool_dir=tmp_path / "spool", batch_wait_s=0,
        retry_start_s=0.01, retry_max_s=0.02, **options,  # type: ignore[arg-type]
    )  # fmt: skip
    engine.submit(b"first")
    poll(lambda: engine.spilling)  # the first attempt failed: the engine spools
    return engine


def test_batches_spooled_while_the_server_is_away_arrive_once_in_order(tmp_path: Path) -> None:
    server = Switch()
    transport = RecordingTransport(server)
    engine = _spilling_engine(tmp_path, transport, max_spool_bytes=4 << 20)  # 512 KiB segments
    try:
        items = [b"item-%05d-" % i + b"z" * 300 for i in range(3000)]  # ~1 MB: 3 segments
        for start in range(0, len(items), 700):
            engine.submit_many(items[start : start + 700])
        engine.submit_many([b"odd", bytearray(b"bytearray"), "not bytes"])  # type: ignore[list-item]
        stats = engine.stats()
        assert stats.spooled == 1 + 3000 + 2 and stats.dropped == {"invalid_item": 1}
        server.up = True
        assert engine.flush(20)
        assert transport.delivered == [b"first", *items, b"odd", b"bytearray"]
        assert engine.stats().replayed == 3003
    finally:
        engine.close(timeout_s=1)


def test_a_batch_over_the_spool_cap_drops_and_counts_exactly_the_rest(tmp_path: Path) -> None:
    server = Switch()
    transport = RecordingTransport(server)
    engine = _spilling_engine(tmp_path, transport, max_spool_bytes=64 * 1024)
    try:
        items = [b"item-%05d-" % i + b"z" * 500 for i in range(400)]  # ~208 kB
        engine.submit_many(items)
        stats = engine.stats()
        dropped = stats.dropped.get("spool_full", 0)
        assert dropped > 0 and stats.spooled + dropped == 401
        server.up = True
        assert engine.flush(20)
        assert transport.delivered == [b"first", *items[: 400 - dropped]]
    finally:
        engine.close(timeout_s=1)
