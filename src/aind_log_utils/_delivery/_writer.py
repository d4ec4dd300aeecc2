"""Writing spool segments: frames gathered in memory, written 64 KiB at a time.

Frames (see :mod:`._segment`) are gathered in memory and written 64 KiB at a time
(one system call per record made a spooling program slower by a tenth), or once the
oldest has waited 0.1 s (:data:`SPOOL_WRITE_S`): by the next append, or by the
engine's worker while it waits (out a backoff, or for a batch); flush, close and
every segment rotation write it all, and whoever appends a batch at once
(:meth:`SpoolWriter.append_many`) writes it once it passes 64 KiB. A SIGKILL
therefore loses at most the newest 0.1 s of spooled records, never more than 64 KiB
of them (only a program that goes quiet while a send is in flight keeps its last
ones in memory until that send ends): less than the in-memory queue holds while the
server is up. A segment closed on the caller's thread is fsynced by the engine's
worker soon after (never on the caller); every segment is fsynced when the engine
flushes or closes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ._segment import FRAME_HEADER, FRAME_OVERHEAD, MAGIC, SegmentName, crc32, write_all

__all__ = ["PENDING_BYTES", "SPOOL_WRITE_S", "SpoolWriter"]

#: Gathered frames are written once they would pass this much.
PENDING_BYTES = 64 * 1024
#: Or once the oldest has waited this long: by the next append, or by the engine's
#: worker while it waits. The most a SIGKILL can take from the spool.
SPOOL_WRITE_S = 0.1


def _whole_frames(data: bytes | bytearray, end: int) -> int:
    """How many frames of ``data`` (after the magic, if it starts with it) end by ``end``."""
    pos, count = (len(MAGIC) if data.startswith(MAGIC) else 0), 0
    while pos + FRAME_OVERHEAD <= end:
        pos += FRAME_OVERHEAD + FRAME_HEADER.unpack_from(data, pos)[0]
        if pos > end:
            break
        count += 1
    return count


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
        added = self._open(seq) if self._fd is None else 0
        header = FRAME_HEADER.pack(len(item), crc32(item))
        size = FRAME_OVERHEAD + len(item)
        pending = self._pending
        if pending is None:
            self._write(header + item)
        else:
            pending = self._make_room(size)
            pending += header  # two appends: the record is copied once
            pending += item
            self.size += size
            self._pending_records += 1
        self.records += 1
        return added + size

    def append_many(self, items: list[bytes], seq: int) -> int:
        """Append records as :meth:`append` does each, framed with one join.

        Unlike :meth:`append`, the gathered frames may exceed 64 KiB when this
        returns: the caller writes them (:meth:`write_pending`) once it has appended
        what it had, so that a failed write is told apart from a refused append.

        Args:
            items: the records, oldest first (not empty).
            seq: the first one's submission number.

        Returns:
            The bytes added to the directory.

        Raises:
            OSError: as :meth:`append`; while gathering (the default), none of
                ``items`` is then taken.
        """
        if self._pending is None:  # each frame written at once, as append does
            return sum(self.append(item, seq + i) for i, item in enumerate(items))
        added = self._open(seq) if self._fd is None else 0
        pack, crc = FRAME_HEADER.pack, crc32
        frames = [b""] * (2 * len(items))
        frames[0::2] = [pack(len(item), crc(item)) for item in items]
        frames[1::2] = items
        data = b"".join(frames)
        pending = self._make_room(len(data))
        pending += data
        self.size += len(data)
        self._pending_records += len(items)
        self.records += len(items)
        return added + len(data)

    @property
    def pending_bytes(self) -> int:
        """The size of the frames gathered and not yet written."""
        return len(self._pending) if self._pending is not None else 0

    def _open(self, seq: int) -> int:
        """Open a segment named after ``seq``; return the bytes it starts with (the magic)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / SegmentName(self._host, self._pid, self._token, seq).filename
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_BINARY", 0)
        self._fd = os.open(path, flags, 0o600)
        self.path, self.size, self.records = path, 0, 0
        self._write(MAGIC)
        return len(MAGIC)

    def _make_room(self, size: int) -> bytearray:
        """Return the buffer to gather ``size`` more bytes into, its clock started.

        The gathered frames are written first if those bytes would take it past 64
        KiB, or if the oldest is due.
        """
        pending = self._pending
        assert pending is not None
        if pending and (len(pending) + size > PENDING_BYTES or time.monotonic() >= self._write_by):
            # The older frames first: should that fail, the new ones are not taken.
            self.write_pending()
            pending = self._pending
            assert pending is not None
        if not pending:  # the clock starts with the oldest frame
            self._write_by = time.monotonic() + SPOOL_WRITE_S
        return pending

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
