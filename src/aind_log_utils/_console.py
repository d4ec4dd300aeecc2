"""The console sink: JSON lines when piped, readable colour text on a terminal."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

from ._diagnostics import diagnose

__all__ = ["ConsoleSink", "format_text"]

ConsoleMode = Literal["auto", "json", "text"]

_COLOURS = {
    "DEBUG": "\x1b[2m",
    "INFO": "\x1b[32m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "CRITICAL": "\x1b[1;41m",
}
_RESET = "\x1b[0m"
_DIM = "\x1b[2m"
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_HIDDEN = frozenset(
    {
        "timestamp",
        "level",
        "message",
        "logger",
        "lineno",
        "process",
        "processName",
        "thread",
        "threadName",
        "stack_trace",
        "stack_info",
    }
)


def _escape(text: str) -> str:
    """Escape control characters so a value can never move the cursor or recolour."""
    return _CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def format_text(event: Mapping[str, Any], *, colour: bool = True) -> str:
    """Render an event as one readable line (plus its traceback, if any).

    Args:
        event: a redacted event dict.
        colour: add ANSI colours.

    Returns:
        ``HH:MM:SS.mmm LEVEL    logger: message key=value ...`` with control
        characters escaped.
    """
    level = str(event.get("level", ""))
    ts = str(event.get("timestamp", ""))
    clock = ts[11:23] if len(ts) >= 23 else ts
    message = _escape(str(event.get("message", "")))
    extras = " ".join(
        f"{_escape(str(k))}={_escape(str(v))}" for k, v in event.items() if k not in _HIDDEN
    )
    logger = _escape(str(event.get("logger", "")))
    if colour:
        head = f"{_DIM}{clock}{_RESET} {_COLOURS.get(level, '')}{level:<8}{_RESET} {_DIM}{logger}:{_RESET}"
        tail = f" {_DIM}{extras}{_RESET}" if extras else ""
    else:
        head = f"{clock} {level:<8} {logger}:"
        tail = f" {extras}" if extras else ""
    text = f"{head} {message}{tail}"
    trace = event.get("stack_trace") or event.get("stack_info")
    if trace:
        # Tracebacks keep their newlines, but nothing else.
        text += "\n" + "\n".join(_escape(part) for part in str(trace).split("\n"))
    return text


class ConsoleSink:
    """Write records to a text stream.

    Args:
        mode: ``"json"`` (one JSON object per line), ``"text"`` (readable), or
            ``"auto"``: text with colour on a terminal, JSON otherwise (as 0.2.x
            printed inside Code Ocean).
        stream: the stream; by default ``sys.stdout`` as it is at each write (so
            pytest's capture and redirections work).

    Raises:
        ValueError: an unknown ``mode``.
    """

    name = "console"

    def __init__(self, mode: ConsoleMode = "auto", stream: TextIO | None = None) -> None:
        if mode not in ("auto", "json", "text"):
            raise ValueError(f"console: expected True, False, 'json' or 'text', got {mode!r}")
        self._stream = stream
        current = stream if stream is not None else sys.stdout
        is_tty = False
        try:
            is_tty = bool(current is not None and current.isatty())
        except Exception:
            is_tty = False
        self.mode: Literal["json", "text"] = (
            ("text" if is_tty else "json") if mode == "auto" else mode
        )
        self.colour = is_tty and self.mode == "text"
        self.write_errors = 0

    def handle_event(
        self, event: Mapping[str, Any], line: bytes, record: logging.LogRecord
    ) -> None:
        """Write the record to the stream; never raises."""
        stream = self._stream if self._stream is not None else sys.stdout
        if stream is None:
            return
        try:
            if self.mode == "json":
                stream.write(line.decode("utf-8"))
            else:
                stream.write(format_text(event, colour=self.colour) + "\n")
            stream.flush()
        except Exception as exc:
            self.write_errors += 1
            diagnose("console", f"cannot write to the console: {type(exc).__name__}")

    def flush(self, timeout_s: float | None = None) -> bool:
        """Flush the stream."""
        stream = self._stream if self._stream is not None else sys.stdout
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            return False
        return True

    def close(self, timeout_s: float | None = None) -> None:
        """Flush; the stream itself is not closed (it is not ours)."""
        self.flush()
