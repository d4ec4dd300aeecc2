"""Where the commands write for a person: colour decisions and rich consoles."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["LEVEL_STYLES", "STATUS_STYLES", "console", "dumps_json", "use_colour"]

#: rich styles for the level strings (the same colours as the console sink's).
LEVEL_STYLES = {
    "DEBUG": "dim",
    "INFO": "green",
    "WARNING": "yellow",
    "ERROR": "red",
    "CRITICAL": "bold white on red",
}
#: rich styles for run and canonical-line statuses.
STATUS_STYLES = {
    "complete": "green",
    "success": "green",
    "running": "yellow",
    "initialized": "yellow",
    "failed": "red",
    "fail": "red",
    "crashed": "bold red",
}


def use_colour(option: bool | None, stream: TextIO) -> bool:
    """Decide whether to colour a stream.

    Args:
        option: ``--color`` (True), ``--no-color`` (False), or None for automatic.
        stream: the stream written to.

    Returns:
        The option when given; otherwise True on a terminal unless ``NO_COLOR``
        is set (https://no-color.org).
    """
    if option is not None:
        return option
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def console(*, stderr: bool = False, colour: bool | None = None) -> Console:
    """A rich console on stdout (or stderr), plain when not a terminal.

    Args:
        stderr: write to standard error.
        colour: force colour on or off; None decides from the stream.

    Returns:
        The console. Long cells fold rather than being cut, so nothing is lost when
        the output goes to a file.
    """
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    on = use_colour(colour, stream)
    return Console(
        file=stream,
        force_terminal=on,
        no_color=not on,
        highlight=False,
        soft_wrap=False,
        width=None if stream.isatty() else int(os.environ.get("COLUMNS", "0") or 0) or 120,
    )


def dumps_json(value: Any) -> str:
    """Serialise a result for ``--json``: indented, keys in the given order."""
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
