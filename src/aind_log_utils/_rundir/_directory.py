"""``RunDirectory``: one run's logs, parameters, metrics, data and artifacts.

Writes the layout notata 0.3.0 writes and reads (``log_<run_id>/`` with
``log.txt``, ``metadata.json``, ``params.yaml``, ``data/``, ``plots/``,
``artifacts/``), plus ``log.jsonl`` and the LogStore files, and is safer than
notata: names are checked, files are written atomically, shared files are
updated under a cross-process lock, a killed run is recognisable (its pid is
recorded), and ``resume=True`` reopens a run.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import threading
import time
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .._diagnostics import diagnose
from .._redact import redact_text
from .._session import active_session
from ._atomic import atomic_write_bytes, dump_json, merge_json_object, read_json, run_lock
from ._convert import mask_secrets, to_plain
from ._handler import RunLogHandler, root_level_guard
from ._identity import identity_fields, now
from ._metrics import METRICS_FILE, MetricsLog
from ._notes import NoteMixin
from ._paths import check_run_id
from ._reader import RunReader
from ._saving import SaveMixin
from ._store import StoreMixin

__all__ = ["RUN_LOGGER", "RunDirectory"]

#: The logger a run's own lines come from.
RUN_LOGGER = "aind_log_utils.run"
_SUBDIRS = ("data", "plots", "artifacts")


class RunDirectory(SaveMixin, StoreMixin, NoteMixin):
    """One run directory in the notata layout, with the run's logs in it.

    While it is open every record from every logger (INFO and above) also
    lands in its ``log.txt`` (notata's format) and ``log.jsonl`` (the AIND JSON
    lines), with or without :func:`setup_logging`. A clean exit marks it
    ``complete``; an exception marks it ``failed`` with the reason and is
    re-raised. Either way one run-level canonical line ends the run.

    Example::

        with RunDirectory("oscillator", base_dir="results", params={"omega": 2.0}) as run:
            run.log_metrics({"loss": 0.5}, step=1)
            run.json("final_state", {"x": 1.0})

    Args:
        run_id: one safe path component; the directory is ``log_<run_id>``.
        base_dir: the parent directory (created when missing).
        params: parameters written to ``params.yaml`` at once.
        overwrite: replace an existing run directory (its old files are removed).
        resume: reopen an existing run and append to it (created when missing).

    Raises:
        ValueError: ``run_id`` is not one safe path component, both
            ``overwrite`` and ``resume`` are set, or the run directory is a
            symlink (the message names the argument).
        FileExistsError: the run exists and neither ``overwrite`` nor ``resume``.
    """

    def __init__(
        self,
        run_id: str | int,
        base_dir: str | os.PathLike[str] = "outputs",
        params: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        resume: bool = False,
    ) -> None:
        self.run_id = check_run_id(run_id)
        if overwrite and resume:
            raise ValueError("overwrite and resume: choose one")
        if params is not None and not isinstance(params, Mapping):
            raise TypeError(f"params: expected a mapping, got {type(params).__name__}")
        self.path = Path(os.fspath(base_dir)) / f"log_{self.run_id}"
        self.logger = logging.getLogger(RUN_LOGGER)
        self._state_lock = threading.RLock()
        self._closed = False
        self._status: str | None = None
        self._t0 = time.monotonic()
        self._make_directory(overwrite=overwrite, resume=resume)
        self._lock = run_lock(self.path)
        self._handler = RunLogHandler(self.path / "log.jsonl", self.path / "log.txt")
        try:
            self._metrics = MetricsLog(self.path / METRICS_FILE)
            resumed = self._write_initial_metadata(resume)
            root = logging.getLogger()
            root_level_guard.acquire(self._handler)
            root.addHandler(self._handler)
            atexit.register(self._atexit)
            self.logger.info(
                "Run resumed" if resumed else "Run initialized",
                extra={"run_id": self.run_id, "run_dir": str(self.path)},
            )
            if params:
                self.params(**params)
        except BaseException:
            self._release()
            raise

    # -- creation -------------------------------------------------------------------
    def _make_directory(self, *, overwrite: bool, resume: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_symlink():
            raise ValueError(
                f"run_id: {str(self.path)!r} is a symlink; refusing to write through it"
            )
        if self.path.exists():
            if overwrite:
                shutil.rmtree(self.path)
            elif not resume:
                raise FileExistsError(f"Run directory {self.path} already exists.")
        # Without resume, mkdir is the atomic claim: two creators cannot both win.
        self.path.mkdir(exist_ok=resume)
        for sub in _SUBDIRS:
            (self.path / sub).mkdir(exist_ok=True)

    def _write_initial_metadata(self, resume: bool) -> bool:
        meta_path = self.path / "metadata.json"
        identity = identity_fields()  # may import pydantic: not while holding the lock
        with self._lock:
            existing = read_json(meta_path, None) if resume else None
            if isinstance(existing, dict) and existing.get("status"):
                fields = {
                    **identity,
                    "status": "initialized",
                    "resumed_time": now(),
                    "resume_count": int(existing.get("resume_count", 0) or 0) + 1,
                }
                for stale in ("end_time", "runtime_sec", "failure_reason"):
                    existing.pop(stale, None)
                atomic_write_bytes(meta_path, dump_json({**existing, **fields}))
                return True
            fields = {
                **identity,
                "run_id": self.run_id,
                "start_time": now(),
                "status": "initialized",
            }
            atomic_write_bytes(meta_path, dump_json(fields))
            return False

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunReader:
        """Open a run directory (ours or notata's) for reading.

        Args:
            path: the ``log_<run_id>`` directory.

        Returns:
            A :class:`RunReader`.

        Raises:
            FileNotFoundError: the path does not exist.
            ValueError: the directory has no ``metadata.json``.
        """
        return RunReader(path)

    # -- state --------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once the run has been marked complete or failed."""
        return self._closed

    @property
    def status(self) -> str:
        """The status in ``metadata.json``: ``initialized``, ``complete`` or ``failed``."""
        meta = read_json(self.path / "metadata.json", {})
        return str(meta.get("status", "unknown")) if isinstance(meta, dict) else "unknown"

    @property
    def elapsed(self) -> float:
        """Seconds since the run was opened."""
        return time.monotonic() - self._t0

    @property
    def records(self) -> dict[str, int]:
        """Records written to the run's logs so far, per level name."""
        return self._handler.counts_snapshot()

    def _ensure_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"run {self.run_id!r} is closed")

    def _note(self, message: str) -> None:
        self.logger.info(message, extra={"run_id": self.run_id})

    # -- notata's metadata and params ---------------------------------------------------
    def meta(self, **fields: Any) -> dict[str, Any]:
        """Merge fields into ``metadata.json`` (locked, atomic).

        Args:
            **fields: the keys to set (JSON-serialisable; numpy values converted).

        Returns:
            The metadata as written.
        """
        return merge_json_object(
            self.path / "metadata.json", self._lock, mask_secrets(to_plain(fields, for_yaml=False))
        )

    def params(self, ext: str = "yaml", **kwargs: Any) -> dict[str, Any]:
        """Merge parameters into ``params.yaml`` (or ``params.json``), atomically.

        The YAML is safe YAML: numpy scalars, paths and tuples are converted so
        ``yaml.safe_load`` (notata's reader) reads it.

        Args:
            ext: ``"yaml"`` or ``"json"``.
            **kwargs: the parameters.

        Returns:
            The merged parameters.

        Raises:
            ValueError: ``ext`` is neither ``yaml`` nor ``json``.
            RuntimeError: the run is closed.
        """
        if ext not in ("yaml", "json"):
            raise ValueError("ext: must be 'yaml' or 'json'")
        self._ensure_open()
        path = self.path / f"params.{ext}"
        with self._lock:
            merged = {
                **RunReader.read_params(self.path),
                **mask_secrets(to_plain(kwargs, for_yaml=ext == "yaml")),
            }
            if ext == "yaml":
                data = yaml.safe_dump(merged, sort_keys=True, allow_unicode=True).encode("utf-8")
            else:
                data = dump_json(merged)
            atomic_write_bytes(path, data)
        self._note(f"Saved params ({ext}) in {path.name}")
        return merged

    # -- the end of the run -------------------------------------------------------------
    def mark_complete(self) -> None:
        """Mark the run ``complete``, write its canonical line and close it; idempotent."""
        self._finish("complete", None, None)

    def mark_failed(self, reason: str | BaseException) -> None:
        """Mark the run ``failed`` with a reason, write its canonical line and close it.

        Args:
            reason: a short description, or the exception (idempotent: a run
                already ended keeps its status).
        """
        if isinstance(reason, BaseException):
            exc: BaseException | None = reason
            text = str(reason) or type(reason).__name__
        else:
            exc, text = None, str(reason)
        self._finish("failed", text, exc)

    def close(self) -> None:
        """End the run (as ``complete`` unless already marked); idempotent."""
        self._finish("complete", None, None)

    def flush(self) -> None:
        """Make the run's logs and metric rows durable (fsync)."""
        self._handler.flush()
        self._metrics.flush()

    def finalize(self) -> dict[str, Any]:
        """End the run and return what it captured (Capture's ``finalize``).

        Returns:
            ``status``, ``last_metrics`` and the ``artifacts`` pointers.
        """
        self.close()
        reader = RunReader(self.path)
        return {
            "status": reader.status,
            "last_metrics": self.last_metrics,
            "artifacts": reader.artifact_pointers,
        }

    def _finish(self, status: str, reason: str | None, exc: BaseException | None) -> None:
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        error: Exception | None = None
        try:
            runtime = round(self.elapsed, 6)
            fields: dict[str, Any] = {"status": status, "end_time": now(), "runtime_sec": runtime}
            if reason is not None:
                fields["failure_reason"] = redact_text(reason)
            try:
                self.meta(**fields)
            except Exception as meta_error:  # still write the line, and close
                error = meta_error
                diagnose(
                    f"rundir:{self.path}",
                    f"the end of run {self.run_id!r} could not be recorded in metadata.json: "
                    f"{type(meta_error).__name__}",
                )
            self._status = status
            self._canonical_line(status, reason, exc, runtime)
            session = active_session()
            last = self.last_metrics
            if session is not None and last:
                session.add(last_metrics=last)
        finally:
            self._release()
        # Never hide the exception that ended the run behind our own.
        if error is not None and exc is None:
            raise error

    def _canonical_line(
        self, status: str, reason: str | None, exc: BaseException | None, runtime: float
    ) -> None:
        failed = status == "failed"
        extra: dict[str, Any] = {
            "run_id": self.run_id,
            "run_dir": str(self.path),
            "status": "fail" if failed else "success",
            "event_type": "stage_failure" if failed else "stage_complete",
            "duration_s": runtime,
            "records": self._handler.counts_snapshot(),
        }
        if self._handler.first_error is not None:
            extra["first_error"] = self._handler.first_error
        if self.last_metrics:
            extra["last_metrics"] = self.last_metrics
        if self._metrics.last_step is not None:
            extra["last_step"] = self._metrics.last_step
        if failed:
            extra["failure_reason"] = redact_text(reason or "")
        # With the exception, the renderer adds error_type and the (redacted) stack_trace.
        exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
        message = "Marked failed: " + (reason or "") if failed else "Marked complete"
        self.logger.log(
            logging.ERROR if failed else logging.INFO, message, extra=extra, exc_info=exc_info
        )

    def _release(self) -> None:
        root = logging.getLogger()
        if self._handler in root.handlers:
            root.removeHandler(self._handler)
            root_level_guard.release()
        self._handler.close()
        metrics = getattr(self, "_metrics", None)
        if metrics is not None:
            metrics.close()
        atexit.unregister(self._atexit)
        self._closed = True

    def _atexit(self) -> None:
        self.mark_failed("the process exited without closing the run")

    # -- context manager and notata's logging methods -----------------------------------
    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        if exc is None:
            self.mark_complete()
        else:
            self.mark_failed(exc)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<RunDirectory {self.run_id!r} {state} at {str(self.path)!r}>"
