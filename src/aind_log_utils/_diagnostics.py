"""The library's own diagnostics: stderr only, rate-limited, never through logging.

Anything that goes wrong inside a sink (a full disk, a refused push, a bad value)
is reported here. It never goes through :mod:`logging`, so it can never loop back
into the library's own sinks, and it is rate-limited per key so that an outage
cannot flood a terminal.
"""

from __future__ import annotations

import os
import sys
import threading
import time

__all__ = ["diagnose", "set_quiet"]

#: Re-entrant: a signal handler may diagnose on the thread it interrupted in here.
_lock = threading.RLock()
_last: dict[str, float] = {}
_suppressed: dict[str, int] = {}
_quiet = os.environ.get("AIND_LOG_QUIET", "") not in ("", "0", "false", "False")


def _reset_after_fork() -> None:
    # A child forked while another thread held the lock would deadlock on it.
    global _lock
    _lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)

#: At most one line per key in this many seconds.
INTERVAL_S = 30.0


def set_quiet(quiet: bool) -> None:
    """Silence (or re-enable) the library's own stderr diagnostics."""
    global _quiet
    _quiet = quiet


def diagnose(key: str, message: str, *, interval_s: float = INTERVAL_S) -> bool:
    """Write one diagnostic line to stderr, at most once per ``interval_s`` per key.

    Args:
        key: what the line is about (a sink name and a reason); lines with the same
            key are rate-limited together.
        message: the text, already free of secrets.
        interval_s: the minimum time between two lines with the same key.

    Returns:
        True when the line was written, False when it was suppressed.
    """
    now = time.monotonic()
    with _lock:
        last = _last.get(key)
        if last is not None and now - last < interval_s:
            _suppressed[key] = _suppressed.get(key, 0) + 1
            return False
        _last[key] = now
        skipped = _suppressed.pop(key, 0)
    if _quiet:
        return False
    suffix = f" ({skipped} similar suppressed)" if skipped else ""
    try:
        stream = sys.__stderr__ or sys.stderr
        if stream is not None:
            stream.write(f"aind-log-utils: {message}{suffix}\n")
            stream.flush()
    except Exception:  # stderr closed or broken: nothing else to tell
        return False
    return True
