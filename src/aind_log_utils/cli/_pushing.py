"""The work behind ``aind-log push``: the sink, the reading loop, waiting, progress."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._common import CliError, LineReader, parse_event

__all__ = ["Progress", "SinkOptions", "count_spool", "drain", "make_sink", "push_file", "totals"]

#: Records (and bytes) handed to the sink before waiting for Loki to take them: the
#: engine's queue never overflows, and a push that gives up knows where it stopped.
CHUNK_RECORDS = 1000
CHUNK_BYTES = 2 * 1024 * 1024
#: How long one wait for the sink lasts before the counters are looked at again.
_WAIT_S = 0.25


@dataclass(frozen=True)
class SinkOptions:
    """The Loki sink's connection options, as given on the command line."""

    url: str
    labels: dict[str, str] = field(default_factory=dict)
    tenant_id: str | None = None
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    verify: bool | str = True


def make_sink(
    options: SinkOptions, *, program: str, spool_dir: Path | None = None, replay: bool = False
) -> Any:
    """Build the live Loki sink for the command line.

    Args:
        options: the connection options.
        program: the name for records that name no program (``service_name``).
        spool_dir: the spool directory (replay); None for a file push, which spools
            nothing: the file itself is the durable copy.
        replay: replay the spool's orphaned files at start.

    Returns:
        A started :class:`~aind_log_utils._loki.LokiSink`.

    Raises:
        CliError: the sink refused an option (bad URL, label, credentials).
    """
    from .._loki import LokiSink

    # Thread delivery: the push is the whole program, its progress comes from the
    # engine's counters, and the replay takes over this process's own claim.
    engine: dict[str, Any] = {"replay_on_start": replay, "spool": replay, "delivery": "thread"}
    if spool_dir is not None:
        engine["spool_dir"] = spool_dir
    try:
        return LokiSink(
            options.url,
            program=program,
            labels=options.labels or None,
            tenant_id=options.tenant_id,
            username=options.username,
            password=options.password,
            bearer_token=options.bearer_token,
            verify=options.verify,
            **engine,
        )
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from None


