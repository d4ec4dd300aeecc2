"""Redaction: one function that makes any value safe to emit.

Secrets are masked wherever they are found, before any sink sees a record:

* pydantic ``SecretStr`` / ``SecretBytes`` (v1 and v2, recognised by type name and
  ``get_secret_value`` so pydantic is never imported to check);
* every value under a secret-looking key (``password``, ``token``, ``api_key``,
  ``authorization``, ``cookie``, ``secret``, ``credentials``, ... any case, any depth);
* secret values registered with :func:`register_secret` (or ``setup_logging(secrets=...)``)
  wherever they appear inside a string;
* inside any string, the shapes credentials take (:mod:`aind_log_utils._scrub`): URL
  userinfo (``scheme://user:pass@``), bearer tokens, AWS access key ids, JSON web
  tokens, GitHub and Slack tokens, PEM private keys, the value of a ``key=value`` /
  ``key: value`` whose key looks secret (a quoted value to its closing quote, as a
  dict's ``repr`` or JSON writes it) and the value after a ``--secret-option``;
* in a list, the item after a secret-looking ``--option`` (a command's argv).

Containers are walked boundedly: cycles, deep nesting, huge containers and objects
whose ``__repr__`` raises are all rendered safely, and never raise.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import math
import re
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

from ._scrub import MASK, is_secret_key, is_secret_option, scrub_patterns

__all__ = [
    "MASK",
    "check_key",
    "clear_secrets",
    "is_secret_key",
    "redact",
    "redact_text",
    "register_secret",
]

#: Containers deeper than this are cut with a marker.
MAX_DEPTH = 8
#: At most this many items of a container are kept; the rest is summarised.
MAX_ITEMS = 256
#: Strings longer than this many characters are truncated with a marker.
MAX_STR_CHARS = 64 * 1024

_secrets_lock = threading.Lock()
_secret_values: set[str] = set()
_secret_re: re.Pattern[str] | None = None
_secret_tuple: tuple[str, ...] = ()
#: Bumped whenever the registered secrets change, so caches of redacted text expire.
generation = 0

_clean_key_cache: dict[str, tuple[str, bool]] = {}

_SCALARS = (str, int, float, bool, type(None))


def register_secret(*values: object) -> None:
    """Register secret values that must never appear in any emitted text.

    Each value (a string, bytes, or a ``SecretStr``) is masked wherever it appears:
    in messages, extras, bound context and tracebacks. Values shorter than 4
    characters are refused, since masking them would mangle ordinary text.

    Args:
        *values: the secret values.

    Raises:
        ValueError: a value is shorter than 4 characters.
        TypeError: a value is not a string, bytes or secret type.
    """
    global _secret_re, _secret_tuple, generation
    new: list[str] = []
    for value in values:
        if value is None:
            continue
        raw: object = value
        if _is_secret_type(raw):
            raw = raw.get_secret_value()  # type: ignore[attr-defined]
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        if not isinstance(raw, str):
            raise TypeError(
                f"secrets: expected str, bytes or SecretStr, got {type(value).__name__}"
            )
        if len(raw) < 4:
            raise ValueError("secrets: a registered secret must be at least 4 characters long")
        new.append(raw)
    if not new:
        return
    with _secrets_lock:
        _secret_values.update(new)
        ordered = sorted(_secret_values, key=len, reverse=True)
        _secret_re = re.compile("|".join(re.escape(s) for s in ordered))
        _secret_tuple = tuple(ordered)
        _clean_key_cache.clear()
        generation += 1


def clear_secrets() -> None:
    """Forget every registered secret value (for tests and re-configuration)."""
    global _secret_re, _secret_tuple, generation
    with _secrets_lock:
        _secret_values.clear()
        _secret_re = None
        _secret_tuple = ()
        _clean_key_cache.clear()
        generation += 1


def check_key(key: str) -> tuple[str, bool]:
    """Scrub a mapping key and tell whether its value must be masked (cached).

    Args:
        key: a field or mapping key.

    Returns:
        The key with any secret in it masked, and whether the key looks secret.
    """
    cached = _clean_key_cache.get(key)
    if cached is None:
        cached = (redact_text(key), is_secret_key(key))
        if len(_clean_key_cache) < 4096:
            _clean_key_cache[key] = cached
    return cached


def redact_text(text: str, *, truncate: bool = True) -> str:
    """Mask registered secrets and secret-looking patterns inside a string.

    Args:
        text: any string.
        truncate: cut a string longer than ``MAX_STR_CHARS`` (a log line's limit;
            a run directory's params keep their whole value).

    Returns:
        The string with every secret replaced by ``MASK``, truncated with a marker
        when longer than ``MAX_STR_CHARS`` (and ``truncate``).
    """
    if truncate and len(text) > MAX_STR_CHARS:
        text = _truncate(text)
    secrets = _secret_tuple
    if secrets:
        for secret in secrets:
            if secret in text:
                text = _secret_re.sub(MASK, text)  # type: ignore[union-attr]
                break
    return scrub_patterns(text)


def _truncate(text: str) -> str:
    dropped = len(text) - MAX_STR_CHARS
    return f"{text[:MAX_STR_CHARS]}...[truncated {dropped} chars]"


def _is_secret_type(value: object) -> bool:
    name = type(value).__name__
    return name in ("SecretStr", "SecretBytes", "Secret") and hasattr(value, "get_secret_value")


def redact(value: Any) -> Any:
    """Return a copy of ``value`` that is safe to emit.

    Scalars come back as they are (strings scrubbed of secrets); containers,
    dataclasses and pydantic models come back as plain dicts and lists with every
    secret masked; anything else is kept when the serialiser knows it (datetime,
    UUID, Decimal, Path, Enum, bytes) or replaced by its (scrubbed) ``repr``.
    Never raises.

    Args:
        value: anything.

    Returns:
        A value with no secret in it.
    """
    try:
        return _redact(value, 0, None)
    except Exception:  # pragma: no cover - _redact already guards each step
        return "<unrepresentable>"


def _redact(value: Any, depth: int, seen: set[int] | None) -> Any:
    cls = type(value)
    if cls is str:
        return redact_text(value)
    if cls is int or cls is bool or value is None:
        return value
    if cls is float:
        return value if math.isfinite(value) else repr(value)
    if _is_secret_type(value):
        return MASK
    if depth >= MAX_DEPTH:
        return "<max depth reached>"
    if isinstance(value, Mapping):
        if seen is None:
            seen = set()
        if id(value) in seen:
            return "<cycle>"
        seen.add(id(value))
        try:
            return _redact_mapping(value.items(), len(value), depth, seen)
        finally:
            seen.discard(id(value))
    if isinstance(value, (list, tuple, set, frozenset)):
        if seen is None:
            seen = set()
        if id(value) in seen:
            return "<cycle>"
        seen.add(id(value))
        try:
            items: Iterable[Any] = (
                sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
            )
            return _redact_sequence(items, len(value), depth, seen)
        finally:
            seen.discard(id(value))
    return _redact_object(value, depth, seen)


def _redact_mapping(
    items: Iterable[tuple[Any, Any]], size: int, depth: int, seen: set[int]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for index, (key, item) in enumerate(items):
        if index >= MAX_ITEMS:
            out["..."] = f"<{size - MAX_ITEMS} more items>"
            break
        skey, secret = check_key(key if type(key) is str else _safe_str(key))
        out[skey] = MASK if secret else _redact(item, depth + 1, seen)
    return out


def _redact_sequence(items: Iterable[Any], size: int, depth: int, seen: set[int]) -> list[Any]:
    out: list[Any] = []
    after_flag = False  # the item follows a secret-looking option: a command's argv
    for index, item in enumerate(items):
        if index >= MAX_ITEMS:
            out.append(f"<{size - MAX_ITEMS} more items>")
            break
        if after_flag and type(item) is str and not item.startswith("-"):
            out.append(MASK)  # ["tool", "--password", "x"]: the "x"
            after_flag = False
            continue
        after_flag = type(item) is str and is_secret_option(item)
        out.append(_redact(item, depth + 1, seen))
    return out


def _redact_object(value: Any, depth: int, seen: set[int] | None) -> Any:
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time, uuid.UUID)):
        return value
    if isinstance(value, enum.Enum):
        return _redact(value.value, depth + 1, seen)
    if isinstance(value, (decimal.Decimal, PurePath)):
        return redact_text(str(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) > MAX_STR_CHARS:
            return _truncate(raw.decode("utf-8", "replace"))
        return redact_text(raw.decode("utf-8", "replace"))
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {_safe_str(value)}")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
        return _redact(fields, depth, seen)
    dump = getattr(value, "model_dump", None)  # pydantic v2
    if dump is None and hasattr(value, "__fields__") and hasattr(value, "dict"):
        dump = value.dict  # pydantic v1
    if callable(dump) and not isinstance(value, type):
        try:
            # mode="python" keeps SecretStr objects, so they are masked by type.
            data = dump()
        except Exception:
            data = None
        if isinstance(data, Mapping):
            return _redact(data, depth, seen)
    numpy_value = _numpy_value(value)
    if numpy_value is not _NOTHING:
        return _redact(numpy_value, depth, seen)
    return redact_text(_safe_repr(value))


_NOTHING = object()
#: Arrays with more elements than this are summarised, not listed.
MAX_ARRAY_ITEMS = 64


def _numpy_value(value: Any) -> Any:
    module = type(value).__module__
    if not module.startswith("numpy"):
        return _NOTHING
    try:
        if hasattr(value, "ndim") and getattr(value, "ndim", 0) == 0 and hasattr(value, "item"):
            return value.item()
        size = int(getattr(value, "size", MAX_ARRAY_ITEMS + 1))
        if size <= MAX_ARRAY_ITEMS and hasattr(value, "tolist"):
            return value.tolist()
        return f"<ndarray shape={tuple(value.shape)} dtype={value.dtype}>"
    except Exception:
        return _NOTHING


def _safe_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception as exc:
        return f"<unrepresentable {type(value).__name__}: repr raised {type(exc).__name__}>"
    if not isinstance(text, str):
        return f"<unrepresentable {type(value).__name__}>"
    return text


def _safe_str(value: object) -> str:
    try:
        text = str(value)
    except Exception:
        return _safe_repr(value)
    return text if isinstance(text, str) else _safe_repr(value)
