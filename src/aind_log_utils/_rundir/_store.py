"""The metrics and artifact interfaces of the reference texts, on a run directory.

* The ``LogStore`` protocol: :meth:`log_scalar`, :meth:`log_metrics`,
  :meth:`log_hyperparams`, :meth:`log_artifact` (a pointer, not the bytes),
  ``close``.
* metalab's ``Capture``: :meth:`metric`, :meth:`file`, :meth:`figure`,
  :meth:`data`, :meth:`log`, :meth:`subscribe_logger` /
  :meth:`unsubscribe_logger`, ``flush``/``finalize``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from ._atomic import atomic_write, atomic_write_bytes, dump_json
from ._handler import RunLogHandler
from ._metrics import MetricsLog, add_artifact_pointer, merge_hyperparams
from ._paths import check_name, resolve_inside
from ._saving import require_matplotlib

__all__ = ["StoreMixin"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _level(level: int | str) -> int:
    if isinstance(level, bool):
        raise TypeError(f"level: expected a level name or number, got {level!r}")
    if isinstance(level, int):
        return level
    number = _LEVELS.get(str(level).strip().lower())
    if number is None:
        raise ValueError(f"level: unknown level {level!r}")
    return number


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    return check_name(name)


class StoreMixin:
    """LogStore and Capture methods; mixed into :class:`RunDirectory`."""

    path: Path
    logger: logging.Logger
    _lock: FileLock
    _metrics: MetricsLog
    _handler: RunLogHandler

    def _ensure_open(self) -> None:
        raise NotImplementedError

    def _note(self, message: str) -> None:
        raise NotImplementedError

    # -- LogStore -------------------------------------------------------------------
    def log_metrics(
        self, metrics: Mapping[str, Any], step: int | None = None, *, split: str = "train"
    ) -> None:
        """Append one row ``{ts, step, split, metrics}`` to ``metrics.jsonl``.

        One ``os.write`` per row on a file opened in append mode; rows are
        synced at :meth:`flush` and at close.

        Args:
            metrics: metric name -> value (an integer beyond 64 bits is written
                as a float).
            step: the step (an int), or None.
            split: which side of the train/val firewall (``"train"``, ``"val"``).

        Raises:
            TypeError: a name is not a string, or ``step`` is not an int.
            ValueError: ``metrics`` is empty, or ``step`` is beyond 64 bits.
            RuntimeError: the run is closed.
        """
        self._metrics.write(metrics, step, split)

    def log_scalar(self, key: str, value: float, step: int) -> None:
        """Record one named scalar at ``step`` (one row in ``metrics.jsonl``).

        Args:
            key: the metric's name.
            value: its value.
            step: the step.

        Raises:
            RuntimeError: the run is closed.
        """
        self._metrics.write({key: value}, step, "train")

    def log_hyperparams(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``params`` into ``hyperparams.json`` (locked, atomic).

        Args:
            params: the hyperparameters (any JSON-serialisable values).

        Returns:
            The merged hyperparameters.

        Raises:
            TypeError: ``params`` is not a mapping.
            RuntimeError: the run is closed.
        """
        self._ensure_open()
        return merge_hyperparams(self.path, self._lock, params)

    def log_artifact(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        kind: str = "file",
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Register a pointer ``{name, path, kind, ts}`` in ``artifacts.json``.

        The file is not copied. A path inside the run is stored relative to it,
        any other path absolute.

        Args:
            name: the artifact's logical name.
            path: where the file is.
            kind: e.g. ``"file"``, ``"checkpoint"``, ``"image"``.
            metadata: more fields for the pointer.

        Returns:
            The pointer as stored.

        Raises:
            ValueError: the name is empty.
            RuntimeError: the run is closed.
        """
        self._ensure_open()
        entry: dict[str, Any] = {
            "name": _check_name(name),
            "path": self._pointer_path(Path(os.fspath(path))),
            "kind": str(kind),
            "ts": time.time(),
        }
        if metadata:
            entry["metadata"] = dict(metadata)
        add_artifact_pointer(self.path, self._lock, entry)
        return entry

    def _pointer_path(self, path: Path) -> str:
        absolute = Path(os.path.abspath(path))
        try:
            return absolute.relative_to(os.path.abspath(self.path)).as_posix()
        except ValueError:
            return str(absolute)

    # -- Capture ----------------------------------------------------------------------
    def metric(self, name: str, value: float | int | str | bool, step: int | None = None) -> None:
        """Capture one scalar metric (a row in ``metrics.jsonl``).

        Args:
            name: the metric's name.
            value: a scalar.
            step: the step, or None.

        Raises:
            RuntimeError: the run is closed.
        """
        self._metrics.write({name: value}, step, "train")

    def file(
        self,
        name: str,
        path: str | os.PathLike[str],
        kind: str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Copy a file the run produced into ``artifacts/`` and register it.

        The copy keeps the source's extension when ``name`` has none.

        Args:
            name: the artifact's name (a path under ``artifacts/``).
            path: the file.
            kind: e.g. ``"image"``, ``"report"`` (default ``"file"``).
            metadata: more fields for the pointer.

        Returns:
            The pointer as stored in ``artifacts.json``.

        Raises:
            ValueError: the name leads outside the run directory.
            FileNotFoundError: the file does not exist.
        """
        self._ensure_open()
        source = Path(os.fspath(path))
        if not source.is_file():
            raise FileNotFoundError(f"path: no such file {str(source)!r}")
        target_name = name if Path(name).suffix else f"{name}{source.suffix}"
        target = resolve_inside(self.path, f"artifacts/{_check_name(target_name)}", what="name")
        with source.open("rb") as handle:
            atomic_write(target, lambda out: shutil.copyfileobj(handle, out))
        self._note(f"Saved file {name} in {target.relative_to(self.path).as_posix()}")
        return self.log_artifact(name, target, kind=kind or "file", metadata=metadata)

    def figure(
        self,
        name: str,
        fig: Any,
        *,
        format: str = "png",
        dpi: int = 150,
        bbox_inches: str = "tight",
        metadata: Mapping[str, Any] | None = None,
        close: bool = True,
    ) -> dict[str, Any]:
        """Save a matplotlib figure as ``plots/<name>.<format>`` and register it.

        Args:
            name: the figure's name.
            fig: a matplotlib ``Figure``.
            format: ``png``, ``pdf``, ``svg``, ``jpg``.
            dpi: the resolution.
            bbox_inches: passed to ``savefig``.
            metadata: more fields for the pointer.
            close: close the figure afterwards.

        Returns:
            The pointer as stored in ``artifacts.json`` (kind ``"image"``).

        Raises:
            ImportError: matplotlib is not installed (names the extra).
            ValueError: the name leads outside the run directory.
        """
        require_matplotlib()
        self._ensure_open()
        target = resolve_inside(self.path, f"plots/{_check_name(name)}.{format}", what="name")
        atomic_write(
            target, lambda out: fig.savefig(out, format=format, dpi=dpi, bbox_inches=bbox_inches)
        )
        if close:
            import matplotlib.pyplot as plt

            plt.close(fig)
        self._note(f"Saved figure {name} in {target.relative_to(self.path).as_posix()}")
        return self.log_artifact(name, target, kind="image", metadata=metadata)

    def data(
        self, name: str, obj: Any, *, metadata: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Save structured result data as ``data/<name>.json`` and register it.

        numpy arrays become nested lists (with their shape and dtype kept in
        the pointer's metadata); dicts, lists and scalars are stored as JSON.

        Args:
            name: the data's name.
            obj: an array, list, dict or scalar.
            metadata: more fields for the pointer.

        Returns:
            The pointer as stored in ``artifacts.json`` (kind ``"data"``).

        Raises:
            ValueError: the name leads outside the run directory.
            TypeError: the object cannot be stored as JSON.
        """
        self._ensure_open()
        target = resolve_inside(self.path, f"data/{_check_name(name)}.json", what="name")
        extra = dict(metadata or {})
        shape, dtype = getattr(obj, "shape", None), getattr(obj, "dtype", None)
        if shape is not None and dtype is not None:
            extra.setdefault("shape", list(shape))
            extra.setdefault("dtype", str(dtype))
        atomic_write_bytes(target, dump_json(obj))
        self._note(f"Saved data {name} in {target.relative_to(self.path).as_posix()}")
        return self.log_artifact(name, target, kind="data", metadata=extra or None)

    def log(self, message: str, level: int | str = "info") -> None:
        """Log a message for this run (it reaches every sink, and the run's logs).

        Args:
            message: the message.
            level: ``"debug"``, ``"info"``, ``"warning"``, ``"error"`` or a number.

        Raises:
            ValueError: an unknown level name.
        """
        self.logger.log(_level(level), message)

    def subscribe_logger(self, name: str, level: int | str = logging.DEBUG) -> None:
        """Capture a (third-party) logger's records in the run's logs.

        Works even when the logger has ``propagate=False``. Its level is
        lowered to ``level`` when stricter, and restored on unsubscribe.

        Args:
            name: the logger's name, e.g. ``"dynamo"``.
            level: the lowest level captured (default DEBUG).

        Raises:
            ValueError: an unknown level name.
            RuntimeError: the run is closed.
        """
        self._ensure_open()
        self._handler.subscribe(str(name), _level(level))

    def unsubscribe_logger(self, name: str) -> None:
        """Stop capturing a logger subscribed with :meth:`subscribe_logger`.

        Args:
            name: the logger's name.
        """
        self._handler.unsubscribe(str(name))

    @property
    def last_metrics(self) -> dict[str, Any]:
        """The last value of each metric (``<split>/<name>`` for splits other than train)."""
        return dict(self._metrics.last)
