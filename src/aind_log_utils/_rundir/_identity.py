"""Who writes a run: the fields ``metadata.json`` records about its writer.

Besides notata's keys, a run records the standard fields known when it opens,
and the writer's ``pid``, ``hostname`` and process start time, which let
readers tell a crashed run (its process is gone) from a live one.
"""

from __future__ import annotations

import inspect
import os
import socket
from datetime import datetime
from typing import Any

from .._session import active_session

__all__ = ["caller_module", "identity_fields", "now"]


def now() -> str:
    """The local time to the second, as notata writes it."""
    return datetime.now().isoformat(timespec="seconds")


def caller_module() -> str | None:
    """The ``__name__`` of the first calling module outside this package."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            name = str(frame.f_globals.get("__name__", ""))
            if not name.startswith("aind_log_utils"):
                return name
            frame = frame.f_back
    finally:
        del frame
    return None


def identity_fields() -> dict[str, Any]:
    """Who writes the run: the standard fields known, pid, host, our version.

    Returns:
        The standard fields known (discovered < the session's < bound context),
        ``pid``, ``hostname``, ``pid_create_time`` (to tell a reused pid) and
        ``writer``.
    """
    from .. import __version__
    from .._context import get_context
    from .._fields import FIELD_NAMES, discover_fields

    session = active_session()
    known: dict[str, Any] = dict(discover_fields(caller_module()))
    if session is not None:
        known.update(session.fields)
    known.update(get_context())
    fields = {k: v for k, v in known.items() if k in FIELD_NAMES and v is not None}
    fields["pid"] = os.getpid()
    fields["hostname"] = socket.gethostname()
    try:
        import psutil

        fields["pid_create_time"] = psutil.Process(os.getpid()).create_time()
    except Exception:
        pass
    fields["writer"] = f"aind-log-utils {__version__}"
    return fields
