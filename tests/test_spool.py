"""The on-disk spool: framing, torn tails, naming, claiming, the cap."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from aind_log_utils._delivery import _spool
from aind_log_utils._delivery._segment import host_id
from aind_log_utils._delivery._spool import (
    FOREIGN_HOST_STALE_S,
    MAGIC,
    SegmentName,
    Spool,
    SpoolWriter,
    claim_orphans,
    read_segment,
)

HOST = host_id()


def dead_pid() -> int:
    """A pid that was alive a moment ago and is now gone (reaped)."""
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(out.stdout)
    assert not _pid_alive(pid)
    return pid


def _pid_alive(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


def write_segment(
    directory: Path,
    items: list[bytes],
    *,
    pid: int,
    token: str = "abc123",
    seq: int = 1,
    host: str = HOST,
) -> Path:
    writer = SpoolWriter(directory, host=host, pid=pid, token=token)
    for offset, item in enumerate(items):
        writer.append(item, seq + offset)
    path = writer.rotate(fsync=True)
    assert path is not None
    return path


def items(n: int, prefix: str = "r") -> list[bytes]:
    return [f"{prefix}-{i:04d}".encode() for i in range(n)]


def test_segment_name_round_trips_with_dashes_in_the_host() -> None:
    name = SegmentName("rig-12-a.local", 4321, "0af3", 17)
    assert name.filename == "rig-12-a.local-4321-0af3-0000000000000017.spool"
    assert SegmentName.parse(name.filename) == name
    assert SegmentName.parse("rig-4321-0af3-17.spool.claimed-x-1-ab") is None
    assert SegmentName.parse("notes.txt") is None


def test_writer_and_reader_round_trip_every_record(tmp_path: Path) -> None:
    records = [*items(100), b"", b"\x00\xff" * 1000]
    path = write_segment(tmp_path, records, pid=os.getpid())
    assert path.read_bytes().startswith(MAGIC)
    data = read_segment(path)
    assert data.valid
    assert data.items == records
    assert data.ignored_bytes == 0
    assert data.size == path.stat().st_size


def test_frames_are_length_and_standard_crc32_whatever_computes_it(tmp_path: Path) -> None:
    """A spool written where ISA-L computes the CRC is read where zlib does."""
    import struct
    import zlib

    records = [b"one", b"", b"\x00\xff" * 700]
    data = write_segment(tmp_path, records, pid=os.getpid()).read_bytes()
    expected = MAGIC + b"".join(struct.pack(">II", len(r), zlib.crc32(r)) + r for r in records)
    assert data == expected


def test_writer_names_segment_after_first_seq_and_rotates(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, host=HOST, pid=42, token="beef")
    writer.append(b"a", 7)
    writer.append(b"b", 8)
    assert writer.records == 2
    first = writer.rotate(fsync=False)
    writer.append(b"c", 9)
    second = writer.rotate(fsync=True)
    assert first is not None and second is not None
    assert SegmentName.parse(first.name) == SegmentName(HOST, 42, "beef", 7)
    assert SegmentName.parse(second.name) == SegmentName(HOST, 42, "beef", 9)
    assert writer.rotate(fsync=True) is None


def test_torn_tail_at_every_cut_keeps_the_intact_records(tmp_path: Path) -> None:
    records = items(5)
    path = write_segment(tmp_path, records, pid=os.getpid())
    whole = path.read_bytes()
    last_frame = len(records[-1]) + _spool.FRAME_OVERHEAD
    for cut in range(1, last_frame):
        path.write_bytes(whole[:-cut])
        data = read_segment(path)
        assert data.valid
        assert data.items == records[:-1]
        assert data.ignored_bytes == last_frame - cut


def test_corrupt_crc_stops_reading_at_that_record(tmp_path: Path) -> None:
    records = items(5)
    path = write_segment(tmp_path, records, pid=os.getpid())
    raw = bytearray(path.read_bytes())
    frame = len(records[0]) + _spool.FRAME_OVERHEAD
    raw[len(MAGIC) + 2 * frame + _spool.FRAME_OVERHEAD] ^= 0xFF  # a payload byte of record 2
    path.write_bytes(bytes(raw))
    data = read_segment(path)
    assert data.items == records[:2]
    assert data.ignored_bytes == 3 * frame


def test_garbage_length_is_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / f"{HOST}-1-ab-1.spool"
    path.write_bytes(MAGIC + b"\xff\xff\xff\xff\x00\x00\x00\x00" + b"x" * 10)
    data = read_segment(path)
    assert data.valid and data.items == [] and data.ignored_bytes == 18


def test_foreign_file_is_invalid_and_short_header_is_empty(tmp_path: Path) -> None:
    foreign = tmp_path / "a.spool"
    foreign.write_bytes(b"not a spool file at all")
    assert not read_segment(foreign).valid
    short = tmp_path / "b.spool"
    short.write_bytes(MAGIC[:3])
    data = read_segment(short)
    assert data.valid and data.items == []


def test_claim_takes_dead_writers_and_orders_oldest_writer_first(tmp_path: Path) -> None:
    dead = dead_pid()
    newer = write_segment(tmp_path, items(2, "new"), pid=dead, token="bbbb", seq=1)
    old_b = write_segment(tmp_path, items(2, "old-b"), pid=dead, token="aaaa", seq=10)
    old_a = write_segment(tmp_path, items(2, "old-a"), pid=dead, token="aaaa", seq=3)
    now = time.time()
    os.utime(newer, (now - 10, now - 10))
    os.utime(old_b, (now - 100, now - 100))
    os.utime(old_a, (now - 50, now - 50))
    claimed = claim_orphans(tmp_path, host=HOST, pid=os.getpid(), token="cccc")
    assert [p.name.split(".claimed-")[0] for p in claimed] == [old_a.name, old_b.name, newer.name]
    assert all(p.name.endswith(f".claimed-{HOST}-{os.getpid()}-cccc") for p in claimed)
    assert not old_a.exists()
    assert read_segment(claimed[0]).items == items(2, "old-a")


def test_claim_leaves_a_live_process_alone(tmp_path: Path) -> None:
    parent = os.getppid()  # alive, and started before the file was written
    path = write_segment(tmp_path, items(3), pid=parent)
    assert claim_orphans(tmp_path, host=HOST, pid=os.getpid(), token="cccc") == []
    assert path.exists()


def test_claim_detects_a_reused_pid(tmp_path: Path) -> None:
    path = write_segment(tmp_path, items(3), pid=os.getppid())
    long_ago = time.time() - 10 * 24 * 3600  # written before that process started
    os.utime(path, (long_ago, long_ago))
    assert len(claim_orphans(tmp_path, host=HOST, pid=os.getpid(), token="cccc")) == 1


def test_claim_uses_tokens_for_this_process(tmp_path: Path) -> None:
    live = Spool(tmp_path, max_bytes=1 << 20, label="t")
    try:
        assert live.append(b"x", 1) is None
        live.writer.rotate(fsync=True)
        stale = write_segment(tmp_path, items(1), pid=os.getpid(), token="dead0")
        claimed = claim_orphans(tmp_path, host=HOST, pid=os.getpid(), token="cccc")
        assert [p.name.split(".claimed-")[0] for p in claimed] == [stale.name]
    finally:
        live.release()
    # once released (engine closed), another engine of this process may take it; and
    # "cccc" was never a live token here, so its claim counts as abandoned
    again = claim_orphans(tmp_path, host=HOST, pid=os.getpid(), token="dddd")
    assert len(again) == 2


def test_other_host_files_wait_until_stale(tmp_path: Path) -> None:
    path = write_segment(tmp_path, items(2), pid=1, host="some-other-host")
    assert claim_orphans(tmp_path, host=HOST, pid=os.getpid(), token="cccc") == []
    old = time.time() - FOREIGN_HOST_STALE_S - 60
    os.utime(path, (old, old))
    assert len(claim_orphans(tmp_path, host=HOST, pid=os.getpid(), token="cccc")) == 1


def test_a_dead_claimer_can_be_reclaimed_a_live_one_not(tmp_path: Path) -> None:
    dead = dead_pid()
    path = write_segment(tmp_path, items(2), pid=dead)
    (first,) = claim_orphans(tmp_path, host=HOST, pid=dead, token="aaaa")  # as if by `dead`
    assert first.exists() and not path.exists()
    (second,) = claim_orphans(tmp_path, host=HOST, pid=os.getpid(), token="bbbb")
    _spool._live_tokens.add("bbbb")
    try:
        assert claim_orphans(tmp_path, host=HOST, pid=os.getpid(), token="cccc") == []
    finally:
        _spool._live_tokens.discard("bbbb")
    assert read_segment(second).items == items(2)


def test_concurrent_claims_never_share_a_file(tmp_path: Path) -> None:
    dead = dead_pid()
    for n in range(40):
        write_segment(tmp_path, [f"{n}".encode()], pid=dead, token=f"{n:04x}")
    results: list[list[Path]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)
    tokens = [f"c{slot}" for slot in range(4)]
    _spool._live_tokens.update(tokens)  # as open engines' tokens are

    def claim(slot: int) -> None:
        barrier.wait()
        results[slot] = claim_orphans(tmp_path, host=HOST, pid=os.getpid(), token=f"c{slot}")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    _spool._live_tokens.difference_update(tokens)
    names = Counter(p.name.split(".claimed-")[0] for r in results for p in r)
    assert len(names) == 40 and set(names.values()) == {1}


def test_spool_cap_counts_every_writer_and_rotates(tmp_path: Path) -> None:
    other = write_segment(tmp_path, [b"z" * 500], pid=dead_pid())
    other_size = other.stat().st_size
    spool = Spool(tmp_path, max_bytes=other_size + 300, label="cap")
    try:
        results = [spool.append(b"y" * 40, seq) for seq in range(1, 20)]
        written = results.count(None)
        assert results[written:] == ["spool_full"] * (19 - written)
        assert written == (300 - len(MAGIC)) // (40 + _spool.FRAME_OVERHEAD)
        spool.rotate(fsync=True)
        (segment,) = spool.own
        assert len(read_segment(segment).items) == written
        spool.remove(segment)
        assert not segment.exists()
        assert spool.append(b"y" * 40, 100) is None  # room again
    finally:
        spool.writer.rotate(fsync=False)
        spool.release()


def test_spool_rotates_segments_by_size(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 30, label="rot")
    try:
        assert spool.segment_bytes == 4 * 1024 * 1024
        spool.segment_bytes = 1000  # small segments, for the test
        for seq in range(1, 101):
            assert spool.append(b"q" * 92, seq) is None
        assert len(spool.own) == 9  # 10 records of 100 bytes fill a 1000-byte segment
        spool.rotate(fsync=False)
        got = [item for path in spool.own for item in read_segment(path).items]
        assert len(got) == 100
    finally:
        spool.release()


def test_segments_are_compressible_once_the_directory_holds_a_quarter_of_its_cap(
    tmp_path: Path,
) -> None:
    """Compressing costs the program CPU; most outages are short: a closed segment
    is offered for compressing only once the directory holds COMPRESS_FROM of its
    cap (other writers' files count too), the oldest first."""
    spool = Spool(tmp_path / "own", max_bytes=400_000, label="lazy")
    try:
        assert _spool.COMPRESS_FROM == 0.25
        spool.segment_bytes = 20_000
        seq = 0
        while spool.writer.size + sum(p.stat().st_size for p in spool.own) < 99_000 - 1100:
            seq += 1
            assert spool.append(b"c" * 1000, seq) is None
        assert len(spool.own) >= 4 and spool.compressible() is None  # under 100,000
        other = write_segment(tmp_path / "own", items(10), pid=dead_pid(), token="0dd")
        with other.open("ab") as padding:  # another writer's file: the directory's usage
            padding.write(b"\0" * 5000)
        spool.rotate(fsync=False)  # a rotation rescans the directory
        assert spool.compressible() == spool.own[0]
    finally:
        spool.release()


def test_unwritable_directory_reports_spool_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    spool = Spool(blocker / "spool", max_bytes=1 << 20, label="err")
    try:
        assert spool.append(b"x", 1) == "spool_error"
        assert spool.append_many([b"x" * 10] * 5, 2) == 0  # a batch: none of it taken
    finally:
        spool.release()


@pytest.mark.parametrize("name", ["x.spool.corrupt", "README", "a-b.spool"])
def test_non_segments_are_ignored_by_claims(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"junk")
    assert claim_orphans(tmp_path, host=HOST, pid=os.getpid(), token="cccc") == []


# ------------------------------------------------------- compressed segments
def json_lines(n: int, seed: int = 7) -> list[bytes]:
    """Realistic ~600-byte JSON log lines (timestamps, ids, numbers vary)."""
    import json
    import random

    rng = random.Random(seed)
    loggers = ["acquisition.camera", "rig.stage", "pipeline.upload", "behavior.task"]
    messages = [
        "frame batch written to disk",
        "stage moved to target position",
        "upload chunk acknowledged by the server",
        "trial ended; reward delivered",
    ]
    out = []
    for i in range(n):
        record = {
            "timestamp": f"2026-02-09T21:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}Z",
            "level": rng.choice(["INFO", "INFO", "INFO", "DEBUG", "WARNING"]),
            "logger": rng.choice(loggers),
            "message": rng.choice(messages) + f" (n={rng.randrange(10**6)})",
            "hostname": "rig-12-a.local",
            "process": 43121,
            "thread": "MainThread",
            "request_id": f"{rng.getrandbits(128):032x}",
            "subject_id": str(600000 + rng.randrange(1000)),
            "session": "behavior_684321_2026-02-09_20-55-12",
            "duration_ms": round(rng.uniform(0, 500), 3),
            "position_um": [round(rng.uniform(-5000, 5000), 2) for _ in range(3)],
            "module": "aind_rig.control.loop",
            "function": "run_once",
            "line": rng.randrange(40, 900),
            "extra": {
                "frame_index": i * 3 + rng.randrange(3),
                "exposure_ms": round(rng.uniform(1, 20), 4),
                "camera_serial": f"CAM-{rng.randrange(10**8):08d}",
                "temperature_c": round(rng.gauss(35, 2), 3),
            },
        }
        out.append(json.dumps(record).encode())
    return out


def test_a_compressed_segment_reads_back_every_record_and_is_smaller(tmp_path: Path) -> None:
    from aind_log_utils._delivery._compress import commit, compress_segment

    lines = json_lines(2000)
    raw = write_segment(tmp_path, lines, pid=dead_pid())
    copy = compress_segment(raw)
    assert copy is not None and copy.tmp.exists() and not copy.target.exists()
    commit(copy)
    assert not raw.exists() and not copy.tmp.exists()
    assert copy.target.name == raw.name + "z"
    assert copy.target.read_bytes().startswith(_spool.ZMAGIC)
    assert copy.size < copy.raw_size / 3  # level 1 on JSON lines
    data = read_segment(copy.target)
    assert data.valid and data.items == lines and data.ignored_bytes == 0
    name = SegmentName.parse(copy.target.name)
    assert name is not None and name.compressed and name.filename == copy.target.name


def test_a_compressed_torn_tail_reads_as_the_raw_one_and_noise_is_not_compressed(
    tmp_path: Path,
) -> None:
    from aind_log_utils._delivery._compress import commit, compress_segment

    lines = json_lines(50)
    raw = write_segment(tmp_path, lines, pid=dead_pid())
    with raw.open("r+b") as f:
        f.truncate(raw.stat().st_size - 5)
    before = read_segment(raw)
    copy = compress_segment(raw)
    assert copy is not None
    commit(copy)
    after = read_segment(copy.target)
    assert after.items == before.items == lines[:-1]
    assert after.ignored_bytes == before.ignored_bytes > 0  # the torn frame, copied as it was
    noise = write_segment(tmp_path, [os.urandom(500) for _ in range(20)], pid=1, token="dd")
    assert compress_segment(noise) is None and noise.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("isal", [True, False], ids=["isal", "zlib"])
def test_deflate_makes_a_zlib_stream_with_or_without_isal(isal: bool) -> None:
    import zlib

    from aind_log_utils._delivery._compress import deflate
    from aind_log_utils._gzip import ISAL

    if isal and ISAL is None:
        pytest.skip("no ISA-L wheel on this platform")
    data = b"".join(json_lines(300))
    blob = deflate(data, ISAL if isal else None)
    assert zlib.decompress(blob) == data and len(blob) < len(data) / 3


def test_a_damaged_compressed_segment_keeps_its_intact_prefix(tmp_path: Path) -> None:
    from aind_log_utils._delivery._compress import commit, compress_segment

    lines = json_lines(3000)
    raw = write_segment(tmp_path, lines, pid=dead_pid())
    copy = compress_segment(raw)
    assert copy is not None
    commit(copy)
    blob = copy.target.read_bytes()
    copy.target.write_bytes(blob[: len(blob) // 2])
    data = read_segment(copy.target)
    assert data.valid and data.ignored_bytes > 0
    assert 0 < len(data.items) < len(lines) and data.items == lines[: len(data.items)]


@pytest.mark.parametrize("step", ["writing", "written", "renamed", "done"])
def test_a_crash_at_any_step_of_compressing_leaves_one_copy_of_each_record(
    tmp_path: Path, step: str
) -> None:
    from aind_log_utils._delivery._compress import compress_segment

    lines = json_lines(300)
    pid = dead_pid()
    raw = write_segment(tmp_path, lines, pid=pid, token="aa01")
    later = write_segment(tmp_path, [b"later"], pid=pid, token="aa01", seq=1000)
    copy = compress_segment(raw)
    assert copy is not None
    if step == "writing":  # killed while writing the temp file: a torn copy
        copy.tmp.write_bytes(copy.tmp.read_bytes()[:100])
    elif step in ("renamed", "done"):
        os.replace(copy.tmp, copy.target)
        if step == "done":
            raw.unlink()
    claimed = claim_orphans(tmp_path, host=HOST, pid=os.getpid(), token="cccc")
    assert len(claimed) == 2
    got = [item for path in claimed for item in read_segment(path).items]
    assert got == [*lines, b"later"]  # each record once, in order
    assert claimed[1].name.startswith(later.name)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(p.name for p in claimed)  # no temp file, no second copy
    for path in claimed:
        path.unlink()
    assert claim_orphans(tmp_path, host=HOST, pid=os.getpid(), token="dddd") == []


def test_a_live_writer_s_temp_and_raw_copies_are_left_alone(tmp_path: Path) -> None:
    from aind_log_utils._delivery._compress import compress_segment

    raw = write_segment(tmp_path, json_lines(50), pid=os.getpid(), token="ee01")
    copy = compress_segment(raw)
    assert copy is not None
    _spool._live_tokens.add("ee01")
    try:
        assert claim_orphans(tmp_path, host=HOST, pid=os.getpid(), token="cccc") == []
        assert raw.exists() and copy.tmp.exists()
    finally:
        _spool._live_tokens.discard("ee01")


def test_spool_puts_a_compressed_copy_in_place_and_counts_its_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aind_log_utils._delivery._compress import compress_segment
    from aind_log_utils._delivery._usage import directory_usage

    monkeypatch.setattr(_spool, "COMPRESS_FROM", 0.0)  # every closed segment, at once
    spool = Spool(tmp_path, max_bytes=1 << 20, label="z")
    try:
        spool.segment_bytes = 64 * 1024
        lines = json_lines(300)
        for seq, line in enumerate(lines, 1):
            assert spool.append(line, seq) is None
        spool.rotate(fsync=False)
        raw_total = directory_usage(tmp_path)
        while (path := spool.compressible()) is not None:
            copy = compress_segment(path)
            assert copy is not None and spool.put_compressed(copy)
        assert all(p.name.endswith(".spoolz") for p in spool.own)
        assert directory_usage(tmp_path) < raw_total / 3
        assert [i for p in spool.own for i in read_segment(p).items] == lines
    finally:
        spool.release()


def test_compression_ratio_of_json_lines(tmp_path: Path) -> None:
    import zlib

    body = b"".join(json_lines(5000))
    ratio = len(body) / len(zlib.compress(body, 1))
    print(f"spool compression ratio (zlib 1, ~600-byte JSON lines): {ratio:.1f}x")
    assert ratio > 3


def test_writer_writes_gathered_frames_once_the_oldest_is_due(tmp_path: Path) -> None:
    """The next append writes what waits once the oldest frame has waited
    SPOOL_WRITE_S, so a program that keeps logging while its worker is busy (a send
    in flight) never has more than that in memory."""
    writer = SpoolWriter(tmp_path, host=HOST, pid=42, token="d0e")
    writer.append(b"old", 1)
    writer.append(b"newer", 2)  # not due yet: gathered
    path = writer.path
    assert path is not None and read_segment(path).items == []
    writer._write_by = time.monotonic() - 0.001  # the oldest has waited SPOOL_WRITE_S
    writer.append(b"newest", 3)
    assert read_segment(path).items == [b"old", b"newer"] and writer.pending
    assert writer._write_by > time.monotonic()  # the clock starts again for "newest"
    writer.rotate(fsync=False)
    assert read_segment(path).items == [b"old", b"newer", b"newest"]


def test_writer_gathers_64_kib_writes_on_write_pending_and_rotate_never_after_abandon(
    tmp_path: Path,
) -> None:
    """Frames wait in memory until 64 KiB, write_pending, sync or rotate; abandon (a
    forked child) drops them instead of writing them."""
    writer = SpoolWriter(tmp_path, host=HOST, pid=42, token="cafe")
    writer.append(b"first", 1)
    path = writer.path
    assert path is not None and writer.pending
    assert path.stat().st_size == 0  # nothing written yet, not even the magic
    writer.write_pending()
    assert read_segment(path).items == [b"first"] and not writer.pending
    big = b"x" * 40_000
    writer.append(big, 2)
    assert read_segment(path).items == [b"first"]
    writer.append(big, 3)  # would pass 64 KiB: the older frame is written, this one waits
    assert read_segment(path).items == [b"first", big]
    writer.append(b"last", 4)
    assert writer.rotate(fsync=False) == path
    assert read_segment(path).items == [b"first", big, big, b"last"]
    writer.append(b"parent's", 5)
    second = writer.path
    assert second is not None and second != path
    writer.abandon()
    assert second.stat().st_size == 0 and not writer.pending
