"""Canonical log lines: one summary line per unit of work.

A canonical line is emitted once, at the end of a unit of work, with every
field gathered while it ran, so that reading one line tells what happened::

    with canonical("Session recorded", subject_id="123456") as c:
        ...
        c.add(wt_g=23.9, water_earned_ml=0.89)

gives ``{"message": "Session recorded", "subject_id": "123456", "wt_g": 23.9,
"water_earned_ml": 0.89, "status": "success", "event_type": "stage_complete",
"duration_s": ...}``. When the block raises, the line is written at ERROR with
``status: fail``, ``event_type: stage_failure``, ``error_type``, the redacted
``error_message`` and the stack trace, and the exception is re-raised.

``canonical`` is also a decorator for sync and async functions (each call is its
own scope; :func:`current_canonical` reaches it from inside), and an async
context manager.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import time
import types
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from ._redact import redact_text
from ._render import PROTECTED, RECORD_ATTRS

__all__ = ["CANONICAL_LOGGER", "Canonical", "canonical", "current_canonical"]

#: The logger canonical lines come from, unless one is given.
CANONICAL_LOGGER = "aind_log_utils.canonical"

F = TypeVar("F", bound=Callable[..., Any])

_CURRENT: contextvars.ContextVar[Canonical | None] = contextvars.ContextVar(
    "aind_log_utils_canonical", default=None
)
#: Keys ``extra=`` cannot carry (LogRecord attributes); kept as ``extra_<key>``.
_RESERVED = RECORD_ATTRS | PROTECTED


def _is_success(exc: BaseException) -> bool:
    # Ending a generator early, or exiting with status 0, is not a failure.
    if isinstance(exc, GeneratorExit):
        return True
    return isinstance(exc, SystemExit) and exc.code in (None, 0)


def _safe_extra(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {(f"extra_{k}" if k in _RESERVED else str(k)): v for k, v in fields.items()}


def current_canonical() -> Canonical | None:
    """The innermost canonical scope running in this thread or task, if any.

    Use it to add fields from code called inside a decorated function::

        current_canonical().add(rows=1000)

    Returns:
        The scope, or None outside any.
    """
    return _CURRENT.get()


class Canonical:
    """One canonical scope: gathers fields and writes ONE line when it ends.

    Create it with :func:`canonical`. One instance is one scope at a time:
    entering it again while it runs raises RuntimeError (the decorator makes
    a fresh scope per call).

    Args:
        message: the line's message, e.g. ``"Session recorded"``.
        fields: the fields known at the start.
        logger: the logger (a name or a Logger; default ``aind_log_utils.canonical``).
        level: the level of a successful line (failures are ERROR).
        start_line: also write a ``stage_start`` line when the scope begins.
        exc_info: put the (redacted) stack trace in a failure line.

    Raises:
        TypeError: ``message`` is not a string, or ``logger`` is neither a name
            nor a Logger.
    """

    def __init__(
        self,
        message: str,
        fields: Mapping[str, Any] | None = None,
        *,
        logger: logging.Logger | str | None = None,
        level: int = logging.INFO,
        start_line: bool = False,
        exc_info: bool = True,
    ) -> None:
        if not isinstance(message, str):
            raise TypeError(f"message: expected a string, got {type(message).__name__}")
        if logger is None:
            logger = logging.getLogger(CANONICAL_LOGGER)
        elif isinstance(logger, str):
            logger = logging.getLogger(logger)
        elif not isinstance(logger, logging.Logger):
            raise TypeError(f"logger: expected a name or a Logger, got {type(logger).__name__}")
        self.message = message
        self.logger = logger
        self.level = level
        self.start_line = start_line
        self.exc_info = exc_info
        self._initial = dict(fields or {})
        self.fields: dict[str, Any] = dict(self._initial)
        self._t0: float | None = None
        self._token: contextvars.Token[Canonical | None] | None = None
        self.status: str | None = None

    def add(self, **fields: Any) -> Canonical:
        """Add fields to the line (later values win).

        Args:
            **fields: the fields.

        Returns:
            This scope, so calls can be chained.
        """
        self.fields.update(fields)
        return self

    @property
    def running(self) -> bool:
        """True between entering and leaving the scope."""
        return self._t0 is not None

    @property
    def elapsed_s(self) -> float:
        """Seconds since the scope began (0 before it began)."""
        return 0.0 if self._t0 is None else time.monotonic() - self._t0

    # -- lifecycle ------------------------------------------------------------------
    def _begin(self) -> None:
        if self._t0 is not None:
            raise RuntimeError(
                f"canonical {self.message!r} is already running; use a new canonical()"
            )
        self.fields = dict(self._initial)
        self.status = None
        self._t0 = time.monotonic()
        self._token = _CURRENT.set(self)
        if self.start_line:
            extra = _safe_extra({**self.fields, "event_type": "stage_start"})
            self.logger.log(self.level, self.message, extra=extra, stacklevel=3)

    def _end(self, exc: BaseException | None) -> None:
        duration = round(self.elapsed_s, 6)
        self._t0 = None
        if self._token is not None:
            try:
                _CURRENT.reset(self._token)
            except ValueError:  # ended in another context (a task that moved): just clear
                _CURRENT.set(None)
            self._token = None
        failed = exc is not None and not _is_success(exc)
        extra: dict[str, Any] = dict(self.fields)
        extra["status"] = "fail" if failed else "success"
        extra["event_type"] = "stage_failure" if failed else "stage_complete"
        extra["duration_s"] = duration
        exc_info: Any = None
        if failed and exc is not None:
            extra["error_type"] = type(exc).__name__
            extra["error_message"] = redact_text(_describe(exc))
            if self.exc_info:
                exc_info = (type(exc), exc, exc.__traceback__)
        self.status = extra["status"]
        try:
            self.logger.log(
                logging.ERROR if failed else self.level,
                self.message,
                extra=_safe_extra(extra),
                exc_info=exc_info,
                stacklevel=3,
            )
        except Exception:  # a canonical line must never replace the caller's outcome
            pass

    def __enter__(self) -> Canonical:
        self._begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self._end(exc)

    async def __aenter__(self) -> Canonical:
        self._begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self._end(exc)

    def _fresh(self) -> Canonical:
        return Canonical(
            self.message,
            self._initial,
            logger=self.logger,
            level=self.level,
            start_line=self.start_line,
            exc_info=self.exc_info,
        )

    def __call__(self, func: F) -> F:
        """Decorate ``func``: each call runs in its own scope and writes its own line.

        Args:
            func: a sync or async function.

        Returns:
            The wrapped function.
        """
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self._fresh():
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return func(*args, **kwargs)

        return cast(F, wrapper)

    def __repr__(self) -> str:
        state = "running" if self.running else (self.status or "not started")
        return f"<Canonical {self.message!r} {state}>"


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    return text or type(exc).__name__


def canonical(
    message: str,
    *,
    logger: logging.Logger | str | None = None,
    level: int = logging.INFO,
    start_line: bool = False,
    exc_info: bool = True,
    **fields: Any,
) -> Canonical:
    """Open a canonical scope: ONE summary line with every field, when it ends.

    A context manager (sync and async) and a decorator (sync and async
    functions). ``.add(**fields)`` adds fields while it runs. At its end it
    writes one line with the fields, ``status`` (``success``/``fail``),
    ``event_type`` (``stage_complete``/``stage_failure``) and ``duration_s``;
    on failure also ``error_type`` and the redacted ``error_message`` at ERROR
    level, and the exception is re-raised. Nested scopes each write their own
    line. Fields named like LogRecord attributes (``name``, ``process``...) are
    kept as ``extra_<name>``.

    Args:
        message: the line's message, e.g. ``"Session recorded"``.
        logger: the logger (a name or a Logger; default ``aind_log_utils.canonical``).
        level: the level of a successful line (default INFO).
        start_line: also write a ``stage_start`` line at entry.
        exc_info: include the (redacted) stack trace in a failure line.
        **fields: the fields known at the start.

    Returns:
        The scope.

    Raises:
        TypeError: ``message`` is not a string or ``logger`` is not a logger.
    """
    return Canonical(
        message, fields, logger=logger, level=level, start_line=start_line, exc_info=exc_info
    )
