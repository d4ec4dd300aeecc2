"""Compressing closed spool segments, so that a long outage fits in the spool's cap.

The caller appends raw frames to the open segment (gathered in memory and written
64 KiB at a time, at least every 0.1 s: see :mod:`._writer`). Once the directory
holds a quarter of its cap (:data:`~._spool.COMPRESS_FROM`), a segment that is
closed and waits to be replayed is rewritten by the engine's worker, idle during a
backoff, as ``<same name>.spoolz`` (magic ``AINDSPZ1``, then the raw frames as one
zlib stream, level 1: JSON log lines shrink 5-20 times; ISA-L makes it where its
wheel is installed, about 6 times faster than zlib's level 1 and smaller). The
frames are copied as they are, not parsed: a reader stops at the first frame that
is torn or fails its CRC, in the compressed copy exactly as in the raw segment, and
the worker's time spent holding the GIL is a logging thread's time. The rewrite
never loses or duplicates a record, wherever a crash stops it:

1. :func:`compress_segment` writes ``<name>.spoolz.tmp`` and fsyncs it. A crash
   here leaves the raw segment (still the one to replay) and a temp file, which the
   next claimer deletes (:mod:`._claims`).
2. :func:`commit` renames the temp file to ``<name>.spoolz`` (atomic), fsyncs the
   directory and deletes the raw segment. A crash between the rename and the delete
   leaves both copies, complete; readers then replay the compressed one and delete
   the raw one: a replay never sees both as pending.

The engine commits under its lock and only while it is open, so no other engine of
this process can claim the raw segment in between (another process claims only the
files of a dead one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .._fsync import fsync_path
from .._gzip import ISAL
from ._segment import MAGIC, ZMAGIC, SegmentName, write_all

__all__ = ["LEVEL", "TMP_SUFFIX", "Compressed", "commit", "compress_segment", "deflate", "discard"]

#: zlib level: the fastest; JSON log lines still shrink 5-10 times.
LEVEL = 1
#: The suffix of a compressed copy being written.
TMP_SUFFIX = ".tmp"
#: A compressed copy must save at least this fraction of the raw size to be kept.
_MIN_SAVING = 0.1


@dataclass(frozen=True)
class Compressed:
    """A compressed copy written and fsynced, not yet put in the raw segment's place.

    Attributes:
        raw: the raw segment.
        tmp: the compressed copy, under its temporary name.
        target: the compressed segment's name.
        raw_size: the raw segment's size in bytes.
        size: the compressed copy's size in bytes.
    """

    raw: Path
    tmp: Path
    target: Path
    raw_size: int
    size: int


def deflate(data: bytes, isal: ModuleType | None = ISAL) -> bytes:
    """One zlib stream of ``data`` at the fastest level (ISA-L's where installed, else zlib's)."""
    if isal is not None:
        return bytes(isal.compress(data, 1))
    return zlib.compress(data, LEVEL)


def compress_segment(raw: Path) -> Compressed | None:
    """Write the compressed copy of a closed raw segment to a temp file, fsynced.

    The frames are copied as they are: a torn tail or a damaged frame stops a
    reader of the copy where it stops a reader of the raw segment. The copy keeps
    the raw segment's mtime: claims order writers by it.

    Args:
        raw: a closed segment (``.spool``) that no one appends to any more.

    Returns:
        The copy, or None when compressing does not pay off or ``raw`` is no raw
        segment (nothing is left on disk then).

    Raises:
        OSError: reading or writing failed (the temp file is removed).
    """
    name = SegmentName.parse(raw.name)
    if name is None or name.compressed:
        return None
    stat = raw.stat()
    data = raw.read_bytes()
    if not data.startswith(MAGIC):
        return None
    blob = ZMAGIC + deflate(data[len(MAGIC) :])
    if len(blob) > len(data) * (1 - _MIN_SAVING):
        return None
    target = raw.with_name(dataclasses.replace(name, compressed=True).filename)
    tmp = target.with_name(target.name + TMP_SUFFIX)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
        try:
            write_all(fd, blob)
            os.utime(tmp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return Compressed(raw, tmp, target, len(data), len(blob))


def commit(copy: Compressed) -> None:
    """Put the compressed copy in the raw segment's place: rename it, delete the raw one.

    Args:
        copy: what :func:`compress_segment` wrote.

    Raises:
        OSError: the rename or the delete failed; the raw segment is then the only
            copy left (the compressed one is removed).
    """
    try:
        os.replace(copy.tmp, copy.target)
        fsync_path(copy.target.parent, os.O_RDONLY)  # the copy is durable before the raw one goes
        os.unlink(copy.raw)
    except OSError:
        discard(copy)
        with contextlib.suppress(OSError):
            copy.target.unlink()
        raise


def discard(copy: Compressed) -> None:
    """Remove a compressed copy that will not be committed.

    Args:
        copy: what :func:`compress_segment` wrote.
    """
    with contextlib.suppress(OSError):
        copy.tmp.unlink()
