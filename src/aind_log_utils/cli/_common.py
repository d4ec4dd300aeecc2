"""What every ``aind-log`` command shares: exit codes, errors, and reading JSONL input.

Input is read as bytes, line by line, so a huge file never sits in memory; gzip
files are recognised by their magic bytes (not only by a ``.gz`` suffix); a torn
or truncated last line, a line that is not JSON, and a truncated gzip stream are
reported to the caller, never raised.
"""

from __future__ import annotations

import datetime as _dt
import functools
import gzip
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar, cast

import click
import orjson

__all__ = [
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_USAGE",
    "LEVELS",
    "CliError",
    "Line",
    "LineReader",
    "escape",
    "expand_inputs",
    "format_duration",
    "parse_event",
    "parse_timestamp",
    "quiet_stdout",
    "stops_on_broken_pipe",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Success: the command did what was asked (``view`` even when some lines are not JSON).
EXIT_OK = 0
#: The command ran, but the answer is "no": ``validate`` found problems, ``push``
#: could not deliver every record, an input file was damaged (truncated gzip).
EXIT_PROBLEMS = 1
#: A usage error: a bad flag or value, a missing or unreadable file, a bad URL.
EXIT_USAGE = 2
#: A bug in aind-log itself (reported as one line, never a traceback).
EXIT_INTERNAL = 70
#: Interrupted with Ctrl-C (``view -f`` stops this way and exits 0 instead).
EXIT_INTERRUPTED = 130

#: The standard's level strings and numbers (plus the usual aliases, for filtering).
LEVELS: dict[str, int] = {
    "DEBUG": 10,
    "INFO": 20,
    "WARNING": 30,
    "WARN": 30,
    "ERROR": 40,
    "CRITICAL": 50,
    "FATAL": 50,
}

_GZIP_MAGIC = b"\x1f\x8b"
_TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)


class CliError(click.ClickException):
    """A usage error (a bad value, a missing file, a bad URL): one line on stderr, exit 2.

    Args:
        message: what went wrong, already readable (no traceback).
    """

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Line:
    """One line of an input file.

    Attributes:
        lineno: its 1-based number.
        raw: its bytes, without the line ending (LF or CRLF).
        complete: False when the file ended before the line's newline (a torn
            or still-being-written last line).
    """

    lineno: int
    raw: bytes
    complete: bool


def _strip_newline(raw: bytes) -> tuple[bytes, bool]:
    if raw.endswith(b"\n"):
        raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        return raw, True
    return raw, False


class LineReader:
    """Read the lines of a file, gzip file or stdin (``-``), as bytes.

    Iterating yields :class:`Line` objects. Damage that ends the reading (a
    truncated or corrupt gzip stream, an I/O error midway) is not raised: it
    stops the iteration and is kept in :attr:`error`.

    Args:
        path: the file, or ``-`` for standard input.

    Raises:
        CliError: the file cannot be opened.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.error: str | None = None
        self.lineno = 0
        self.gzip = False
        self.handle: IO[bytes] = self._open()

    def _open(self) -> IO[bytes]:
        if self.path == "-":
            return sys.stdin.buffer
        try:
            with open(self.path, "rb") as probe:
                self.gzip = probe.read(2) == _GZIP_MAGIC
            if self.gzip:
                return cast(IO[bytes], gzip.open(self.path, "rb"))
            return open(self.path, "rb")
        except IsADirectoryError:
            raise CliError(f"{self.path}: is a directory") from None
        except FileNotFoundError:
            raise CliError(f"{self.path}: no such file") from None
        except OSError as exc:
            raise CliError(f"{self.path}: cannot read: {exc.strerror or exc}") from None

    def __iter__(self) -> Iterator[Line]:
        try:
            for raw in self.handle:
                self.lineno += 1
                text, complete = _strip_newline(raw)
                yield Line(self.lineno, text, complete)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            detail = str(exc) or type(exc).__name__
            self.error = f"gzip data damaged after line {self.lineno}: {detail}"
        except OSError as exc:
            self.error = f"cannot read after line {self.lineno}: {exc.strerror or exc}"

    def close(self) -> None:
        """Close the file (never standard input)."""
        if self.path != "-":
            self.handle.close()

    def __enter__(self) -> LineReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_log_file(name: str) -> bool:
    return name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz"))


def expand_inputs(paths: Iterable[str]) -> list[str]:
    """Turn the FILE|DIR arguments into the files to read, in a stable order.

    A run directory (one with ``metadata.json``) gives its ``log.jsonl``; any other
    directory gives every ``*.jsonl`` / ``*.jsonl.gz`` file under it, where a run
    directory met on the way again gives only its ``log.jsonl``.

    Args:
        paths: the arguments (``-`` is standard input).

    Returns:
        The files, as given or found.

    Raises:
        CliError: a path does not exist, or a directory holds no log file.
    """
    files: list[str] = []
    for given in paths:
        if given == "-":
            files.append(given)
            continue
        path = Path(given)
        if not path.exists():
            raise CliError(f"{given}: no such file or directory")
        if not path.is_dir():
            files.append(given)
            continue
        found: list[str] = []
        for root, dirs, names in os.walk(path):
            dirs.sort()
            if "metadata.json" in names:
                if "log.jsonl" in names:
                    found.append(os.path.join(root, "log.jsonl"))
                dirs[:] = []  # a run's own folders hold no logs
                continue
            found.extend(os.path.join(root, n) for n in sorted(names) if _is_log_file(n))
        if not found:
            raise CliError(f"{given}: no log file (*.jsonl, *.jsonl.gz) in this directory")
        files.extend(found)
    return files


def parse_event(raw: bytes) -> dict[str, Any] | None:
    """Parse one line as a JSON object.

    Args:
        raw: the line's bytes.

    Returns:
        The object, or None when the line is not JSON or not a JSON object.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def parse_timestamp(value: object) -> _dt.datetime | None:
    """Parse an ISO 8601 timestamp (any UTC offset) into an aware datetime.

    Args:
        value: e.g. ``"2026-02-09T21:19:24.061270Z"``.

    Returns:
        The time (aware; UTC when the text has no offset), or None when the
        value is not such a string or not a real date and time.
    """
    if not isinstance(value, str):
        return None
    match = _TS_RE.match(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, frac, zone = match.groups()
    tz = _dt.timezone.utc
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = _dt.timezone(sign * _dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        return _dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second),
            int((frac or "0")[:6].ljust(6, "0")), tzinfo=tz,
        )  # fmt: skip
    except ValueError:
        return None


def format_duration(seconds: float | None) -> str:
    """Format seconds as ``1h 02m``, ``3m 04s`` or ``5.2s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def escape(text: str) -> str:
    """Escape control characters so that a value can never move the cursor or recolour."""
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", lambda m: f"\\x{ord(m.group()):02x}", text)


def quiet_stdout() -> None:
    """Point stdout at devnull once its reader is gone (``| head``).

    Python flushes stdout again at exit; this keeps that flush from failing a
    second time and printing "Exception ignored ...".
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def stops_on_broken_pipe(func: F) -> F:
    """Make a command stop quietly with exit 0 when its output is closed early.

    Click would exit 1 there; but ``aind-log view big.jsonl | head`` did what the
    user asked.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
            sys.stdout.flush()
            return result
        except BrokenPipeError:
            quiet_stdout()
            return EXIT_OK

    return cast(F, wrapper)
