"""Spool segments: their names, their framing, writing them and reading them back.

Layout: one directory per sink, holding *segments*. A segment is written by exactly
one engine of one process and is named ``<host>-<pid>-<token>-<seq>.spool``
(``token``: random hex, new for every engine and after every fork; ``seq``: the
engine's submission number of the segment's first item, zero-padded, so that the
segments of one writer sort in submission order). A segment starts with the 8-byte
magic ``AINDSPL1`` and then holds frames::

    4-byte big-endian length | 4-byte big-endian CRC32 of the payload | payload

A closed segment may be rewritten compressed (:mod:`._compress`) under the same
name with the suffix ``.spoolz``: the magic ``AINDSPZ1``, then one zlib stream of
the raw segment's frames. :func:`read_segment` reads both kinds; where both copies
of a segment exist (a crash between the two steps of the rewrite), the compressed
one is the one to replay and the raw one is deleted (see :mod:`._claims`).

Frames are gathered in memory and written 64 KiB at a time (one system call per
record made a spooling program slower by a tenth), or once the oldest has waited
0.1 s (:data:`SPOOL_WRITE_S`): by the next append, or by the engine's worker while
it waits (out a backoff, or for a batch); flush, close and every segment rotation
write it all. A SIGKILL therefore loses at most the newest 0.1 s of spooled
records, never more than 64 KiB of them (only a program that goes quiet while a
send is in flight keeps its last ones in memory until that send ends): less than
the in-memory queue holds while the server is up. A frame torn by a crash or a full disk fails
its length or CRC check and the reader stops there, keeping every intact record
before it. A segment closed on the caller's thread is fsynced by the engine's
worker soon after (never on the caller); every segment is fsynced when the engine
flushes or closes.

Which segments a process may replay is :mod:`._claims`' job; how much room they take,
:mod:`._usage`'s.
"""

from __future__ import annotations

import os
import re
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from .._gzip import ISAL

__all__ = [
    "FRAME_OVERHEAD",
    "MAGIC",
    "MAX_RECORD_BYTES",
    "SPOOL_WRITE_S",
    "ZMAGIC",
    "SegmentData",
    "SegmentName",
    "SpoolWriter",
    "parse_frames",
    "read_segment",
    "write_all",
]

MAGIC = b"AINDSPL1"
#: The magic of a compressed segment (``.spoolz``): a zlib stream of frames follows.
ZMAGIC = b"AINDSPZ1"
_HEADER = struct.Struct(">II")
#: Bytes added to each record on disk (length + CRC32).
FRAME_OVERHEAD = _HEADER.size
#: A length above this is garbage (a torn or foreign file), never a record.
MAX_RECORD_BYTES = 64 * 1024 * 1024

_SUFFIX = ".spool"
_SEGMENT_RE = re.compile(
    r"^(?P<host>.+)-(?P<pid>\d+)-(?P<token>[0-9a-f]+)-(?P<seq>\d+)\.spool(?P<z>z?)$"
)
_INFLATE_CHUNK = 256 * 1024


@dataclass(frozen=True)
class SegmentName:
    """The parts of a segment's file name.

    Attributes:
        host: the writer's sanitised host name.
        pid: the writer's process id.
        token: the writer engine's random token.
        seq: the submission number of the segment's first item.
        compressed: the compressed copy (``.spoolz``) rather than the raw segment.
    """

    host: str
    pid: int
    token: str
    seq: int
    compressed: bool = False

    @property
    def filename(self) -> str:
        """The file name, ``<host>-<pid>-<token>-<seq>.spool`` (or ``.spoolz``)."""
        suffix = _SUFFIX + ("z" if self.compressed else "")
        return f"{self.host}-{self.pid}-{self.token}-{self.seq:016d}{suffix}"

    @property
    def key(self) -> tuple[str, int, str, int]:
        """What the raw segment and its compressed copy have in common."""
        return self.host, self.pid, self.token, self.seq

    @classmethod
    def parse(cls, filename: str) -> SegmentName | None:
        """Parse a segment file name (without any claim suffix).

        Args:
            filename: the base name.

        Returns:
            The parts, or None when the name is not a segment's.
        """
        m = _SEGMENT_RE.match(filename)
        if m is None:
            return None
        return cls(m["host"], int(m["pid"]), m["token"], int(m["seq"]), bool(m["z"]))


