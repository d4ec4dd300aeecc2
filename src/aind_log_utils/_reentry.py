"""Which thread is inside a sender link's locked work, and what waits for it to leave.

A signal handler runs on the thread it interrupted. The session's SIGTERM handler
logs the stop line and closes the sinks; if it interrupted the program inside a
sender link's locked work (the link's lock held, its buffer half changed), it can
neither wait for that lock (its own thread holds it) nor touch the buffer. It
asks instead to run once the thread has left that work (:func:`when_left`): the
interrupted code finishes, and the handler's work runs at the end of it, on the
same thread, with every lock free. So a SIGTERM loses nothing even there.

A tiny module of its own: the session imports it, and it must not pull the
delivery machinery into programs that have no network sink.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["busy", "enter", "leave", "when_left"]

# Per thread: ``depth`` (how many links' locked work it is in) and ``deferred``
# (what runs once depth is back to 0).
_thread = threading.local()


def busy() -> bool:
    """True when this thread is inside some link's locked work."""
    return getattr(_thread, "depth", 0) > 0


def enter() -> None:
    """This thread starts a link's locked work (before it marks the link)."""
    _thread.depth = getattr(_thread, "depth", 0) + 1


def leave() -> None:
    """This thread has finished a link's locked work (after it unmarked the link).

    When it has left them all, what :func:`when_left` deferred runs here, in order;
    an exception from it propagates, as it would from the signal handler.
    """
    depth = _thread.depth - 1
    _thread.depth = depth
    if depth == 0:
        deferred = _thread.__dict__.pop("deferred", None)
        for action in deferred or ():
            action()


def when_left(action: Callable[[], None]) -> None:
    """Run ``action`` on this thread once it has left every link's locked work.

    For a signal handler that found :func:`busy` true.
    """
    _thread.__dict__.setdefault("deferred", []).append(action)
