"""Checking and resolving ``setup_logging``'s arguments: levels, console, log file, sinks.

Each function raises :class:`TypeError` or :class:`ValueError` naming the argument.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from ._config import FALSE_WORDS, TRUE_WORDS
from ._sink import Sink

__all__ = ["check_sinks", "in_code_ocean", "parse_console", "parse_level", "resolve_log_file"]

#: The words that turn an output off: a false boolean's, and "none".
_OFF_WORDS = FALSE_WORDS | {"none"}


def parse_level(value: object, name: str = "level") -> int:
    """A level name or number as a number.

    Raises:
        TypeError: not a str or an int (a bool is refused); the message names ``name``.
        ValueError: a negative number or an unknown name.
    """
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected a level name or number, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{name}: must not be negative, got {value}")
        return value
    if isinstance(value, str):
        text = value.strip().upper()
        if text.isdigit():
            return int(text)
        if text == "WARN":
            text = "WARNING"
        candidate = logging.getLevelName(text)  # the number for a registered name
        number = candidate if isinstance(candidate, int) else None
        if number is None:
            raise ValueError(f"{name}: unknown level {value!r}")
        return number
    raise TypeError(f"{name}: expected a level name or number, got {type(value).__name__}")


def check_sinks(sinks: object) -> list[Sink]:
    """The extra sinks, each with ``name``, ``handle_event``, ``flush`` and ``close``.

    Raises:
        TypeError: ``sinks`` is not a list of such objects (the message names it).
    """
    if isinstance(sinks, (str, bytes)) or not isinstance(sinks, Iterable):
        raise TypeError(f"sinks: expected a list of sinks, got {type(sinks).__name__}")
    checked = list(sinks)
    for sink in checked:
        if not isinstance(sink, Sink):
            raise TypeError(
                f"sinks: {type(sink).__name__} is not a sink (name, handle_event, flush, close)"
            )
    return checked


def parse_console(value: object) -> str | None:
    """``console``: "auto", "json", "text", or None for no console.

    Raises:
        ValueError: not a bool, None or one of the modes (the message names it).
    """
    if value is None or value is True:
        return "auto"
    if value is False:
        return None
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("auto", "json", "text"):
            return lowered
        if lowered in TRUE_WORDS:
            return "auto"
        if lowered and lowered in _OFF_WORDS:  # "" names no console mode
            return None
    raise ValueError(f"console: expected True, False, 'json' or 'text', got {value!r}")


def in_code_ocean() -> bool:
    """True inside a Code Ocean capsule or computation."""
    return bool(os.environ.get("CO_CAPSULE_ID") or os.environ.get("CO_COMPUTATION_ID"))


def _default_log_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_log_dir("aind-log-utils", appauthor=False))


def resolve_log_file(value: object, program: str) -> Path | None:
    """``log_file`` as a path, or None for no file.

    None means ``/results/logs/<program>.jsonl`` inside Code Ocean and no file
    elsewhere; True the user log directory; a false-like string no file.

    Raises:
        TypeError: not a path, a bool or None (the message names ``log_file``).
    """
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in TRUE_WORDS:
            value = True
        elif lowered in _OFF_WORDS:
            value = False
    if value is None:
        return Path("/results/logs") / f"{program}.jsonl" if in_code_ocean() else None
    if value is False:
        return None
    if value is True:
        return _default_log_dir() / f"{program}.jsonl"
    if isinstance(value, (str, os.PathLike)):
        return Path(os.fspath(value)).expanduser()
    raise TypeError(f"log_file: expected a path, True or False, got {type(value).__name__}")
