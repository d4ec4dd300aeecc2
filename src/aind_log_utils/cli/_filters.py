"""The record filters of ``aind-log view``: ``--level``, ``--where``, ``--since``."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._common import LEVELS, CliError, parse_timestamp

__all__ = ["RecordFilter", "parse_level", "parse_since", "parse_where"]

_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(w|d|h|m|s))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(w|d|h|m|s)")
_UNIT_S = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_level(text: str) -> int:
    """Parse a ``--level`` value: a level name (any case) or a number.

    Raises:
        CliError: not a level.
    """
    name = text.strip().upper()
    if name in LEVELS:
        return LEVELS[name]
    if name.isdigit():
        return int(name)
    raise CliError(f"--level: {text!r} is not a level (DEBUG, INFO, WARNING, ERROR, CRITICAL)")


def parse_where(items: Sequence[str]) -> list[tuple[str, str]]:
    """Parse ``--where key=value`` options.

    Raises:
        CliError: an item without ``=`` or with an empty key.
    """
    pairs: list[tuple[str, str]] = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"--where: expected key=value, got {item!r}")
        pairs.append((key.strip(), value))
    return pairs


def parse_since(text: str, now: _dt.datetime | None = None) -> _dt.datetime:
    """Parse ``--since``: a duration back from now, or a date or time.

    Durations: ``30s``, ``15m``, ``2h``, ``1d``, ``1h30m``. Times: ``2026-02-09``,
    ``2026-02-09T21:00:00Z``; a time without a zone is UTC, like the logs' timestamps.

    Raises:
        CliError: neither.
    """
    value = text.strip()
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if _DURATION_RE.match(value):
        seconds = sum(float(n) * _UNIT_S[u] for n, u in _DURATION_PART.findall(value))
        return now - _dt.timedelta(seconds=seconds)
    if _DATE_RE.match(value):
        value += "T00:00:00"
    if len(value) == 16 and value[10] == "T":  # YYYY-MM-DDTHH:MM
        value += ":00"
    when = parse_timestamp(value.replace(" ", "T", 1))
    if when is None:
        raise CliError(
            f"--since: {text!r} is neither a duration (30s, 15m, 2h, 1d) nor a time "
            "(2026-02-09 or 2026-02-09T21:00:00Z)"
        )
    return when


def _lookup(event: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    if key in event:
        return True, event[key]
    current: Any = event
    for part in key.split("."):  # records.ERROR reaches into nested objects
        if not isinstance(current, Mapping) or part not in current:
            return False, None
        current = current[part]
    return True, current


def _as_text(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


class RecordFilter:
    """Decide which records to show; all the given conditions must hold.

    Args:
        min_level: the lowest level shown (records of an unknown level are shown
            only without ``min_level``).
        where: ``(key, value)`` pairs the record must have (value compared as text;
            a dotted key reaches into nested objects).
        since: the earliest timestamp shown (records without a readable
            timestamp are then hidden).
    """

    def __init__(
        self,
        min_level: int | None = None,
        where: Sequence[tuple[str, str]] = (),
        since: _dt.datetime | None = None,
    ) -> None:
        self.min_level = min_level
        self.where = list(where)
        self.since = since

    @property
    def active(self) -> bool:
        """True when any condition is set."""
        return self.min_level is not None or bool(self.where) or self.since is not None

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether the record passes every condition."""
        if self.min_level is not None:
            level = event.get("level")
            number = LEVELS.get(level.upper(), -1) if isinstance(level, str) else -1
            if number < self.min_level:
                return False
        for key, wanted in self.where:
            found, value = _lookup(event, key)
            if not found or _as_text(value) != wanted:
                return False
        if self.since is not None:
            when = parse_timestamp(event.get("timestamp"))
            if when is None or when < self.since:
                return False
        return True
