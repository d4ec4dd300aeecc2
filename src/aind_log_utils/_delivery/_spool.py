"""The on-disk spool: where items wait when the server is away or the process exits.

Layout: one directory per sink, holding *segments*. A segment is written by exactly
one engine of one process and is named ``<host>-<pid>-<token>-<seq>.spool``
(``token``: random hex, new for every engine and after every fork; ``seq``: the
engine's submission number of the segment's first item, zero-padded, so that the
segments of one writer sort in submission order). A segment starts with the 8-byte
magic ``AINDSPL1`` and then holds frames::

    4-byte big-endian length | 4-byte big-endian CRC32 of the payload | payload

Writes are appended straight to the file descriptor (no user-space buffer), so a
record survives a SIGKILL once :meth:`SpoolWriter.append` has returned; a frame torn
by a crash or a full disk fails its length or CRC check and the reader stops there,
keeping every intact record before it. Segments are fsynced when they rotate and
when the engine flushes or closes.

Replay by a later process: a segment whose writer is gone is *claimed* by an atomic
rename to ``<segment>.claimed-<host>-<pid>-<token>``; a rename succeeds for exactly
one claimer, so two processes (or two engines) never replay the same file. A claim
whose claimer is gone can be claimed again (delivery is at least once). "Gone" means:
on this host, the pid is not running (or is a zombie, or a process that started
after the file was last written: the pid was reused); for the same pid, the token is
not one of this process's open engines. A file written on ANOTHER host (a shared
network directory) is left alone unless it has not been modified for
:data:`FOREIGN_HOST_STALE_S` (one day), because its writer's liveness cannot be
checked from here.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import socket
import struct
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import psutil

from .._diagnostics import diagnose
from ._transport import describe_error

__all__ = [
    "FOREIGN_HOST_STALE_S",
    "FRAME_OVERHEAD",
    "MAGIC",
    "SegmentData",
    "SegmentName",
    "Spool",
    "SpoolWriter",
    "claim_orphans",
    "read_segment",
]

MAGIC = b"AINDSPL1"
_HEADER = struct.Struct(">II")
#: Bytes added to each record on disk (length + CRC32).
FRAME_OVERHEAD = _HEADER.size
#: A length above this is garbage (a torn or foreign file), never a record.
MAX_RECORD_BYTES = 64 * 1024 * 1024
#: Files from another host are replayed only after this long without a write.
FOREIGN_HOST_STALE_S = 24 * 3600.0
#: Slack between a process's start time and a file's mtime (clock granularity).
_START_SLACK_S = 2.0

_SUFFIX = ".spool"
_CLAIM_MARK = ".claimed-"
_SEGMENT_RE = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)-(?P<token>[0-9a-f]+)-(?P<seq>\d+)\.spool$")
_CLAIMER_RE = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)-(?P<token>[0-9a-f]+)$")

# Tokens of the engines open in THIS process: a file whose pid is ours is ours only
# while its token is here (pid reuse in containers makes "pid == mine" insufficient).
_live_tokens: set[str] = set()
# Serialises scanning and claiming between engines of this process; across
# processes the atomic rename is what decides.
_claim_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _claim_lock
    _claim_lock = threading.Lock()
    _live_tokens.clear()  # the parent's engines are not this process's


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _host_id() -> str:
    try:
        name = socket.gethostname()
    except OSError:
        name = ""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "localhost"


@dataclass(frozen=True)
class SegmentName:
    """The parts of a segment's file name.

    Attributes:
        host: the writer's sanitised host name.
        pid: the writer's process id.
        token: the writer engine's random token.
        seq: the submission number of the segment's first item.
    """

    host: str
    pid: int
    token: str
    seq: int

    @property
    def filename(self) -> str:
        """The file name, ``<host>-<pid>-<token>-<seq>.spool``."""
        return f"{self.host}-{self.pid}-{self.token}-{self.seq:016d}{_SUFFIX}"

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
        return cls(m["host"], int(m["pid"]), m["token"], int(m["seq"]))


def _encode_frame(item: bytes) -> bytes:
    return _HEADER.pack(len(item), zlib.crc32(item)) + item


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class SpoolWriter:
    """Appends framed records to one writer's segments in a directory.

    Not thread-safe: the engine calls it under its own lock. Nothing is buffered in
    user space, so after a fork the child only has to close the descriptor
    (:meth:`abandon`) and can never write the parent's data twice.

    Args:
        directory: the spool directory (created on the first write).
        host: this host's sanitised name.
        pid: this process's id.
        token: this writer's random token.
    """

    def __init__(self, directory: Path, *, host: str, pid: int, token: str) -> None:
        self.directory = directory
        self._host, self._pid, self._token = host, pid, token
        self._fd: int | None = None
        #: The open segment, or None.
        self.path: Path | None = None
        #: Bytes in the open segment (0 when none is open).
        self.size = 0
        #: Records in the open segment.
        self.records = 0

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
        frame = _encode_frame(item)
        self._write(frame)
        self.records += 1
        return added + len(frame)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        try:
            _write_all(self._fd, data)
        except OSError:
            self.rotate(fsync=False)
            raise
        self.size += len(data)

    def sync(self) -> None:
        """Fsync the open segment, if any (errors are ignored: best effort)."""
        if self._fd is not None:
            try:
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
        if fsync:
            self.sync()
        try:
            os.close(self._fd)
        except OSError:
            pass
        path = self.path
        self._fd, self.path, self.size, self.records = None, None, 0, 0
        return path

    def abandon(self) -> None:
        """Close the descriptor without writing (in a forked child)."""
        self.rotate(fsync=False)


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


def read_segment(path: Path) -> SegmentData:
    """Read every intact record of a segment, stopping at the first bad frame.

    Args:
        path: the segment file.

    Returns:
        The records and what was ignored.

    Raises:
        OSError: the file cannot be read.
    """
    data = path.read_bytes()
    if len(data) < len(MAGIC):  # created, killed before the magic was written
        return SegmentData([], len(data), len(data), MAGIC.startswith(data))
    if not data.startswith(MAGIC):
        return SegmentData([], len(data), len(data), False)
    items: list[bytes] = []
    pos, end = len(MAGIC), len(data)
    while pos + FRAME_OVERHEAD <= end:
        length, crc = _HEADER.unpack_from(data, pos)
        stop = pos + FRAME_OVERHEAD + length
        if length > MAX_RECORD_BYTES or stop > end:
            break
        payload = data[pos + FRAME_OVERHEAD : stop]
        if zlib.crc32(payload) != crc:
            break
        items.append(payload)
        pos = stop
    return SegmentData(items, end, end - pos, True)


def _split(name: str) -> tuple[SegmentName, tuple[str, int, str] | None] | None:
    base, mark, claimer = name.partition(_CLAIM_MARK)
    segment = SegmentName.parse(base)
    if segment is None:
        return None
    if not mark:
        return segment, None
    m = _CLAIMER_RE.match(claimer)
    if m is None:
        return None
    return segment, (m["host"], int(m["pid"]), m["token"])


def _usage(directory: Path) -> int:
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if _split(entry.name) is not None:
                    with contextlib.suppress(OSError):
                        total += entry.stat().st_size
    except OSError:
        return 0
    return total


def _writer_alive(
    owner: tuple[str, int, str], mtime: float, me: tuple[str, int], start: bool
) -> bool:
    host, pid, token = owner
    if host != me[0]:
        return time.time() - mtime < FOREIGN_HOST_STALE_S
    if pid == me[1]:
        return token in _live_tokens
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        # A process that started after the file's last write cannot have written it.
        return not (start and proc.create_time() > mtime + _START_SLACK_S)
    except psutil.NoSuchProcess:
        return False
    except Exception:  # cannot tell (access denied...): leave the file alone
        return True


def claim_orphans(directory: Path, *, host: str, pid: int, token: str) -> list[Path]:
    """Claim every segment in ``directory`` whose writer (or claimer) is gone.

    Args:
        directory: the spool directory (missing means nothing to claim).
        host: this host's sanitised name.
        pid: this process's id.
        token: the claiming engine's token (part of the claim name).

    Returns:
        The claimed files, in replay order: writers oldest first (by their oldest
        file's mtime), each writer's segments in submission order.
    """
    claimed: list[tuple[SegmentName, float, Path]] = []
    me = (host, pid)
    with _claim_lock:
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError:
            return []
        for entry in entries:
            parts = _split(entry.name)
            if parts is None:
                continue
            segment, claimer = parts
            try:
                mtime = entry.stat().st_mtime
            except OSError:
                continue
            owner = claimer or (segment.host, segment.pid, segment.token)
            if owner == (host, pid, token) or _writer_alive(owner, mtime, me, claimer is None):
                continue
            target = directory / f"{segment.filename}{_CLAIM_MARK}{host}-{pid}-{token}"
            try:
                os.rename(entry.path, target)  # atomic: exactly one claimer wins
            except OSError:
                continue
            claimed.append((segment, mtime, target))
    first_seen: dict[tuple[str, int, str], float] = {}
    for segment, mtime, _ in claimed:
        key = (segment.host, segment.pid, segment.token)
        first_seen[key] = min(mtime, first_seen.get(key, mtime))
    claimed.sort(
        key=lambda c: (
            first_seen[(c[0].host, c[0].pid, c[0].token)],
            c[0].token,
            c[0].pid,
            c[0].seq,
        )
    )
    return [path for _, _, path in claimed]


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
        # Small enough to replay piecemeal, big enough to keep the files few.
        self.segment_bytes = max(64 * 1024, min(8 * 1024 * 1024, max_bytes // 8))
        self.host, self.token = _host_id(), secrets.token_hex(6)
        _live_tokens.add(self.token)
        self.writer = SpoolWriter(directory, host=self.host, pid=os.getpid(), token=self.token)
        #: This writer's closed segments not yet replayed, oldest first.
        self.own: deque[Path] = deque()
        self._used: int | None = None  # estimate; rescanned on rotation and at the cap
        self._scanned_at = -math.inf

    def append(self, item: bytes, seq: int) -> str | None:
        """Append ``item``, rotating the segment when it is big enough.

        Args:
            item: the record.
            seq: its submission number.

        Returns:
            None when written, else why not: ``"spool_full"`` or ``"spool_error"``.
        """
        try:
            if self.writer.size >= self.segment_bytes:
                self.rotate(fsync=True)
            need = len(item) + FRAME_OVERHEAD + (0 if self.writer.path else len(MAGIC))
            now = time.monotonic()
            if self._used is None or (
                self._used + need > self.max_bytes and now - self._scanned_at >= 1.0
            ):
                self._used, self._scanned_at = _usage(self.directory), now
            if self._used + need > self.max_bytes:
                return "spool_full"
            self._used += self.writer.append(item, seq)
            return None
        except OSError as exc:
            diagnose(
                f"{self.label}:spool:write",
                f"{self.label}: cannot write the spool in {self.directory}: {describe_error(exc)}",
            )
            return "spool_error"

    def rotate(self, *, fsync: bool) -> None:
        """Close the open segment and queue it for replay by this writer.

        Args:
            fsync: fsync it first.
        """
        path = self.writer.rotate(fsync=fsync)
        if path is not None:
            self.own.append(path)
            self._used = None  # rescan: other processes write here too

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

    def remove(self, path: Path) -> None:
        """Delete a segment whose records were all taken.

        Args:
            path: the segment.
        """
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            return
        if self._used is not None:
            self._used = max(0, self._used - size)

    def claim_orphans(self) -> list[Path]:
        """Claim the segments of gone writers; see :func:`claim_orphans`.

        Returns:
            The claimed files, in replay order.
        """
        return claim_orphans(self.directory, host=self.host, pid=os.getpid(), token=self.token)

    def release(self) -> None:
        """Let other engines of this process claim this writer's files."""
        _live_tokens.discard(self.token)

    def retire(self) -> None:
        """At close: fsync, release the files so far, write later ones under a new token.

        Another engine of this process (a reconfigured sink) may then replay what
        close spooled, while items that straggle in after close go to files that no
        one claims before this process is gone.
        """
        self.writer.rotate(fsync=True)
        self.release()
        self.token = secrets.token_hex(6)
        _live_tokens.add(self.token)
        self.writer = SpoolWriter(self.directory, host=self.host, pid=os.getpid(), token=self.token)
