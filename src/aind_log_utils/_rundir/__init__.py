"""Run directories in the notata layout, with the run's logs, metrics and artifacts.

``RunDirectory`` writes one run (``log_<run_id>/``) the way notata 0.3.0 writes
and reads it, plus ``log.jsonl`` and the LogStore files; ``RunReader`` and
``list_runs`` read ours and notata's, crashed runs included.
"""

from __future__ import annotations

from ._directory import RUN_LOGGER, RunDirectory
from ._reader import CRASHED, RUNNING, RunReader, effective_status, list_runs

__all__ = [
    "CRASHED",
    "RUNNING",
    "RUN_LOGGER",
    "RunDirectory",
    "RunReader",
    "effective_status",
    "list_runs",
]
