"""``aind-log summary``: what a log file or run says, on one screen."""

from __future__ import annotations

import datetime as _dt
from collections import Counter, deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    LEVELS,
    LineReader,
    escape,
    expand_inputs,
    format_duration,
    parse_event,
    parse_timestamp,
    stops_on_broken_pipe,
)
from ._output import LEVEL_STYLES, STATUS_STYLES, console, dumps_json

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["summary"]

#: ``event_type`` values of canonical (end-of-work) lines.
CANONICAL_TYPES = frozenset({"stage_complete", "stage_failure"})
#: Fields not repeated in the canonical table's details: every record has them.
_COMMON = frozenset(
    {
        "timestamp", "level", "message", "logger", "lineno", "process", "processName",
        "thread", "threadName", "hostname", "software_name", "software_version", "rig_id",
        "instrument_id", "acquisition_name", "subject_id", "specimen_id", "pipeline_name",
        "process_name", "user_id", "asset_name", "log_session", "capsule_id",
        "computation_id", "stack_trace", "stack_info", "status", "event_type", "duration_s",
    }
)  # fmt: skip


class _Tally:
    """Everything ``summary`` reports, gathered in one pass over the lines."""

    def __init__(self, limit: int) -> None:
        self.lines = self.records = self.not_json = 0
        self.levels: Counter[str] = Counter()
        self.first: _dt.datetime | None = None
        self.last: _dt.datetime | None = None
        self.first_text = self.last_text = ""
        self.canonical: deque[dict[str, Any]] = deque(maxlen=limit)  # the latest ones
        self.canonical_total = 0
        self.errors: list[dict[str, Any]] = []  # the first ones
        self.errors_total = 0
        self.damaged: list[str] = []
        self.limit = limit

    def add(self, event: dict[str, Any]) -> None:
        self.records += 1
        level = event.get("level")
        self.levels[level if isinstance(level, str) else str(level)] += 1
        stamp = event.get("timestamp")
        when = parse_timestamp(stamp)
        if when is not None:
            if self.first is None or when < self.first:
                self.first, self.first_text = when, str(stamp)
            if self.last is None or when > self.last:
                self.last, self.last_text = when, str(stamp)
        if event.get("event_type") in CANONICAL_TYPES:
            self.canonical_total += 1
            self.canonical.append(event)
        if isinstance(level, str) and LEVELS.get(level.upper(), 0) >= LEVELS["ERROR"]:
            self.errors_total += 1
            if len(self.errors) < self.limit:
                self.errors.append(event)

    def as_dict(self) -> dict[str, Any]:
        duration = (self.last - self.first).total_seconds() if self.first and self.last else None
        return {
            "lines": self.lines,
            "records": self.records,
            "not_json": self.not_json,
            "levels": dict(sorted(self.levels.items(), key=lambda kv: LEVELS.get(kv[0], 99))),
            "first_timestamp": self.first_text or None,
            "last_timestamp": self.last_text or None,
            "duration_s": duration,
            "canonical_total": self.canonical_total,
            "canonical": list(self.canonical),
            "errors_total": self.errors_total,
            "errors": self.errors,
            "damaged": self.damaged,
        }


def _run_info(path: str) -> dict[str, Any] | None:
    directory = Path(path)
    if not (directory.is_dir() and (directory / "metadata.json").is_file()):
        return None
    from .._rundir import RunReader

    return RunReader(directory).summary()


def _details(event: Mapping[str, Any]) -> str:
    import orjson

    parts = []
    for key, value in event.items():
        if key in _COMMON:
            continue
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _clock(stamp: Any) -> str:
    text = str(stamp or "")
    return text[:19].replace("T", " ") if len(text) >= 19 else text


@click.command("summary")
@click.argument("paths", nargs=-1, required=True, metavar="FILE|RUNDIR...")
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(min=1),
    help="Show at most this many canonical lines (the latest) and errors (the first).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for machines.")
