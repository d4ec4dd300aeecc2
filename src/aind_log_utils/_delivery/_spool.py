"""The on-disk spool: where items wait when the server is away or the process exits.

:class:`Spool` is one engine's use of a spool directory: it appends to this writer's
segments (rotating them when big enough), keeps the directory under its cap, reads
segments back for replay and deletes them once delivered, and claims the files of
gone writers; it also puts the compressed copies of its closed segments in their
place (the engine's worker writes them while it waits out a backoff). The parts it
puts together are each in a module of their own: :mod:`._segment` (segment names,
framing, :func:`read_segment`), :mod:`._writer` (:class:`SpoolWriter`, gathering
frames and writing them), :mod:`._compress` (rewriting a
closed segment compressed, crash-safely), :mod:`._claims` (which files a process may
replay: :func:`claim_orphans`) and :mod:`._usage` (the room the directory's files
take). Their public names are importable from here too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from bisect import bisect_left
from collections import deque
from itertools import accumulate
from pathlib import Path

from .._diagnostics import diagnose
from .._fsync import fsync_files
from ._claims import FOREIGN_HOST_STALE_S, claim_orphans, live_tokens, split_name
from ._compress import Compressed, commit, discard
from ._segment import (
    FRAME_OVERHEAD,
    MAGIC,
    ZMAGIC,
    SegmentData,
    SegmentName,
    host_id,
    read_segment,
)
from ._transport import describe_error
from ._usage import SpoolUsage
from ._writer import PENDING_BYTES, SpoolWriter

__all__ = [
    "COMPRESS_FROM",
    "FOREIGN_HOST_STALE_S",
    "FRAME_OVERHEAD",
    "MAGIC",
    "ZMAGIC",
    "SegmentData",
    "SegmentName",
    "Spool",
    "SpoolWriter",
    "claim_orphans",
    "read_segment",
]

#: Records already taken from a segment being replayed, by segment (this process
#: only): a replay stopped midway resumes there, whatever the file is renamed to.
_taken: dict[tuple[str, int, str, int], int] = {}


def _segment_key(path: Path) -> tuple[str, int, str, int] | None:
    parts = split_name(path.name)
    if parts is None:
        return None
    name = parts[0]
    return name.host, name.pid, name.token, name.seq


#: Raw bytes at which a segment is closed (at most an eighth of the cap).
SEGMENT_BYTES = 4 * 1024 * 1024
#: Closed segments are compressed only once the directory holds this share of its
#: cap: most outages are short, and compressing a segment cost a program with a
#: thread-mode engine a fifth of its time per record (10 ms of CPU per 4 MiB
#: segment, beside the logging thread); a long outage is compressed well before
#: the cap (ISA-L deflates ~400 MB/s).
COMPRESS_FROM = 0.25
_RAW_SUFFIX = ".spool"

# The very set of :mod:`._claims`, under the name it had here (tests stand in for
# open engines by adding their tokens to it).
_live_tokens = live_tokens


class Spool:
    """One engine's use of a spool directory: its own segments, the cap, replay.

    Not thread-safe: the engine calls it under its own lock (except :meth:`read`
    and :meth:`claim_orphans`, which touch no shared state).

    Args:
        directory: the spool directory (created on the first write).
        max_bytes: the cap on all segments in the directory, every writer together.
        label: the engine's name, for diagnostics.
    """

    def __init__(self, directory: Path, *, max_bytes: int, label: str) -> None:
        self.directory, self.max_bytes, self.label = directory, max_bytes, label
        # Raw bytes per segment: small enough that closed segments get compressed
        # soon once COMPRESS_FROM is passed (the open one and the one being replayed
        # stay raw), big enough to keep the files few (a 60 s outage at 5 MB/s: ~75).
        self.segment_bytes = max(64 * 1024, min(SEGMENT_BYTES, max_bytes // 8))
        self.host, self.token = host_id(), secrets.token_hex(6)
        live_tokens.add(self.token)
        self.writer = SpoolWriter(directory, host=self.host, pid=os.getpid(), token=self.token)
        #: This writer's closed segments not yet replayed, oldest first.
        self.own: deque[Path] = deque()
        self._usage = SpoolUsage(directory)
        self._no_compress: set[Path] = set()  # compressing failed or does not pay
        self._unsynced: list[Path] = []  # closed by append, not fsynced yet

    def append(self, item: bytes, seq: int) -> str | None:
        """Append ``item``, rotating the segment when it is big enough.

        Args:
            item: the record.
            seq: its submission number.

        Returns:
            None when written, else why not: ``"spool_full"`` or ``"spool_error"``.
        """
        try:
            self._rotate_if_full()
            need = len(item) + FRAME_OVERHEAD + (0 if self.writer.path else len(MAGIC))
            if not self._usage.fits(need, self.max_bytes):
                return "spool_full"
            self._usage.add(self.writer.append(item, seq))
            return None
        except OSError as exc:
            self._write_failed(exc)
            return "spool_error"

    def append_many(self, items: list[bytes], seq: int) -> int:
        """Append records in order as :meth:`append` does each, a segment's worth at a time.

        Stops at the first record that would not fit under the cap, or at a failed
        write; the caller appends the rest one by one (:meth:`append` says why each
        one is not taken). Frames gathered past 64 KiB are written before returning.

        Args:
            items: the records, oldest first.
            seq: the first one's submission number.

        Returns:
            How many of ``items`` were taken (records of a gathered write that failed
            count as taken: the writer counts them in ``lost``).
        """
        writer, count = self.writer, len(items)
        # Frame bytes up to and including each record.
        ends = list(accumulate(len(item) + FRAME_OVERHEAD for item in items))
        done, before = 0, 0  # records taken, and their frame bytes
        try:
            while done < count:
                self._rotate_if_full()
                # As many as fill the segment, the one that reaches its size included.
                magic = 0 if writer.path else len(MAGIC)  # a new segment starts with it
                room = self.segment_bytes - writer.size - magic
                end = min(count, bisect_left(ends, before + room, done) + 1)
                need = ends[end - 1] - before + magic
                if not self._usage.fits(need, self.max_bytes):
                    return done
                self._usage.add(writer.append_many(items[done:end], seq + done))
                done, before = end, ends[end - 1]
        except OSError as exc:
            self._write_failed(exc)
            return done
        if writer.pending_bytes > PENDING_BYTES:
            self.write_pending()
        return done

    def _rotate_if_full(self) -> None:
        """Close the open segment once it holds ``segment_bytes``, for the worker to sync.

        No fsync here: appends run on the caller's thread, and an fsync can take as
        long as the disk likes. The worker syncs it (``sync_closed``).
        """
        if self.writer.size >= self.segment_bytes:
            path = self.rotate(fsync=False)
            if path is not None:
                self._unsynced.append(path)

    def write_pending(self) -> bool:
        """Write the frames the writer has gathered; False if that failed (said once).

        Returns:
            True when written (or nothing waited).
        """
        try:
            self.writer.write_pending()
            return True
        except OSError as exc:
            self._write_failed(exc)
            return False

    def _write_failed(self, exc: OSError) -> None:
        self._adopt_broken()
        diagnose(
            f"{self.label}:spool:write",
            f"{self.label}: cannot write the spool in {self.directory}: {describe_error(exc)}",
        )

    def rotate(self, *, fsync: bool) -> Path | None:
        """Close the open segment and queue it for replay by this writer.

        Args:
            fsync: fsync it first.

        Returns:
            The closed segment, or None when none was open.
        """
        self._adopt_broken()
        path = self.writer.rotate(fsync=fsync)
        if path is not None:
            self.own.append(path)
            self._usage.forget()  # rescan: other processes write here too
        return path

    def _adopt_broken(self) -> None:
        """Queue the segments a failed write closed (oldest first), for replay here.

        The records written whole before the failure are in them.
        """
        broken = self.writer.broken
        if broken:
            self.own.extend(broken)
            broken.clear()
            self._usage.forget()

    def take_unsynced(self) -> list[Path]:
        """Return (and forget) the segments :meth:`append` closed without an fsync.

        Returns:
            Their paths, for :func:`~.._fsync.fsync_files` (outside the engine's lock).
        """
        paths, self._unsynced = self._unsynced, []
        return paths

    def read(self, path: Path) -> list[bytes] | None:
        """Read a segment's intact records, reporting a torn tail or a foreign file.

        Args:
            path: the segment.

        Returns:
            The records, or None when the file could not be read (keep it).
        """
        try:
            data = read_segment(path)
        except OSError as exc:
            diagnose(f"{self.label}:spool:read", f"{self.label}: {describe_error(exc)}")
            return None
        if not data.valid:
            with contextlib.suppress(OSError):
                os.replace(path, path.with_name(path.name + ".corrupt"))
            diagnose(
                f"{self.label}:spool:corrupt",
                f"{self.label}: {path} is not a spool file; renamed *.corrupt",
            )
            return None
        if data.ignored_bytes:
            diagnose(
                f"{self.label}:spool:torn",
                f"{self.label}: ignored a torn tail of {data.ignored_bytes} bytes in {path.name}",
            )
        return data.items

    def taken(self, path: Path) -> int:
        """Return how many of a segment's records this process has already taken.

        Args:
            path: the segment (any claim of it).

        Returns:
            The number of leading records to skip on replay (0 if none).
        """
        key = _segment_key(path)
        return 0 if key is None else _taken.get(key, 0)

    def mark_taken(self, path: Path, count: int) -> None:
        """Remember that the first ``count`` records of a segment were taken.

        Args:
            path: the segment.
            count: the records taken so far.
        """
        key = _segment_key(path)
        if key is not None:
            _taken[key] = count

    def remove(self, path: Path) -> None:
        """Delete a segment whose records were all taken.

        Args:
            path: the segment.
        """
        key = _segment_key(path)
        if key is not None:
            _taken.pop(key, None)
        self._no_compress.discard(path)
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            return
        self._usage.remove(size)

    def compressible(self) -> Path | None:
        """Return this writer's oldest closed raw segment worth compressing, if any.

        None while the directory holds less than :data:`COMPRESS_FROM` of its cap.

        Returns:
            The segment, or None.
        """
        if self._usage.estimate() < self.max_bytes * COMPRESS_FROM:
            return None
        for path in self.own:
            if path.name.endswith(_RAW_SUFFIX) and path not in self._no_compress:
                return path
        return None

    def skip_compress(self, path: Path) -> None:
        """Never try to compress ``path`` again (it failed, or does not pay off).

        Args:
            path: the raw segment.
        """
        self._no_compress.add(path)

    def put_compressed(self, copy: Compressed) -> bool:
        """Put a compressed copy in its raw segment's place, if that is still queued.

        Args:
            copy: the copy, written and fsynced.

        Returns:
            True when the copy replaced the raw segment (in :attr:`own` too).
        """
        try:
            index = self.own.index(copy.raw)
        except ValueError:  # replayed meanwhile (or never ours): forget the copy
            discard(copy)
            return False
        try:
            commit(copy)
        except OSError as exc:
            self._no_compress.add(copy.raw)
            diagnose(
                f"{self.label}:spool:compress",
                f"{self.label}: cannot compress {copy.raw.name}: {describe_error(exc)}",
            )
            return False
        self.own[index] = copy.target
        self._usage.remove(copy.raw_size)
        self._usage.add(copy.size)
        return True

    def claim_orphans(self) -> list[Path]:
        """Claim the segments of gone writers; see :func:`claim_orphans`.

        Returns:
            The claimed files, in replay order.
        """
        return claim_orphans(self.directory, host=self.host, pid=os.getpid(), token=self.token)

    def release(self) -> None:
        """Let other engines of this process claim this writer's files."""
        live_tokens.discard(self.token)

    def retire(self) -> None:
        """At close: fsync every segment, release the files, write later ones under a new token.

        Another engine of this process (a reconfigured sink) may then replay what
        close spooled, while items that straggle in after close go to files that no
        one claims before this process is gone.
        """
        self.writer.rotate(fsync=True)
        fsync_files(self.take_unsynced())
        self.release()
        self.token = secrets.token_hex(6)
        live_tokens.add(self.token)
        lost = self.writer.lost
        # No worker writes gathered frames after close: each straggler at once.
        self.writer = SpoolWriter(
            self.directory, host=self.host, pid=os.getpid(), token=self.token, gather=False
        )
        self.writer.lost = lost

    def take_lost(self) -> int:
        """Take the count of records lost by failed gathered writes since the last call.

        See :attr:`SpoolWriter.lost`. The segments such a write closed are queued for
        replay here too (they hold the records written whole before it).
        """
        self._adopt_broken()
        lost, self.writer.lost = self.writer.lost, 0
        return lost
