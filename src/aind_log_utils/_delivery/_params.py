"""Checking the delivery engine's constructor arguments, before anything starts.

Configuration is checked when the engine is built: a wrong type raises
:class:`TypeError` and an out-of-range value :class:`ValueError`, each message naming
the parameter. Bad *data* later on never raises (see the engine).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

__all__ = [
    "check_engine_args",
    "default_spool_dir",
    "float_param",
    "int_param",
    "path_param",
    "transport_limit",
]


def check_engine_args(
    name: object, transport: object, spool: object, replay_on_start: object, spool_dir: object
) -> None:
    """Check the engine's non-numeric arguments, in the order they are documented.

    Args:
        name: the sink's name (a non-blank str).
        transport: anything with a callable ``send``.
        spool: a bool.
        replay_on_start: a bool.
        spool_dir: a str, a path or None.

    Raises:
        TypeError: an argument has the wrong type (the message names it).
        ValueError: ``name`` is blank.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not name.strip():
        raise ValueError("name must be a non-empty str")
    if not callable(getattr(transport, "send", None)):
        raise TypeError(
            f"transport must have a send(batch, timeout_s) method, got {type(transport).__name__}"
        )
    for flag_name, flag in (("spool", spool), ("replay_on_start", replay_on_start)):
        if not isinstance(flag, bool):
            raise TypeError(f"{flag_name} must be a bool, got {type(flag).__name__}")
    path_param("spool_dir", spool_dir)


def path_param(name: str, value: object) -> Path | None:
    """Return ``value`` as a path (None stays None).

    Raises:
        TypeError: ``value`` is neither a str, a path nor None (the message names it).
    """
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str, a path or None, got {type(value).__name__}")
    return Path(value)


def int_param(name: str, value: object, minimum: int) -> int:
    """Return ``value`` if it is an int (not a bool) of at least ``minimum``.

    Args:
        name: the parameter's name, for the message.
        value: what the caller passed.
        minimum: the smallest value allowed.

    Returns:
        The value.

    Raises:
        TypeError: not an int.
        ValueError: below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def float_param(name: str, value: object, minimum: float, *, strict: bool = False) -> float:
    """Return ``value`` as a float if it is a finite number of at least ``minimum``.

    Args:
        name: the parameter's name, for the message.
        value: what the caller passed (an int or a float, not a bool).
        minimum: the smallest value allowed.
        strict: ``minimum`` itself is not allowed.

    Returns:
        The value as a float.

    Raises:
        TypeError: not a number.
        ValueError: not finite, or below (or, when ``strict``, at) ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < minimum or (strict and number == minimum):
        raise ValueError(
            f"{name} must be a finite number {'>' if strict else '>='} {minimum:g}, got {value!r}"
        )
    return number


def transport_limit(transport: object, attr: str) -> int | None:
    """Return a transport's own batch limit (a positive int attribute), if it has one.

    Args:
        transport: the transport.
        attr: ``max_batch_bytes`` or ``max_batch_records``.

    Returns:
        The limit, or None when the attribute is missing or not a positive int.
    """
    value = getattr(transport, attr, None)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def default_spool_dir(name: str) -> Path:
    """Return the default spool directory of a sink: ``<user cache>/aind-log-utils/spool/<name>``.

    Args:
        name: the sink's name (characters unsafe in a file name become ``_``).

    Returns:
        The directory (not created).
    """
    import platformdirs

    cache = platformdirs.user_cache_path("aind-log-utils", appauthor=False)
    return cache / "spool" / re.sub(r"[^A-Za-z0-9._-]", "_", name)
