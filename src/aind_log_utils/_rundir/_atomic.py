"""Atomic file writes and the run's cross-process lock.

notata writes its files in place (a failed ``json`` leaves a truncated file) and
updates ``metadata.json`` through one shared temp name with no lock (two
processes corrupt it). Here every JSON, YAML and artifact file is written to a
unique temp file in the same directory, synced, then renamed over the target,
so a reader sees the old file or the new one, never half of one; and every
read-modify-write of a shared file runs under one :mod:`filelock` lock per run.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from filelock import FileLock

from .._fsync import fsync_path
from ._convert import to_plain

__all__ = [
    "LOCK_NAME",
    "atomic_write",
    "atomic_write_bytes",
    "dump_json",
    "locked_json_update",
    "merge_json_object",
    "read_json",
    "run_lock",
]

#: The lock file at the top of a run directory.
LOCK_NAME = ".aind-run.lock"


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible (nor needed) on Windows.
    if os.name == "posix":
        fsync_path(directory, os.O_RDONLY)


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write a file atomically: unique temp file, fsync, rename over ``path``.

    Args:
        path: the target file; its parent directories are created.
        write: called with the open temp file (binary mode) to fill it.

    Raises:
        Exception: whatever ``write`` raises; the temp file is removed and
            ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`).

    Args:
        path: the target file.
        data: the whole content.
    """
    atomic_write(path, lambda handle: handle.write(data))


def dump_json(data: Any) -> bytes:
    """Serialise like notata does (indent 2, sorted keys), ending in a newline.

    numpy values, paths, dates, enums and sets are converted to plain JSON
    first (:func:`to_plain`); any other object is refused, as ``json`` does.

    Args:
        data: a JSON-serialisable value.

    Returns:
        The UTF-8 encoded text.

    Raises:
        TypeError: ``data`` holds a value JSON cannot represent.
        ValueError: ``data`` holds a circular reference.
    """
    text = json.dumps(
        to_plain(data, for_yaml=False, strict=True), indent=2, sort_keys=True, allow_nan=True
    )
    return (text + "\n").encode("utf-8")


def read_json(path: Path, default: Any = None) -> Any:
    """Read a JSON file, or return ``default`` when it is missing or unreadable.

    Args:
        path: the file.
        default: what to return when the file is missing or not valid JSON.

    Returns:
        The parsed value.
    """
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return default


def run_lock(run_path: Path, timeout_s: float = 60.0) -> FileLock:
    """The cross-process lock that guards a run's shared files.

    Args:
        run_path: the run directory.
        timeout_s: how long to wait for the lock before ``filelock.Timeout``.

    Returns:
        A re-entrant lock (use it as a context manager).
    """
    return FileLock(run_path / LOCK_NAME, timeout=timeout_s, thread_local=False)


@contextlib.contextmanager
def locked_json_update(path: Path, lock: FileLock, default: Any) -> Iterator[list[Any]]:
    """Read-modify-write a JSON file under ``lock``, written back atomically.

    Yields a one-item list holding the current value; replace or mutate
    ``box[0]`` and it is written back when the block ends without an error.

    Args:
        path: the JSON file.
        lock: the run's lock.
        default: the value when the file does not exist yet.

    Yields:
        ``[current value]``.
    """
    with lock:
        current = read_json(path, None)
        box = [default if current is None else current]
        yield box
        atomic_write_bytes(path, dump_json(box[0]))


def merge_json_object(path: Path, lock: FileLock, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``fields`` into the JSON object in ``path`` under ``lock``.

    Args:
        path: the JSON file (an object; a missing or broken file counts as ``{}``).
        lock: the run's lock.
        fields: the keys to set.

    Returns:
        The merged object as written.
    """
    with locked_json_update(path, lock, {}) as box:
        merged = dict(box[0]) if isinstance(box[0], dict) else {}
        merged.update(fields)
        box[0] = merged
    return merged
