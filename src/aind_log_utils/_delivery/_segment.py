"""Spool segments: their names, their framing, and reading them back.

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

A frame torn by a crash or a full disk fails its length or CRC check and the reader
stops there, keeping every intact record before it. Writing segments is
:mod:`._writer`'s job.

Which segments a process may replay is :mod:`._claims`' job; how much room they take,
:mod:`._usage`'s.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from .._gzip import ISAL

__all__ = [
    "FRAME_HEADER",
    "FRAME_OVERHEAD",
    "MAGIC",
    "MAX_RECORD_BYTES",
    "ZMAGIC",
    "SegmentData",
    "SegmentName",
    "crc32",
    "host_id",
    "parse_frames",
    "read_segment",
    "write_all",
]

MAGIC = b"AINDSPL1"
#: The magic of a compressed segment (``.spoolz``): a zlib stream of frames follows.
ZMAGIC = b"AINDSPZ1"
#: A frame's header: the record's length and its CRC-32, big-endian.
FRAME_HEADER = struct.Struct(">II")
#: Bytes added to each record on disk (length + CRC32).
FRAME_OVERHEAD = FRAME_HEADER.size
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
crc32 = zlib.crc32 if ISAL is None else ISAL.crc32


def write_all(fd: int, data: bytes | bytearray) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


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
        length, crc = FRAME_HEADER.unpack_from(data, pos)
        stop = pos + FRAME_OVERHEAD + length
        if length > MAX_RECORD_BYTES or stop > end:
            break
        payload = data[pos + FRAME_OVERHEAD : stop]
        if crc32(payload) != crc:
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


def host_id() -> str:
    """This host's name as segment names carry it: ``[A-Za-z0-9._-]`` only."""
    try:
        name = socket.gethostname()
    except OSError:
        name = ""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "localhost"