@stops_on_broken_pipe
def summary(paths: tuple[str, ...], limit: int, as_json: bool) -> int:
    """Summarise logs: the canonical lines, records per level, the errors.

    FILE is a JSONL log file (gzip too); RUNDIR is a run directory (its log.jsonl,
    and the run's status from metadata.json, crashed included). Canonical lines
    are the one-line summaries written at the end of each unit of work and of the
    run (event_type stage_complete or stage_failure).

    \b
    Examples:
      aind-log summary /results/logs/my-capsule.jsonl
      aind-log summary runs/log_20260209_211924
      aind-log summary log.jsonl --json | jq .levels

    \b
    Exit codes: 0 summarised; 1 an input file is damaged (a truncated gzip);
    2 a bad option or a missing file.
    """  # noqa: D301 - click needs the \b (backspace) paragraph marks
    runs: list[dict[str, Any]] = []
    files: list[str] = []
    for path in paths:
        run = _run_info(path)
        if run is None:
            files.extend(expand_inputs([path]))
            continue
        runs.append(run)
        log = Path(path) / "log.jsonl"
        if log.is_file():
            files.append(str(log))
    tally = _Tally(limit)
    readers = [LineReader(path) for path in files]
    for path, reader in zip(files, readers, strict=True):
        with reader:
            for line in reader:
                tally.lines += 1
                if not line.raw.strip():
                    continue
                event = parse_event(line.raw)
                if event is None:
                    tally.not_json += 1
                else:
                    tally.add(event)
        if reader.error:
            tally.damaged.append(f"{path}: {reader.error}")
    result = {"inputs": files, "runs": runs, **tally.as_dict()}
    if as_json:
        click.echo(dumps_json(result))
    else:
        _print(result)
    return EXIT_PROBLEMS if tally.damaged else EXIT_OK


def _cell(value: Any, style: str = "") -> Text:
    from rich.text import Text

    return Text(escape(str(value)), style=style)


def _print(result: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    out = console()
    for run in result["runs"]:
        status = str(run.get("status", "unknown"))
        line = Text.assemble(
            "Run ", _cell(run["run_id"], "bold"), ": ", _cell(status, STATUS_STYLES.get(status, "")),
            f"  started {escape(str(run.get('start_time', '-')))}",
            f"  runtime {format_duration(run.get('runtime_sec'))}",
        )  # fmt: skip
        if run.get("failure_reason"):
            line.append(f"  reason: {escape(str(run['failure_reason']))}")
        out.print(line)
    head = Text.assemble(
        _cell(", ".join(result["inputs"]) or "(no log file)", "bold"),
        f": {result['records']:,} record(s)",
    )
    if result["first_timestamp"]:
        head.append(
            f"  {_clock(result['first_timestamp'])} -> {_clock(result['last_timestamp'])}"
            f" ({format_duration(result['duration_s'])})"
        )
    if result["not_json"]:
        head.append(f"  {result['not_json']:,} line(s) not JSON", style="magenta")
    out.print(head)
    for damage in result["damaged"]:
        out.print(Text.assemble(("damaged: ", "red"), escape(damage)))

    levels = Table(title="Records per level", title_justify="left")
    levels.add_column("level")
    levels.add_column("records", justify="right")
    for name, count in result["levels"].items():
        levels.add_row(_cell(name, LEVEL_STYLES.get(name, "")), f"{count:,}")
    out.print(levels)

    shown, total = len(result["canonical"]), result["canonical_total"]
    title = f"Canonical lines ({total:,})" + (f", the latest {shown}" if shown < total else "")
    canonical = Table(title=title, title_justify="left")
    for column in ("time", "level", "message", "status", "duration", "details"):
        canonical.add_column(column, overflow="fold")
    for event in result["canonical"]:
        level, status = str(event.get("level", "")), str(event.get("status", ""))
        duration = event.get("duration_s")
        canonical.add_row(
            _cell(_clock(event.get("timestamp"))),
            _cell(level, LEVEL_STYLES.get(level, "")),
            _cell(event.get("message", "")),
            _cell(status, STATUS_STYLES.get(status, "")),
            format_duration(duration) if isinstance(duration, (int, float)) else "-",
            _cell(_details(event), "dim"),
        )
    out.print(canonical)

    shown, total = len(result["errors"]), result["errors_total"]
    title = f"Errors ({total:,})" + (f", the first {shown}" if shown < total else "")
    errors = Table(title=title, title_justify="left")
    for column in ("time", "level", "logger", "message", "error_type"):
        errors.add_column(column, overflow="fold")
    for event in result["errors"]:
        level = str(event.get("level", ""))
        errors.add_row(
            _cell(_clock(event.get("timestamp"))),
            _cell(level, LEVEL_STYLES.get(level, "")),
            _cell(event.get("logger", "")),
            _cell(event.get("message", "")),
            _cell(event.get("error_type", "")),
        )
    out.print(errors)