#: The frames' CRC-32: ISA-L's where installed (four times faster on a 1 kB record
#: than zlib's), the same value.
_crc32 = zlib.crc32 if ISAL is None else ISAL.crc32
#: Gathered frames are written once they would pass this much.
_PENDING_BYTES = 64 * 1024
#: Or once the oldest has waited this long: by the next append, or by the engine's
#: worker while it waits. The most a SIGKILL can take from the spool.
SPOOL_WRITE_S = 0.1


def _whole_frames(data: bytes | bytearray, end: int) -> int:
    """How many frames of ``data`` (after the magic, if it starts with it) end by ``end``."""
    pos, count = (len(MAGIC) if data.startswith(MAGIC) else 0), 0
    while pos + FRAME_OVERHEAD <= end:
        pos += FRAME_OVERHEAD + _HEADER.unpack_from(data, pos)[0]
        if pos > end:
            break
        count += 1
    return count


def write_all(fd: int, data: bytes | bytearray) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class SpoolWriter:
    """Appends framed records to one writer's segments in a directory.

    Not thread-safe: the engine calls it under its own lock. Frames are gathered in
    memory and written 64 KiB at a time (see the module docstring); after a fork the
    child drops what the parent gathered and closes the descriptor (:meth:`abandon`),
    so it never writes the parent's data twice. Records of a gathered write that
    failed are counted in :attr:`lost` (the engine counts them dropped).

    Args:
        directory: the spool directory (created on the first write).
        host: this host's sanitised name.
        pid: this process's id.
        token: this writer's random token.
        gather: gather frames and write them 64 KiB at a time (default); False
            writes each frame at once.
    """

    def __init__(
        self, directory: Path, *, host: str, pid: int, token: str, gather: bool = True
    ) -> None:
        self.directory = directory
        self._host, self._pid, self._token = host, pid, token
        self._fd: int | None = None
        #: The open segment, or None.
        self.path: Path | None = None
        #: Bytes in the open segment (0 when none is open).
        self.size = 0
        #: Records in the open segment.
        self.records = 0
        #: Frames gathered, not yet written (None: every frame is written at once).
        self._pending: bytearray | None = bytearray() if gather else None
        self._pending_records = 0
        self._write_by = 0.0  # when the oldest gathered frame is due on disk
        #: Records whose gathered write failed (the engine takes and counts them).
        self.lost = 0
        #: Segments closed by a failed write, holding the records written whole
        #: before it: the spool queues them for replay (rotate returns its own).
        self.broken: list[Path] = []

    @property
    def pending(self) -> bool:
        """True when gathered frames wait to be written."""
        return bool(self._pending)

    def write_pending(self) -> None:
        """Write the gathered frames, if any.

        Raises:
            OSError: the file cannot be written: the segment is then closed, and its
                gathered records are added to :attr:`lost`.
        """
        pending = self._pending
        if pending and self._fd is not None:
            self._pending = bytearray()
            records, self._pending_records = self._pending_records, 0
            view, done = memoryview(pending), 0
            try:
                while done < len(pending):
                    done += os.write(self._fd, view[done:])
            except OSError:
                # The frames written whole before the failure are on disk, and read back.
                self.lost += records - _whole_frames(pending, done)
                self._close_broken()
                raise
            finally:
                view.release()

    def append(self, item: bytes, seq: int) -> int:
        """Append one record, opening a segment named after ``seq`` if none is open.

        Args:
            item: the record.
            seq: the item's submission number.

        Returns:
            The bytes added to the directory (frame, plus the magic for a new file).

        Raises:
            OSError: the directory or file cannot be written; the open segment is
                then closed, so a torn frame can only ever be a file's last one.
        """
        added = 0
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / SegmentName(self._host, self._pid, self._token, seq).filename
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_BINARY", 0)
            self._fd = os.open(path, flags, 0o600)
            self.path, self.size, self.records = path, 0, 0
            added = len(MAGIC)
            self._write(MAGIC)
        header = _HEADER.pack(len(item), _crc32(item))
        size = FRAME_OVERHEAD + len(item)
        pending = self._pending
        if pending is None:
            self._write(header + item)
        else:
            if pending and (
                len(pending) + size > _PENDING_BYTES or time.monotonic() >= self._write_by
            ):
                # The older frames first: should that fail, this one is not taken.
                self.write_pending()
                pending = self._pending
                assert pending is not None
            if not pending:  # the clock starts with the oldest frame
                self._write_by = time.monotonic() + SPOOL_WRITE_S
            pending += header  # two appends: the record is copied once
            pending += item
            self.size += size
            self._pending_records += 1
        self.records += 1
        return added + size

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        if self._pending is not None:  # the magic of a new segment: its frame follows
            if not self._pending:
                self._write_by = time.monotonic() + SPOOL_WRITE_S
            self._pending += data
            self.size += len(data)
            return
        try:
            written = os.write(self._fd, data)  # one call, as good as always
            if written != len(data):
                write_all(self._fd, data[written:])
        except OSError:
            self._close_broken()
            raise
        self.size += len(data)

    def sync(self) -> None:
        """Fsync the open segment, if any (errors are ignored: best effort)."""
        if self._fd is not None:
            try:
                self.write_pending()
                if self._fd is not None:
                    os.fsync(self._fd)
            except OSError:
                pass

    def rotate(self, *, fsync: bool) -> Path | None:
        """Close the open segment; the next append starts a new one.

        Args:
            fsync: fsync the segment before closing it.

        Returns:
            The closed segment's path, or None when none was open.
        """
        if self._fd is None:
            return None
        path = self.path
        if fsync:
            self.sync()
        else:
            try:
                self.write_pending()
            except OSError:
                pass  # closed, and its lost records counted
        if self.broken and self.broken[-1] == path:
            self.broken.pop()  # returned here instead
        self._close_fd()
        return path

    def _close_broken(self) -> None:
        """Close the segment after a failed write; keep it in :attr:`broken`."""
        if self.path is not None:
            self.broken.append(self.path)
        self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd, self.path, self.size, self.records = None, None, 0, 0

    def abandon(self) -> None:
        """Close the descriptor without writing (in a forked child).

        What the parent had gathered is the parent's to write.
        """
        if self._pending is not None:
            self._pending = bytearray()
            self._pending_records = 0
        self._close_fd()