def totals(counters: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise the sink's counters: numbers as ints, reasons as dicts."""
    out: dict[str, Any] = {}
    for name in ("sent", "retried", "spooled", "replayed"):
        value = counters.get(name, 0)
        out[name] = int(value) if isinstance(value, (int, float)) else 0
    for name in ("rejected", "dropped"):
        value = counters.get(name, {})
        if isinstance(value, Mapping):
            out[name] = {str(k): int(v) for k, v in value.items() if v}
        else:
            out[name] = {"count": int(value)} if value else {}
    return out


class Progress:
    """A rich progress bar on stderr, or nothing.

    Args:
        enabled: show it; None: only when stderr is a terminal.
    """

    def __init__(self, enabled: bool | None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None
        self._task: Any = None

    def start(self, total: float | None, description: str) -> None:
        """Start a bar (one per file) with ``total`` units (None: unknown)."""
        if not self.enabled:
            return
        if self._bar is None:
            from rich.progress import (
                BarColumn,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            from .. import _diagnostics
            from ._output import console

            # Retries are shown in the bar; the engine's stderr lines would tear it.
            _diagnostics.set_quiet(True)
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[status]}"),
                console=console(stderr=True),
            )
            self._bar.start()
        self._task = self._bar.add_task(description, total=total, status="")

    def update(self, completed: float | None = None, status: str = "") -> None:
        """Move the bar and set its status text."""
        if self._bar is not None and self._task is not None:
            if completed is None:
                self._bar.update(self._task, status=status)
            else:
                self._bar.update(self._task, completed=completed, status=status)

    def stop(self) -> None:
        """Remove nothing, stop refreshing; idempotent."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _status(counts: Mapping[str, Any]) -> str:
    text = f"{counts['sent']:,} sent"
    if counts["retried"]:
        text += f", {counts['retried']} retried"
    refused = sum(counts["rejected"].values())
    if refused:
        text += f", {refused:,} refused"
    return text


def drain(
    sink: Any,
    bar: Progress,
    timeout_s: float,
    *,
    done: Callable[[], bool],
    completed: Callable[[], float | None] = lambda: None,
) -> bool:
    """Wait until ``done()``, as long as Loki keeps taking records.

    Args:
        sink: the Loki sink.
        bar: the progress bar to keep up to date.
        timeout_s: give up after this long with no record taken or refused.
        done: says whether the wait is over (it may itself wait briefly).
        completed: the bar's position.

    Returns:
        True when done, False when Loki took nothing for ``timeout_s``.
    """
    moved, since, told = -1, time.monotonic(), False
    while True:
        finished = done()
        counts = totals(sink.counters())
        bar.update(completed(), _status(counts))
        if finished:
            return True
        now = time.monotonic()
        progress = (
            counts["sent"] + sum(counts["rejected"].values()) + sum(counts["dropped"].values())
        )
        if progress != moved:
            moved, since, told = progress, now, False
        elif now - since > timeout_s:
            return False
        elif counts["retried"] and not told and not bar.enabled:
            told = True
            sys.stderr.write(
                f"aind-log push: Loki is not taking records; retrying for up to {timeout_s:g}s\n"
            )
            sys.stderr.flush()


def _position(reader: LineReader) -> float | None:
    handle: Any = reader.handle
    inner = getattr(handle, "fileobj", None) if reader.gzip else handle
    try:
        return float(inner.tell()) if inner is not None else None
    except (OSError, ValueError, AttributeError):
        return None


def program_of(event: Mapping[str, Any], default: str) -> str:
    """The live sink's ``service_name`` for a record: the program that wrote it.

    ``setup_logging`` names the program after ``process_name``, else
    ``software_name``, else the script; both fields are on every record it writes.
    """
    for name in ("process_name", "software_name"):
        value = event.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return default


def push_file(
    path: str, options: SinkOptions, *, program: str, timeout_s: float, bar: Progress
) -> dict[str, Any]:
    """Push one file's records through Loki sinks (one per program), in chunks.

    Args:
        path: the file (``-``: standard input).
        options: the connection options.
        program: the ``service_name`` for records that name no program.
        timeout_s: give up after this long with nothing taken.
        bar: the progress bar.

    Returns:
        ``path``, ``lines`` read, ``records`` submitted, ``delivered``, ``skipped``
        (not JSON), ``no_timestamp``, ``retried``, ``rejected`` and ``dropped``
        (reason -> count), ``gave_up``, ``damaged`` (a truncated gzip, else ""),
        ``timeout_s``.

    Raises:
        CliError: the file cannot be opened, or the sink refused an option.
    """
    from .._loki import timestamp_ns

    reader = LineReader(path)
    try:
        size = os.path.getsize(path) if path != "-" else None
    except OSError:
        size = None
    sinks: dict[str, Any] = {}
    group = _SinkGroup(sinks)
    bar.start(size, Path(path).name if path != "-" else "stdin")
    records = skipped = no_timestamp = pending = pending_bytes = 0
    gave_up = False

    def position() -> float | None:
        return _position(reader)

    try:
        with reader:
            for line in reader:
                if not line.raw.strip():
                    continue
                event = parse_event(line.raw)
                if event is None:
                    skipped += 1
                    continue
                if timestamp_ns(event) is None:
                    no_timestamp += 1  # Loki needs a time; the sink would drop it unseen
                    continue
                name = program_of(event, program)
                sink = sinks.get(name)
                if sink is None:
                    sink = sinks[name] = make_sink(options, program=name)
                sink.push_event(event, line.raw)
                records += 1
                pending += 1
                pending_bytes += len(line.raw)
                if pending >= CHUNK_RECORDS or pending_bytes >= CHUNK_BYTES:
                    pending = pending_bytes = 0
                    if not drain(group, bar, timeout_s, done=group.flushed, completed=position):
                        gave_up = True
                        break
            if not gave_up:
                gave_up = not drain(group, bar, timeout_s, done=group.flushed, completed=position)
    finally:
        for sink in sinks.values():
            sink.close(0.0 if gave_up else 5.0)
    counts = totals(group.counters())
    return {
        "path": path,
        "lines": reader.lineno,
        "records": records,
        "delivered": counts["sent"],
        "skipped": skipped,
        "no_timestamp": no_timestamp,
        "retried": counts["retried"],
        "rejected": counts["rejected"],
        "dropped": counts["dropped"],
        "gave_up": gave_up,
        "damaged": reader.error or "",
        "timeout_s": timeout_s,
    }


class _SinkGroup:
    """Several sinks (one per program) waited on and counted as one."""

    def __init__(self, sinks: dict[str, Any]) -> None:
        self.sinks = sinks

    def flushed(self) -> bool:
        if not self.sinks:
            return True
        share = _WAIT_S / len(self.sinks)
        return all([bool(sink.flush(share)) for sink in self.sinks.values()])

    def counters(self) -> dict[str, Any]:
        merged: dict[str, Any] = {"sent": 0, "retried": 0, "spooled": 0, "replayed": 0,
                                  "rejected": {}, "dropped": {}}  # fmt: skip
        for sink in self.sinks.values():
            counts = totals(sink.counters())
            for name in ("sent", "retried", "spooled", "replayed"):
                merged[name] += counts[name]
            for name in ("rejected", "dropped"):
                for reason, count in counts[name].items():
                    merged[name][reason] = merged[name].get(reason, 0) + count
        return merged


def count_spool(spool_dir: Path) -> tuple[list[Path], int]:
    """Claim the spool files whose writers are gone, and count their records.

    Claiming first (an atomic rename, as the engine does) tells exactly what this
    replay will send; the sink's engine then takes the files over from this claim,
    which belongs to no live engine.

    Args:
        spool_dir: the spool directory.

    Returns:
        The claimed files and the records they hold.

    Raises:
        CliError: the directory cannot be read.
    """
    from .._delivery._spool import Spool, read_segment

    try:
        spool = Spool(spool_dir, max_bytes=1 << 40, label="aind-log push")
    except OSError as exc:
        raise CliError(f"{spool_dir}: cannot read the spool: {exc.strerror or exc}") from None
    try:
        claimed = spool.claim_orphans()
    finally:
        spool.release()  # the token is no live engine's: the sink's engine may claim again
    items = 0
    for path in claimed:
        try:
            items += len(read_segment(path).items)
        except OSError:
            continue
    return claimed, items
