"""The checks ``aind-log validate`` applies to each record: the AIND logging standard.

Pure functions (no I/O) so that they are easy to test and to reuse: each returns
the problems it found as short sentences, in field order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._common import parse_timestamp

__all__ = ["LEVEL_STRINGS", "REQUIRED", "STRING_FIELDS", "check_record"]

#: The fields every record must have.
REQUIRED = ("timestamp", "level", "message")
#: The standard's level strings, exactly (upper case).
LEVEL_STRINGS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Fields whose value must be a string (the standard says String).
STRING_FIELDS = (
    "message",
    "process",
    "processName",
    "thread",
    "threadName",
    "hostname",
    "software_name",
    "software_version",
    "rig_id",
    "instrument_id",
    "acquisition_name",
    "subject_id",
    "specimen_id",
    "pipeline_name",
    "process_name",
    "user_id",
    "asset_name",
    "log_session",
    "capsule_id",
    "computation_id",
    "logger",
    "error_type",
    "stack_trace",
)
#: The values of ``event_type`` canonical lines use.
EVENT_TYPES = ("stage_start", "stage_complete", "stage_failure")
_UTC_ZONES = ("Z", "+00:00", "+0000", "-00:00")
_OFFSET_RE = re.compile(r"[+-]\d{2}:?\d{2}$")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _check_timestamp(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"timestamp: expected an ISO 8601 UTC string, got {_type_name(value)}"
    when = parse_timestamp(value)
    if when is None:
        return f"timestamp: {value!r} is not an ISO 8601 date and time (e.g. 2026-02-09T21:19:24.061270Z)"
    if not value.endswith(_UTC_ZONES):
        if _OFFSET_RE.search(value):
            return f"timestamp: {value!r} is not UTC (end it in Z)"
        return f"timestamp: {value!r} has no time zone (UTC ends in Z)"
    return None


def _acquisition_subject(value: str) -> tuple[str | None, str | None]:
    """The acquisition name's subject id, or the problem with the name."""
    # The library's own parser: validate and setup_logging can never disagree.
    from .._fields import parse_acquisition_name

    try:
        return parse_acquisition_name(value)[0], None
    except ValueError as exc:
        return None, "acquisition_name: " + str(exc).removeprefix("acquisition_name ")


def check_record(event: Mapping[str, Any], *, require_acquisition: bool = False) -> list[str]:
    """Check one record against the AIND logging standard.

    Args:
        event: the parsed JSON object.
        require_acquisition: ``acquisition_name`` must be present (``--acquisition``:
            the standard requires it "where there is an acquisition").

    Returns:
        The problems, each a short sentence starting with the field's name; empty
        when the record is valid.
    """
    problems: list[str] = []
    for name in REQUIRED:
        if name not in event:
            problems.append(f"{name}: missing (required)")
    if require_acquisition and "acquisition_name" not in event:
        problems.append("acquisition_name: missing (required with --acquisition)")
    if "timestamp" in event:
        problem = _check_timestamp(event["timestamp"])
        if problem:
            problems.append(problem)
    level = event.get("level")
    if "level" in event:
        if not isinstance(level, str):
            problems.append(f"level: expected a level string, got {_type_name(level)} {level!r}")
        elif level not in LEVEL_STRINGS:
            hint = " (levels are upper case)" if level.upper() in LEVEL_STRINGS else ""
            problems.append(f"level: {level!r} is not one of {', '.join(LEVEL_STRINGS)}{hint}")
    for name in STRING_FIELDS:
        if name in event and not isinstance(event[name], str):
            problems.append(f"{name}: expected a string, got {_type_name(event[name])}")
    lineno = event.get("lineno")
    if "lineno" in event and (isinstance(lineno, bool) or not isinstance(lineno, int)):
        problems.append(f"lineno: expected an integer, got {_type_name(lineno)}")
    acquisition = event.get("acquisition_name")
    subject = event.get("subject_id")
    if isinstance(acquisition, str):
        acq_subject, problem = _acquisition_subject(acquisition)
        if problem:
            problems.append(problem)
        elif isinstance(subject, str) and acq_subject != subject:
            problems.append(
                f"subject_id: {subject!r} disagrees with acquisition_name {acquisition!r}"
            )
    specimen = event.get("specimen_id")
    if isinstance(specimen, str) and isinstance(subject, str) and subject not in specimen:
        problems.append(f"specimen_id: {specimen!r} does not contain subject_id {subject!r}")
    event_type = event.get("event_type")
    if "event_type" in event and event_type not in EVENT_TYPES:
        problems.append(f"event_type: {event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    return problems
