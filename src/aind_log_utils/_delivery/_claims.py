"""Claiming the spool files of gone writers, so that exactly one process replays each.

A segment whose writer is gone is *claimed* by an atomic rename to
``<segment>.claimed-<host>-<pid>-<token>``; a rename succeeds for exactly one
claimer, so two processes (or two engines) never replay the same file. A claim whose
claimer is gone can be claimed again (delivery is at least once). "Gone" means: on
this host, the pid is not running (or is a zombie, or a process that started after
the file was last written: the pid was reused); for the same pid, the token is not
one of this process's open engines (:data:`live_tokens`). A file written on ANOTHER
host (a shared network directory) is left alone unless it has not been modified for
:data:`FOREIGN_HOST_STALE_S` (one day), because its writer's liveness cannot be
checked from here.

Compressed copies (:mod:`._compress`): where a segment's compressed copy exists
(``.spoolz``, claimed or not), its raw segment is never claimed, and is deleted once
its writer is gone (a crash between the rename and the delete); a half-written copy
(``.spoolz.tmp``) of a gone writer is deleted too.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from pathlib import Path

from ._compress import TMP_SUFFIX
from ._segment import SegmentName

__all__ = ["FOREIGN_HOST_STALE_S", "claim_orphans", "live_tokens", "split_name"]

#: Files from another host are replayed only after this long without a write.
FOREIGN_HOST_STALE_S = 24 * 3600.0
#: Slack between a process's start time and a file's mtime (clock granularity).
_START_SLACK_S = 2.0

_CLAIM_MARK = ".claimed-"
_CLAIMER_RE = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)-(?P<token>[0-9a-f]+)$")

#: Tokens of the engines open in THIS process: a file whose pid is ours is ours only
#: while its token is here (pid reuse in containers makes "pid == mine" insufficient).
live_tokens: set[str] = set()
# Serialises scanning and claiming between engines of this process; across
# processes the atomic rename is what decides.
_claim_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _claim_lock
    _claim_lock = threading.Lock()
    live_tokens.clear()  # the parent's engines are not this process's


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def split_name(name: str) -> tuple[SegmentName, tuple[str, int, str] | None] | None:
    """Parse the name of a spool file: a segment, or a segment claimed by someone.

    Args:
        name: the file's base name.

    Returns:
        The segment's parts and the claimer's ``(host, pid, token)`` (None when the
        file is not claimed), or None when the file is no spool file.
    """
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


def _writer_alive(
    owner: tuple[str, int, str], mtime: float, me: tuple[str, int], start: bool
) -> bool:
    host, pid, token = owner
    if host != me[0]:
        return time.time() - mtime < FOREIGN_HOST_STALE_S
    if pid == me[1]:
        return token in live_tokens
    import psutil  # here: 15 ms of every process's start-up, needed only for leftovers

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


def _remove_stale_tmp(entry: os.DirEntry[str], me: tuple[str, int]) -> None:
    """Delete a half-written compressed copy whose writer is gone."""
    if not entry.name.endswith(TMP_SUFFIX):
        return
    segment = SegmentName.parse(entry.name[: -len(TMP_SUFFIX)])
    if segment is None:
        return
    try:
        mtime = entry.stat().st_mtime
    except OSError:
        return
    if not _writer_alive((segment.host, segment.pid, segment.token), mtime, me, True):
        with contextlib.suppress(OSError):
            os.unlink(entry.path)


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
        named = [(entry, split_name(entry.name)) for entry in entries]
        compressed = {parts[0].key for _, parts in named if parts and parts[0].compressed}
        for entry, parts in named:
            if parts is None:
                _remove_stale_tmp(entry, me)
                continue
            segment, claimer = parts
            try:
                mtime = entry.stat().st_mtime
            except OSError:
                continue
            owner = claimer or (segment.host, segment.pid, segment.token)
            if owner == (host, pid, token) or _writer_alive(owner, mtime, me, claimer is None):
                continue
            if not segment.compressed and segment.key in compressed:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)  # the compressed copy is the one to replay
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
