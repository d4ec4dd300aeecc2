"""Reading run directories: ours and notata's, crashed runs included.

A run killed by SIGKILL never writes its end: its ``metadata.json`` still says
``initialized``. Ours record the writer's ``pid``, ``hostname`` and process
start time, so a reader on the same host tells a live run (``running``) from a
dead one (``crashed``), even when the pid has been reused. The file keeps
notata's status values; only what readers report changes.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from ._atomic import read_json
from ._metrics import ARTIFACTS_FILE, HYPERPARAMS_FILE, METRICS_FILE
from ._paths import check_name, resolve_inside

__all__ = ["CRASHED", "RUNNING", "RunReader", "effective_status", "list_runs"]

#: The status readers report for a run whose writer died before ending it.
CRASHED = "crashed"
#: The status readers report for an unfinished run whose writer is alive.
RUNNING = "running"
#: Process start times may differ by rounding between reads; more than this
#: means the pid now belongs to another process.
_CREATE_TIME_TOLERANCE_S = 1.0


def _pid_alive(pid: int, create_time: object) -> bool:
    import psutil

    if pid <= 0 or not psutil.pid_exists(pid):
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        if isinstance(create_time, (int, float)) and not isinstance(create_time, bool):
            return abs(process.create_time() - float(create_time)) <= _CREATE_TIME_TOLERANCE_S
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # exists, but we may not look at it (another user's process)
    return True


def effective_status(meta: Mapping[str, Any]) -> str:
    """The status a reader should report for a run's metadata.

    Args:
        meta: the content of ``metadata.json``.

    Returns:
        ``complete`` or ``failed`` as written; for an unfinished run written on
        this host with a recorded pid, ``running`` when that process is alive
        and ``crashed`` when it is gone; otherwise the recorded status
        (``initialized`` for a notata run, or ``unknown``).
    """
    status = meta.get("status")
    if not isinstance(status, str) or not status:
        return "unknown"
    if status != "initialized":
        return status
    pid = meta.get("pid")
    if (
        not isinstance(pid, int)
        or isinstance(pid, bool)
        or meta.get("hostname") != socket.gethostname()
    ):
        return status  # a notata run, or another host's: nothing to check
    return RUNNING if _pid_alive(pid, meta.get("pid_create_time")) else CRASHED


class RunReader:
    """Read one run directory, written by :class:`RunDirectory` or by notata.

    Args:
        path: the ``log_<run_id>`` directory.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: it has no ``metadata.json`` (not a run).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.fspath(path))
        if not self.path.exists():
            raise FileNotFoundError(f"No such path: {self.path}")
        if not (self.path / "metadata.json").is_file():
            raise ValueError(f"{self.path} is not a run directory (no metadata.json)")

    @property
    def run_id(self) -> str:
        """The run's id (from the metadata, else the directory name)."""
        recorded = self.meta.get("run_id")
        if isinstance(recorded, str) and recorded:
            return recorded
        name = self.path.name
        return name[len("log_") :] if name.startswith("log_") else name

    @property
    def meta(self) -> dict[str, Any]:
        """The content of ``metadata.json`` (``{}`` when unreadable)."""
        meta = read_json(self.path / "metadata.json", {})
        return meta if isinstance(meta, dict) else {}

    @property
    def recorded_status(self) -> str:
        """The status as written: ``initialized``, ``complete``, ``failed``."""
        return str(self.meta.get("status", "unknown"))

    @property
    def status(self) -> str:
        """The effective status: the recorded one, or ``running``/``crashed``."""
        return effective_status(self.meta)

    @property
    def crashed(self) -> bool:
        """True when the run's writer died without ending it."""
        return self.status == CRASHED

    @staticmethod
    def read_params(path: Path) -> dict[str, Any]:
        """Read ``params.yaml`` (preferred, as notata) or ``params.json``.

        Args:
            path: the run directory.

        Returns:
            The parameters, ``{}`` when there are none.
        """
        yml = path / "params.yaml"
        if yml.is_file():
            import yaml

            loaded = yaml.safe_load(yml.read_text(encoding="utf-8"))
            return loaded if isinstance(loaded, dict) else {}
        params = read_json(path / "params.json", {})
        return params if isinstance(params, dict) else {}

    @property
    def params(self) -> dict[str, Any]:
        """The run's parameters."""
        return self.read_params(self.path)

    @property
    def hyperparams(self) -> dict[str, Any]:
        """The merged ``hyperparams.json`` (``{}`` when none)."""
        data = read_json(self.path / HYPERPARAMS_FILE, {})
        return data if isinstance(data, dict) else {}

    def iter_metrics(self, split: str | None = None) -> Iterator[dict[str, Any]]:
        """Yield the rows of ``metrics.jsonl`` (a torn last row is skipped).

        Args:
            split: only rows of this split.

        Yields:
            ``{ts, step, split, metrics}`` rows, in file order.
        """
        yield from _jsonl_rows(self.path / METRICS_FILE, split)

    def metrics(self, split: str | None = None) -> list[dict[str, Any]]:
        """The rows of ``metrics.jsonl`` as a list (see :meth:`iter_metrics`).

        Args:
            split: only rows of this split.

        Returns:
            The rows, in file order.
        """
        return list(self.iter_metrics(split))

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON records of ``log.jsonl`` (a torn line is skipped).

        Returns:
            The records, in file order.
        """
        return list(_jsonl_rows(self.path / "log.jsonl", None))

    @property
    def artifact_pointers(self) -> list[dict[str, Any]]:
        """The ``{name, path, kind, ts}`` pointers of ``artifacts.json``."""
        data = read_json(self.path / ARTIFACTS_FILE, [])
        return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []

    @property
    def artifacts(self) -> list[str]:
        """Every file under ``artifacts/``, relative to it (as notata lists them)."""
        return self._files("artifacts", recursive=True)

    @property
    def plots(self) -> list[str]:
        """The files in ``plots/``."""
        return self._files("plots", recursive=False)

    @property
    def arrays(self) -> list[str]:
        """Array names: ``name`` for ``.npy`` files, ``bundle:key`` in ``.npz`` files."""
        data = self.path / "data"
        if not data.is_dir():
            return []
        keys = [f.stem for f in data.rglob("*.npy")]
        bundles = list(data.rglob("*.npz"))
        if bundles:
            import numpy

            for bundle in bundles:
                try:
                    with numpy.load(bundle) as archive:
                        keys.extend(f"{bundle.stem}:{key}" for key in archive.files)
                except Exception:  # an unreadable bundle lists no keys
                    continue
        return sorted(keys)

    def _files(self, folder: str, *, recursive: bool) -> list[str]:
        root = self.path / folder
        if not root.is_dir():
            return []
        found = root.rglob("*") if recursive else root.iterdir()
        return sorted(
            f.relative_to(root).as_posix()
            for f in found
            # hidden .<name>.*.tmp files are atomic writes a kill interrupted
            if f.is_file() and not (f.name.startswith(".") and f.name.endswith(".tmp"))
        )

    def load_json(self, name: str) -> Any:
        """Load ``artifacts/<name>.json`` (the suffix is optional).

        Args:
            name: the artifact's name.

        Returns:
            The parsed JSON.

        Raises:
            FileNotFoundError: no such artifact.
            ValueError: the name leads outside the run directory.
        """
        path = resolve_inside(self.path, f"artifacts/{check_name(name).removesuffix('.json')}.json")
        # stdlib json, not orjson: notata's json.dump may write NaN/Infinity.
        return json.loads(path.read_text(encoding="utf-8"))

    def load_text(self, name: str) -> str:
        """Load ``artifacts/<name>.txt`` (the suffix is optional).

        Args:
            name: the artifact's name.

        Returns:
            The text.

        Raises:
            FileNotFoundError: no such artifact.
            ValueError: the name leads outside the run directory.
        """
        path = resolve_inside(self.path, f"artifacts/{check_name(name).removesuffix('.txt')}.txt")
        return path.read_text(encoding="utf-8")

    def load_array(self, name: str) -> Any:
        """Load ``data/<name>.npy``, or ``bundle:key`` from ``data/<bundle>.npz``.

        Args:
            name: ``"energy"`` or ``"trajectory:x"``.

        Returns:
            The numpy array.

        Raises:
            FileNotFoundError: no such array or bundle.
            KeyError: no such key in the bundle.
            ValueError: the name leads outside the run directory.
            ImportError: numpy is not installed.
        """
        from ._saving import require_numpy

        numpy = require_numpy()
        if ":" in name:
            bundle, key = name.split(":", 1)
            path = resolve_inside(self.path, f"data/{check_name(bundle)}.npz")
            if not path.is_file():
                raise FileNotFoundError(f"No such bundle: {bundle}.npz")
            with numpy.load(path, allow_pickle=False) as archive:
                if key not in archive.files:
                    raise KeyError(f"No key {key!r} in bundle {bundle + '.npz'!r}")
                return archive[key]
        path = resolve_inside(self.path, f"data/{check_name(name)}.npy")
        if not path.is_file():
            raise FileNotFoundError(f"No such array: {name}.npy")
        return numpy.load(path, allow_pickle=False)

    def summary(self) -> dict[str, Any]:
        """One line's worth for listings (the CLI's ``runs``).

        Returns:
            ``run_id``, ``path``, ``status`` (effective), ``recorded_status``,
            ``start_time``, ``end_time``, ``runtime_sec``, ``failure_reason``,
            ``pid``, ``hostname`` (the ones known).
        """
        meta = self.meta
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "path": str(self.path),
            "status": effective_status(meta),
            "recorded_status": str(meta.get("status", "unknown")),
        }
        for key in ("start_time", "end_time", "runtime_sec", "failure_reason", "pid", "hostname"):
            if meta.get(key) is not None:
                out[key] = meta[key]
        return out

    def __repr__(self) -> str:
        return f"<RunReader {self.run_id!r} status={self.status} at {str(self.path)!r}>"


def _jsonl_rows(path: Path, split: str | None) -> Iterator[dict[str, Any]]:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        for raw in handle:
            line = raw.strip()
            if not line:
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line a kill tore in two
            if isinstance(row, dict) and (split is None or row.get("split") == split):
                yield row


def list_runs(base_dir: str | os.PathLike[str], *, recursive: bool = False) -> list[RunReader]:
    """Find the run directories under ``base_dir`` (ours and notata's).

    Args:
        base_dir: the directory holding ``log_<run_id>`` folders.
        recursive: also look in sub-folders (e.g. notata's ``<experiment>/runs/``);
            a run's own folders are never searched.

    Returns:
        A reader per run, sorted by start time, then path.
    """
    base = Path(os.fspath(base_dir))
    if not base.is_dir():
        return []
    found: list[RunReader] = []
    if recursive:
        for root, dirs, files in os.walk(base):
            if "metadata.json" in files and Path(root) != base:
                found.append(RunReader(root))
                dirs[:] = []  # never look inside a run
    else:
        for child in base.iterdir():
            if child.is_dir() and (child / "metadata.json").is_file():
                found.append(RunReader(child))
    return sorted(found, key=lambda r: (str(r.meta.get("start_time", "")), str(r.path)))
