"""Exit and fork hooks shared by the delivery objects (engines and sender links).

Each one is closed at interpreter exit (through a weak reference, so the hook
never keeps a dropped one alive) and re-armed in a forked child, where the
parent's threads, queues, pipes and files are the parent's.
"""

from __future__ import annotations

import atexit
import functools
import os
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["Managed", "manage", "release"]


class Managed(Protocol):
    """What :func:`manage` needs of an object."""

    def close(self) -> None:
        """Flush within its own bound and stop; idempotent."""

    def _reinit_after_fork(self) -> None:
        """In a forked child: forget the parent's state."""


_managed: weakref.WeakSet[Managed] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for obj in list(_managed):
        obj._reinit_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_at_exit(ref: Callable[[], Managed | None]) -> None:
    obj = ref()
    if obj is not None:
        obj.close()


def manage(obj: Managed) -> Callable[[], None]:
    """Close ``obj`` at exit and re-arm it after ``fork``.

    Returns:
        The exit hook, for :func:`release` once ``obj`` is closed.
    """
    _managed.add(obj)
    hook = functools.partial(_close_at_exit, weakref.ref(obj))
    atexit.register(hook)
    return hook


def release(hook: Callable[[], None]) -> None:
    """Forget an exit hook of :func:`manage` (the object closed itself)."""
    atexit.unregister(hook)
