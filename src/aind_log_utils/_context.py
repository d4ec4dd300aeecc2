"""Bound context: fields added to every record emitted in a scope.

Context lives in a :class:`contextvars.ContextVar` holding an immutable mapping, so
it is isolated per thread and per asyncio task (each task starts with a copy of
its creator's context) and binding never affects another scope.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, TypeVar, cast

__all__ = [
    "bind_context",
    "clear_context",
    "get_context",
    "log_context",
    "unbind_context",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_CONTEXT: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "aind_log_utils_context", default=_EMPTY
)

F = TypeVar("F", bound=Callable[..., Any])


def get_context() -> Mapping[str, Any]:
    """Return the fields bound in the current scope (a read-only mapping)."""
    return _CONTEXT.get()


def bind_context(**fields: Any) -> contextvars.Token[Mapping[str, Any]]:
    """Bind fields to every record logged from the current thread or task.

    Args:
        **fields: field names and values; they override earlier bindings.

    Returns:
        A token that :func:`unbind_context` or ``reset`` can use to restore the
        previous context exactly.
    """
    merged = dict(_CONTEXT.get())
    merged.update(fields)
    return _CONTEXT.set(MappingProxyType(merged))


def unbind_context(*names: str) -> None:
    """Remove fields from the current context.

    Args:
        *names: the field names; unknown names are ignored.
    """
    current = _CONTEXT.get()
    if any(name in current for name in names):
        remaining = {k: v for k, v in current.items() if k not in names}
        _CONTEXT.set(MappingProxyType(remaining))


def clear_context() -> None:
    """Remove every bound field from the current context."""
    _CONTEXT.set(_EMPTY)


class log_context:
    """Bind fields for a scope: a context manager and a decorator.

    Example::

        with log_context(subject_id="123456", stage="sorting"):
            log.info("started")          # carries subject_id and stage

        @log_context(stage="upload")
        def upload(): ...

    The previous context is restored exactly on exit, even after an exception.
    Works with sync and async functions.

    Args:
        **fields: the fields to bind.
    """

    def __init__(self, **fields: Any) -> None:
        self.fields = fields
        self._tokens: list[contextvars.Token[Mapping[str, Any]]] = []

    def __enter__(self) -> log_context:
        self._tokens.append(bind_context(**self.fields))
        return self

    def __exit__(self, *exc: object) -> None:
        _CONTEXT.reset(self._tokens.pop())

    def __call__(self, func: F) -> F:
        """Wrap ``func`` so that each call runs with the fields bound."""
        fields = self.fields

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with _scope(fields):
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _scope(fields):
                return func(*args, **kwargs)

        return cast(F, wrapper)


@contextmanager
def _scope(fields: dict[str, Any]) -> Iterator[None]:
    token = bind_context(**fields)
    try:
        yield
    finally:
        _CONTEXT.reset(token)
