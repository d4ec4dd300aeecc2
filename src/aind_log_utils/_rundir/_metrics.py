"""The metrics and artifact interfaces of a run: the LogStore files.

Three files at the top of the run directory, beside ``metadata.json``:

* ``metrics.jsonl``: one row ``{ts, step, split, metrics}`` per
  ``log_metrics``/``log_scalar`` call, appended in ONE ``os.write`` on a file
  opened in append mode (several processes may share it; a kill never tears a
  row), synced at flush and close;
* ``hyperparams.json``: the merged hyperparameters, rewritten atomically under
  the run's lock, so two processes merging lose nothing;
* ``artifacts.json``: a list of ``{name, path, kind, ts}`` pointers (not the
  bytes), appended to under the run's lock and rewritten atomically.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock

from .._diagnostics import diagnose
from .._fsync import fsync_and_close
from .._render_values import fits_json_int, int_text
from ._atomic import locked_json_update, merge_json_object
from ._convert import mask_secrets, to_plain

__all__ = [
    "ARTIFACTS_FILE",
    "HYPERPARAMS_FILE",
    "METRICS_FILE",
    "MetricsLog",
    "add_artifact_pointer",
    "merge_hyperparams",
]

METRICS_FILE = "metrics.jsonl"
HYPERPARAMS_FILE = "hyperparams.json"
ARTIFACTS_FILE = "artifacts.json"

_FLAGS = (
    os.O_WRONLY
    | os.O_APPEND
    | os.O_CREAT
    | getattr(os, "O_BINARY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _metric_value(value: Any) -> Any:
    cls = type(value)
    if cls is float:
        # JSON has no NaN/inf; keep them readable instead of orjson's null.
        return value if math.isfinite(value) else repr(value)
    if cls is int:
        return value if fits_json_int(value) else _big_int(value)
    if cls is bool or cls is str or value is None:
        return value
    plain = to_plain(value, for_yaml=False)
    if isinstance(plain, float) and not math.isfinite(plain):
        return repr(plain)
    if isinstance(plain, int) and not isinstance(plain, bool):
        return plain if fits_json_int(plain) else _big_int(plain)
    return plain


def _big_int(value: int) -> float | str:
    """An integer beyond 64 bits: a float, as a metric is plotted (its text past a float)."""
    try:
        return float(value)
    except OverflowError:
        return int_text(value)


class MetricsLog:
    """Append metric rows to ``metrics.jsonl`` and remember the last values.

    Args:
        path: the ``metrics.jsonl`` file.

    Raises:
        OSError: the file cannot be opened for appending.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, _FLAGS, 0o644)
        self._lock = threading.Lock()
        self.rows_written = 0
        self.write_errors = 0
        self.last: dict[str, Any] = {}
        self.last_step: int | None = None

    def write(self, metrics: Mapping[str, Any], step: int | None, split: str) -> None:
        """Append one row; never raises for a write error (counted and reported).

        Args:
            metrics: metric name -> value (numbers; numpy scalars are converted;
                an integer beyond 64 bits is written as a float).
            step: the training step, or None.
            split: ``"train"``, ``"val"``, ...

        Raises:
            TypeError: ``metrics`` is not a mapping of string names, or ``step``
                is not an int.
            ValueError: ``metrics`` is empty, or ``step`` is beyond 64 bits.
            RuntimeError: the log is closed.
        """
        if not isinstance(metrics, Mapping):
            raise TypeError(
                f"metrics: expected a mapping of name -> value, got {type(metrics).__name__}"
            )
        if not metrics:
            raise ValueError("metrics: at least one metric is needed")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            step = _as_step(step)
        if step is not None and not fits_json_int(step):
            raise ValueError(f"step: {step} is beyond 64 bits")
        if not isinstance(split, str) or not split:
            raise TypeError(f"split: expected a non-empty string, got {split!r}")
        values: dict[str, Any] = {}
        for name, value in metrics.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"metrics: names must be non-empty strings, got {name!r}")
            values[name] = _metric_value(value)
        row = {"ts": time.time(), "step": step, "split": split, "metrics": values}
        line = orjson.dumps(row, option=_OPTIONS)
        with self._lock:
            fd = self._fd
            if fd is None:
                raise RuntimeError(f"{self.path}: the run is closed; no more metrics can be logged")
            try:
                written = os.write(fd, line)
                while written < len(line):
                    written += os.write(fd, line[written:])
            except OSError as exc:
                self.write_errors += 1
                diagnose(
                    f"metrics:{self.path}", f"cannot append to {self.path}: {exc.strerror or exc}"
                )
                return
            self.rows_written += 1
            prefix = "" if split == "train" else f"{split}/"
            for name, value in values.items():
                self.last[prefix + name] = value
            if step is not None:
                self.last_step = step

    def flush(self) -> None:
        """Make the rows written so far durable (fsync)."""
        with self._lock:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                except OSError:
                    pass

    def close(self) -> None:
        """Sync and close the file; idempotent. Later writes raise RuntimeError."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is None:
            return
        fsync_and_close(fd)


def _as_step(step: object) -> int:
    # numpy integers and other integral numbers are accepted as steps.
    index = getattr(step, "__index__", None)
    if callable(index):
        result = index()
        if isinstance(result, int):
            return result
    raise TypeError(f"step: expected an int, got {type(step).__name__}")


def merge_hyperparams(run_path: Path, lock: FileLock, params: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``params`` into ``hyperparams.json`` (locked, atomic).

    Args:
        run_path: the run directory.
        lock: the run's lock.
        params: the hyperparameters (any JSON-serialisable values).

    Returns:
        The merged hyperparameters.

    Raises:
        TypeError: ``params`` is not a mapping.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"params: expected a mapping, got {type(params).__name__}")
    plain = mask_secrets(to_plain(dict(params), for_yaml=False))
    return merge_json_object(run_path / HYPERPARAMS_FILE, lock, plain)


def add_artifact_pointer(run_path: Path, lock: FileLock, entry: Mapping[str, Any]) -> None:
    """Append one pointer to ``artifacts.json`` (locked, atomic).

    Args:
        run_path: the run directory.
        lock: the run's lock.
        entry: ``{name, path, kind, ts, ...}``.
    """
    with locked_json_update(run_path / ARTIFACTS_FILE, lock, []) as box:
        current = box[0] if isinstance(box[0], list) else []
        current.append(to_plain(dict(entry), for_yaml=False))
        box[0] = current
