"""A realistic Code Ocean capsule using aind-log-utils.

Run it with::

    python examples/capsule.py

It writes JSON lines to the console and to ``results/logs/capsule.jsonl`` (or the
path given as the first argument), binds context for a processing stage, logs
extras, survives a failing unit of work, and never writes its database password.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pydantic import BaseModel, SecretStr

from aind_log_utils import log_context, setup_logging

logger = logging.getLogger("capsule")


class DatabaseConfig(BaseModel):
    """Connection settings; the password must never reach a log line."""

    host: str
    user: str
    password: SecretStr


def sort_probe(probe: str, n_units: int) -> int:
    """Pretend to spike-sort one probe."""
    if n_units < 0:
        raise ValueError(f"probe {probe} reported a negative unit count")
    logger.info("probe sorted", extra={"probe": probe, "n_units": n_units, "drift_um": 3.5})
    return n_units


def main(log_path: str) -> int:
    """Run the capsule; returns the exit code."""
    db = DatabaseConfig(
        host="db.example.org", user="capsule", password=SecretStr("pa55-w0rd-never-logged")
    )
    session = setup_logging(
        "spike-sorting-capsule",
        subject_id="123456",
        asset_name="ecephys_123456_2026-01-01_23-00-00",
        pipeline_name="ephys-pipeline",
        log_file=log_path,
        secrets=[db.password],
    )
    logger.info("connecting to the database", extra={"db": db})
    logger.debug("not shown: the level is INFO")
    total = 0
    with log_context(stage="sorting"):
        for probe, n_units in [("ProbeA", 312), ("ProbeB", -1), ("ProbeC", 287)]:
            try:
                total += sort_probe(probe, n_units)
            except ValueError:
                logger.exception("sorting failed", extra={"probe": probe})
    logger.warning("connection string was postgres://capsule:pa55-w0rd-never-logged@db/x")
    session.add(units_total=total, probes=3)
    logger.info("done", extra={"units_total": total})
    return 0


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else str(Path("results") / "logs" / "capsule.jsonl")
    raise SystemExit(main(target))
