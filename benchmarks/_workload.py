"""The record every benchmark logs: the full standard field set, 8 extras and a SecretStr.

Shared so that every benchmark's figures are for the same record.
"""

from __future__ import annotations

from typing import Any

#: The standard fields given to setup_logging (or to a baseline's static fields).
FIELDS: dict[str, str] = {
    "process_name": "bench-capsule",
    "subject_id": "123456",
    "acquisition_name": "123456_2026-01-01_23-00-00",
    "asset_name": "ecephys_123456_2026-01-01_23-00-00",
    "instrument_id": "EPHYS1",
    "rig_id": "ephys_9_acq",
    "specimen_id": "123456_001",
    "pipeline_name": "spike-sorting",
    "user_id": "bobby.b",
    "software_name": "bench",
    "software_version": "1.0.0",
}


def extras(serializable: bool = False) -> dict[str, Any]:
    """The 8 extras (strings, an int, a float, a bool) and one SecretStr.

    Args:
        serializable: give the token as a plain masked string instead (for peers
            that ``json.dumps`` their extras and would drop a batch on a SecretStr).

    Returns:
        The ``extra=`` mapping for each logging call.
    """
    from pydantic import SecretStr

    token: Any = "**********" if serializable else SecretStr("not-for-logs-0001")
    return {
        "camera": "cam-01",
        "stage": "acquisition",
        "frame_file": "frame_000123.tiff",
        "operator": "bobby.b",
        "frame": 123,
        "exposure_ms": 16.6,
        "dropped": False,
        "note": "nominal",
        "api_token": token,
    }
