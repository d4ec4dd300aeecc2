"""The on-disk spool: where items wait when the server is away or the process exits.

:class:`Spool` is one engine's use of a spool directory: it appends to this writer's
segments (rotating them when big enough), keeps the directory under its cap, reads
segments back for replay and deletes them once delivered, and claims the files of
gone writers. The parts it puts together are each in a module of their own:
:mod:`._segment` (segment names, framing, :class:`SpoolWriter`, :func:`read_segment`),
:mod:`._claims` (which files a process may replay: :func:`claim_orphans`) and
:mod:`._usage` (the room the directory's files take). Their public names are
importable from here too.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
from collections import deque
from pathlib import Path

from .._diagnostics import diagnose
from ._claims import FOREIGN_HOST_STALE_S, claim_orphans, live_tokens
from ._segment import FRAME_OVERHEAD, MAGIC, SegmentData, SegmentName, SpoolWriter, read_segment
from ._transport import describe_error
from ._usage import SpoolUsage

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

# The very set of :mod:`._claims`, under the name it had here (tests stand in for
# open engines by adding their tokens to it).
_live_tokens = live_tokens


def _host_id() -> str:
    try:
        name = socket.gethostname()
    except OSError:
        name = ""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "localhost"


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
        live_tokens.add(self.token)
        self.writer = SpoolWriter(directory, host=self.host, pid=os.getpid(), token=self.token)
        #: This writer's closed segments not yet replayed, oldest first.
        self.own: deque[Path] = deque()
        self._usage = SpoolUsage(directory)

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
            if not self._usage.fits(need, self.max_bytes):
                return "spool_full"
            self._usage.add(self.writer.append(item, seq))
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
            self._usage.forget()  # rescan: other processes write here too

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
        self._usage.remove(size)

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
        """At close: fsync, release the files so far, write later ones under a new token.

        Another engine of this process (a reconfigured sink) may then replay what
        close spooled, while items that straggle in after close go to files that no
        one claims before this process is gone.
        """
        self.writer.rotate(fsync=True)
        self.release()
        self.token = secrets.token_hex(6)
        live_tokens.add(self.token)
        self.writer = SpoolWriter(self.directory, host=self.host, pid=os.getpid(), token=self.token)
