"""``aind-log view``: the records of JSONL files as readable lines."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import IO, Any, BinaryIO, TextIO

import click

from .._console import format_text
from ._common import (
    EXIT_OK,
    Line,
    LineReader,
    escape,
    expand_inputs,
    parse_event,
    stops_on_broken_pipe,
)
from ._filters import RecordFilter, parse_level, parse_since, parse_where
from ._output import use_colour

__all__ = ["view"]

#: How often ``--follow`` looks for new lines.
POLL_INTERVAL_S = 0.2
_MARK = "\x1b[1;35m"
_DIM = "\x1b[2m"
_RESET = "\x1b[0m"


class _Printer:
    """Writes what ``view`` shows: records, marked bad lines, file headers."""

    def __init__(self, *, colour: bool, as_json: bool, headers: bool) -> None:
        self.colour, self.as_json, self.headers = colour, as_json, headers
        self.out: TextIO = sys.stdout
        self.raw_out: BinaryIO = sys.stdout.buffer
        self.shown = 0
        self.bad = 0

    def header(self, path: str) -> None:
        if self.headers and not self.as_json:
            text = f"==> {escape(path)} <=="
            self.out.write(f"{_DIM}{text}{_RESET}\n" if self.colour else text + "\n")

    def record(self, raw: bytes, event: dict[str, Any]) -> None:
        self.shown += 1
        if self.as_json:
            self.raw_out.write(raw + b"\n")
        else:
            self.out.write(format_text(event, colour=self.colour) + "\n")

    def not_json(self, path: str, line: Line) -> None:
        self.bad += 1
        what = "not JSON" if line.complete else "truncated line"
        text = escape(line.raw.decode("utf-8", "replace"))
        where = f"{escape(path)}:{line.lineno}"
        if self.colour:
            shown = f"{_MARK}!! {what}{_RESET} {_DIM}{where}{_RESET} {text}\n"
        else:
            shown = f"!! {what} ({where}): {text}\n"
        if self.as_json:  # stdout stays valid JSONL; the mark goes to stderr
            sys.stderr.write(shown)
        else:
            self.out.write(shown)

    def note(self, path: str, message: str) -> None:
        self.flush()
        sys.stderr.write(f"aind-log view: {escape(path)}: {message}\n")
        sys.stderr.flush()

    def flush(self) -> None:
        if self.as_json:
            self.raw_out.flush()
        self.out.flush()


def _show(
    printer: _Printer,
    path: str,
    lines: Iterable[Line],
    keep: RecordFilter,
    *,
    hold_last: bool = False,
) -> bytes:
    """Show the lines; with ``hold_last``, return an unfinished last line instead."""
    for line in lines:
        if hold_last and not line.complete:
            return line.raw  # still being written: the follower completes it
        if not line.raw.strip():
            continue
        event = parse_event(line.raw)
        if event is None:
            printer.not_json(path, line)
        elif keep.matches(event):
            printer.record(line.raw, event)
    return b""


class _Tail:
    """Follows one growing file: new complete lines, truncation, rotation."""

    def __init__(self, path: str, handle: IO[bytes], lineno: int, pending: bytes) -> None:
        self.path, self.handle, self.lineno, self.pending = path, handle, lineno, pending
        self.inode = os.fstat(handle.fileno()).st_ino

    def poll(self, printer: _Printer) -> list[Line]:
        try:
            stat = os.stat(self.path)
        except OSError:
            stat = None  # moved away: read what is left of the open file
        if stat is not None and stat.st_size < self.handle.tell() and stat.st_ino == self.inode:
            printer.note(self.path, "truncated: reading it from the start")
            self.handle.seek(0)
            self.pending, self.lineno = b"", 0
        data = self.handle.read()
        if not data and stat is not None and stat.st_ino != self.inode:
            self.handle.close()  # rotated: the old file is finished, follow the new one
            self.handle = open(self.path, "rb")  # noqa: SIM115 - kept open while following
            self.inode, self.pending, self.lineno = stat.st_ino, b"", 0
            printer.note(self.path, "replaced: reading the new file")
            data = self.handle.read()
        if not data:
            return []
        parts = (self.pending + data).split(b"\n")
        self.pending = parts.pop()
        lines = []
        for part in parts:
            self.lineno += 1
            lines.append(Line(self.lineno, part.removesuffix(b"\r"), True))
        return lines


@click.command("view")
@click.argument("paths", nargs=-1, required=True, metavar="FILE|DIR...")
@click.option(
    "--level", "-l", "level", metavar="LEVEL",
    help="Show only records at this level or above (DEBUG, INFO, WARNING, ERROR, CRITICAL).",
)  # fmt: skip
@click.option(
    "--where", "-w", "where", multiple=True, metavar="KEY=VALUE",
    help="Show only records whose KEY equals VALUE (repeat: all must hold; a.b reaches "
    "into nested objects).",
)  # fmt: skip
@click.option(
    "--since", "-s", "since", metavar="WHEN",
    help="Show only records from WHEN on: a duration back from now (30s, 15m, 2h, 1d) or "
    "a UTC date or time (2026-02-09, 2026-02-09T21:00:00Z).",
)  # fmt: skip
@click.option(
    "--follow", "-f", is_flag=True, help="Keep reading files as they grow (Ctrl-C stops)."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the matching lines as they are (JSON)."
)
@click.option(
    "--color/--no-color", "colour", default=None,
    help="Colour the output (default: on a terminal, unless NO_COLOR is set).",
)  # fmt: skip
@stops_on_broken_pipe
def view(  # noqa: PLR0917 - click passes every option
    paths: tuple[str, ...],
    level: str | None,
    where: tuple[str, ...],
    since: str | None,
    follow: bool,
    as_json: bool,
    colour: bool | None,
) -> int:
    """Show log records as readable, coloured lines.

    FILE is a JSONL log file (gzip files too; - is standard input). DIR is a run
    directory (its log.jsonl) or any directory (every *.jsonl and *.jsonl.gz in
    it). A line that is not JSON is shown as it is, marked with "!!", and viewing
    goes on.

    \b
    Examples:
      aind-log view /results/logs/my-capsule.jsonl
      aind-log view run_dir/ --level WARNING
      aind-log view log.jsonl.gz --where subject_id=123456 --since 2h
      aind-log view -f log.jsonl
      aind-log view log.jsonl --json --level ERROR | jq .message

    \b
    Exit codes: 0 shown (even when some lines are not JSON); 2 a bad option or a
    missing file.
    """  # noqa: D301 - click needs the \b (backspace) paragraph marks
    keep = RecordFilter(
        min_level=parse_level(level) if level else None,
        where=parse_where(where),
        since=parse_since(since) if since else None,
    )
    files = expand_inputs(paths)
    printer = _Printer(
        colour=use_colour(colour, sys.stdout) and not as_json,
        as_json=as_json,
        headers=len(files) > 1,
    )
    readers = [LineReader(path) for path in files]  # every file opens, or nothing is shown
    try:
        return _view_files(printer, files, readers, keep, follow=follow)
    except KeyboardInterrupt:
        if follow:
            return EXIT_OK  # Ctrl-C is the way to stop following, even mid-file
        raise


def _view_files(
    printer: _Printer,
    files: list[str],
    readers: list[LineReader],
    keep: RecordFilter,
    *,
    follow: bool,
) -> int:
    """Show every file, then (with ``follow``) what is added to them, until Ctrl-C."""
    tails: list[_Tail] = []
    for path, reader in zip(files, readers, strict=True):
        printer.header(path)
        followed = follow and not reader.gzip and path != "-"
        pending = _show(printer, path, reader, keep, hold_last=followed)
        if reader.error:
            printer.flush()
            printer.note(path, reader.error)
        if followed:
            tails.append(_Tail(path, reader.handle, reader.lineno - bool(pending), pending))
        else:
            reader.close()
        printer.flush()
    if not tails:
        return EXIT_OK
    while True:
        got = False
        for tail in tails:
            lines = tail.poll(printer)
            if lines:
                got = True
                if len(tails) > 1:
                    printer.header(tail.path)
                _show(printer, tail.path, lines, keep)
                printer.flush()
        if not got:
            time.sleep(POLL_INTERVAL_S)
