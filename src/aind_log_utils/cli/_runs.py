"""``aind-log runs``: the run directories under a folder, as a table."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import click

from ._common import EXIT_OK, CliError, escape, format_duration, stops_on_broken_pipe
from ._output import STATUS_STYLES, console, dumps_json

__all__ = ["runs"]

#: The statuses ``--status`` accepts (as readers report them).
STATUSES = ("complete", "failed", "crashed", "running", "initialized", "unknown")


def _runtime(run: dict[str, Any]) -> float | None:
    """The recorded runtime; for a live run, the time since it started."""
    recorded = run.get("runtime_sec")
    if isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
        return float(recorded)
    if run.get("status") == "running":
        try:  # notata's start_time: local time, to the second, no zone
            start = _dt.datetime.fromisoformat(str(run.get("start_time", "")))
        except ValueError:
            return None
        return max(0.0, (_dt.datetime.now(start.tzinfo) - start).total_seconds())
    return None


@click.command("runs")
@click.argument(
    "base_dir", metavar="BASE_DIR",
    type=click.Path(exists=True, file_okay=False, dir_okay=True, path_type=Path),
)  # fmt: skip
@click.option(
    "--recursive", "-r", is_flag=True,
    help="Also look in sub-folders (e.g. notata's <experiment>/runs/).",
)  # fmt: skip
@click.option(
    "--status", "statuses", multiple=True, type=click.Choice(STATUSES),
    help="Show only runs with this status (repeat for several).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for machines.")
@stops_on_broken_pipe
def runs(base_dir: Path, recursive: bool, statuses: tuple[str, ...], as_json: bool) -> int:
    """List the run directories under BASE_DIR: status, start, runtime, failure reason.

    A run's status is what its metadata.json says (complete, failed), or, for a run
    that never ended, running while its process is alive and crashed once it is
    gone (a SIGKILL, an out-of-memory kill, a power cut). Runs written by notata
    are listed too.

    \b
    Examples:
      aind-log runs /results/runs
      aind-log runs experiments/ --recursive --status crashed --status failed
      aind-log runs /results/runs --json | jq '.[] | select(.status == "crashed")'

    \b
    Exit codes: 0 listed (also when there is no run); 2 a bad option or a
    missing directory.
    """  # noqa: D301 - click needs the \b (backspace) paragraph marks
    from .._rundir import list_runs

    try:
        readers = list_runs(base_dir, recursive=recursive)
    except OSError as exc:
        raise CliError(f"{base_dir}: cannot read: {exc.strerror or exc}") from None
    found = []
    for reader in readers:
        info = reader.summary()
        info["runtime_sec"] = _runtime(info)
        if not statuses or info["status"] in statuses:
            found.append(info)
    if as_json:
        click.echo(dumps_json(found))
        return EXIT_OK
    _print(base_dir, found)
    return EXIT_OK


def _print(base_dir: Path, found: list[dict[str, Any]]) -> None:
    from rich.table import Table
    from rich.text import Text

    out = console()
    table = Table(title=f"Runs in {escape(str(base_dir))} ({len(found)})", title_justify="left")
    for column in ("run_id", "status", "start", "runtime", "failure reason"):
        table.add_column(column, overflow="fold")
    for run in found:
        status = str(run["status"])
        runtime = run.get("runtime_sec")
        table.add_row(
            Text(escape(str(run["run_id"]))),
            Text(status, style=STATUS_STYLES.get(status, "")),
            Text(escape(str(run.get("start_time", "-")))),
            format_duration(runtime) + (" (so far)" if status == "running" and runtime else ""),
            Text(escape(str(run.get("failure_reason") or ""))),
        )
    out.print(table)