@dataclass(frozen=True)
class SegmentData:
    """What :func:`read_segment` found in a file.

    Attributes:
        items: the intact records, in file order.
        size: the file's size in bytes.
        ignored_bytes: bytes after the last intact record (a torn tail).
        valid: False when the file does not start with the spool magic.
    """

    items: list[bytes]
    size: int
    ignored_bytes: int
    valid: bool


def parse_frames(data: bytes, pos: int) -> tuple[list[bytes], int]:
    """Decode the intact frames of ``data`` from ``pos``, stopping at the first bad one.

    Args:
        data: framed records.
        pos: where the first frame starts.

    Returns:
        The records, and where the intact frames end.
    """
    items: list[bytes] = []
    end = len(data)
    while pos + FRAME_OVERHEAD <= end:
        length, crc = _HEADER.unpack_from(data, pos)
        stop = pos + FRAME_OVERHEAD + length
        if length > MAX_RECORD_BYTES or stop > end:
            break
        payload = data[pos + FRAME_OVERHEAD : stop]
        if _crc32(payload) != crc:
            break
        items.append(payload)
        pos = stop
    return items, pos


def _inflate(data: bytes) -> tuple[bytes, bool]:
    """Decompress a zlib stream as far as it is intact; tell whether it was whole."""
    inflater = zlib.decompressobj()
    out: list[bytes] = []
    try:
        for start in range(0, len(data), _INFLATE_CHUNK):
            out.append(inflater.decompress(data[start : start + _INFLATE_CHUNK]))
            if inflater.eof:
                break
        out.append(inflater.flush())
    except zlib.error:
        return b"".join(out), False
    return b"".join(out), inflater.eof and not inflater.unused_data


def read_segment(path: Path) -> SegmentData:
    """Read every intact record of a segment, raw or compressed, up to the first bad frame.

    Args:
        path: the segment file.

    Returns:
        The records and what was ignored (for a compressed segment: the uncompressed
        bytes after the last intact record, plus 1 when the zlib stream is damaged).

    Raises:
        OSError: the file cannot be read.
    """
    data = path.read_bytes()
    if len(data) < len(MAGIC):  # created, killed before the magic was written
        return SegmentData([], len(data), len(data), MAGIC.startswith(data))
    if data.startswith(ZMAGIC):
        body, whole = _inflate(data[len(ZMAGIC) :])
        items, pos = parse_frames(body, 0)
        return SegmentData(items, len(data), len(body) - pos + (not whole), True)
    if not data.startswith(MAGIC):
        return SegmentData([], len(data), len(data), False)
    items, pos = parse_frames(data, len(MAGIC))
    return SegmentData(items, len(data), len(data) - pos, True)
