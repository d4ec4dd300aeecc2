"""Convert values to plain data that safe YAML and JSON readers accept.

notata dumps params with ``yaml.dump``, so a numpy scalar becomes a
``!!python/object`` tag that ``yaml.safe_load`` (notata's own reader) refuses.
:func:`to_plain` turns numpy scalars and arrays, paths, enums, tuples, sets
and pydantic/dataclass objects into plain values first; secret types are masked.
:func:`mask_secrets` masks the rest of what a log line would not show in such plain
values: the files that describe a run (params, metadata, hyperparameters) go
wherever its results go. A run's data (``save_json``, metrics) is written as given.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import math
import uuid
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from .._redact import MASK, check_key, redact_text

__all__ = ["mask_secrets", "to_plain"]

_MAX_DEPTH = 64


def _is_secret(value: object) -> bool:
    name = type(value).__name__
    return name in ("SecretStr", "SecretBytes") and hasattr(value, "get_secret_value")


def _key(key: object) -> Any:
    if isinstance(key, (str, int, float, bool)) or key is None:
        return key
    plain = to_plain(key)
    return plain if isinstance(plain, (str, int, float, bool)) else str(plain)


def to_plain(value: Any, *, for_yaml: bool = True, strict: bool = False, _depth: int = 0) -> Any:
    """Return ``value`` as plain dicts, lists, strings, numbers, booleans and None.

    Args:
        value: anything.
        for_yaml: keep ``datetime``/``date`` and ``bytes`` (safe YAML has tags
            for them); when False they become ISO strings and text for JSON.
        strict: refuse objects with no plain form instead of writing their ``str``.

    Returns:
        The converted value; objects with no plain form become their ``str``
        (unless ``strict``).

    Raises:
        ValueError: the value nests deeper than 64 levels (a cycle).
        TypeError: ``strict`` and an object has no plain form.
    """
    if _depth > _MAX_DEPTH:
        raise ValueError("value nests too deeply (a cycle?)")
    if value is None or isinstance(value, (bool, str, int)):
        return value if type(value) in (bool, str, int) or value is None else _builtin(value)
    if isinstance(value, float):
        return float(value)
    if _is_secret(value):
        return MASK
    depth = _depth + 1
    if isinstance(value, Mapping):
        return {
            _key(k): to_plain(v, for_yaml=for_yaml, strict=strict, _depth=depth)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [to_plain(v, for_yaml=for_yaml, strict=strict, _depth=depth) for v in value]
    if isinstance(value, (set, frozenset)):
        return [
            to_plain(v, for_yaml=for_yaml, strict=strict, _depth=depth)
            for v in sorted(value, key=repr)
        ]
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value if for_yaml else value.isoformat()
    if isinstance(value, _dt.time):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value) if for_yaml else bytes(value).decode("utf-8", "replace")
    if isinstance(value, enum.Enum):
        return to_plain(value.value, for_yaml=for_yaml, strict=strict, _depth=depth)
    if isinstance(value, decimal.Decimal):
        number = float(value)
        return (
            number
            if math.isfinite(number) and decimal.Decimal(repr(number)) == value
            else str(value)
        )
    if isinstance(value, (PurePath, uuid.UUID)):
        return str(value)
    numpy_plain = _numpy(value)
    if numpy_plain is not _NOTHING:
        return to_plain(numpy_plain, for_yaml=for_yaml, strict=strict, _depth=depth)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return to_plain(fields, for_yaml=for_yaml, strict=strict, _depth=depth)
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return to_plain(dump(), for_yaml=for_yaml, strict=strict, _depth=depth)
    if strict:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return str(value)


def _builtin(value: Any) -> Any:
    # Subclasses of bool/str/int (IntEnum, numpy.bool_ is not one) lose their type.
    if isinstance(value, enum.Enum):
        return to_plain(value.value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    return str(value)


_NOTHING = object()


def _numpy(value: Any) -> Any:
    if not type(value).__module__.startswith("numpy"):
        return _NOTHING
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()  # scalars give a Python scalar, arrays nested lists
    return _NOTHING


def mask_secrets(plain: Any) -> Any:
    """Mask secrets in plain values (what :func:`to_plain` returns) as log lines do.

    The value of a secret-looking key (a ``None`` and a bool are kept: neither can
    be a secret), and inside any string registered secret values and the shapes
    credentials take (:func:`~aind_log_utils._redact.redact_text`), however long
    the string: nothing is cut.

    Args:
        plain: dicts, lists, strings, numbers, booleans, None (and the datetimes and
            bytes safe YAML keeps).

    Returns:
        A copy with every secret replaced by ``MASK``.
    """
    if isinstance(plain, str):
        return redact_text(plain, truncate=False)
    if isinstance(plain, dict):
        out: dict[Any, Any] = {}
        for key, value in plain.items():
            if isinstance(key, str):
                key, secret = check_key(key)
                if secret and value is not None and not isinstance(value, bool):
                    out[key] = MASK
                    continue
            out[key] = mask_secrets(value)
        return out
    if isinstance(plain, list):
        return [mask_secrets(item) for item in plain]
    return plain
