"""How one value of a record becomes safe, serialisable text: the renderer's helpers.

Timestamps, the message, tracebacks, the text of process and thread ids, and
the redaction of one field (its key and its value), with the caches that make
the common case a dictionary lookup. :mod:`aind_log_utils._render` puts them
together, once per record.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Mapping
from typing import Any

from . import _redact
from ._redact import check_key, redact_text

__all__ = [
    "CACHE_MAX",
    "PROTECTED",
    "as_text",
    "cache_text",
    "default_value",
    "fits_json_int",
    "format_exception",
    "format_timestamp",
    "int_text",
    "make_encodable",
    "mask_secret_args",
    "message_of",
    "out_key",
    "value_caches",
]

#: Fields the standard requires; an extra with one of these names is kept as
#: ``extra_<name>`` instead of overwriting the record's own value.
PROTECTED = frozenset({"timestamp", "level", "message"})


def format_timestamp(created: float) -> str:
    """Format a Unix time as ISO 8601 UTC with microseconds, ending in ``Z``.

    Args:
        created: seconds since the epoch (``LogRecord.created``).

    Returns:
        For example ``"2026-02-09T21:19:24.061270Z"``.
    """
    secs = int(created)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(secs))}.{int((created - secs) * 1e6):06d}Z"


def default_value(value: Any) -> Any:
    """The serialiser's last resort: the scrubbed ``repr`` of a value orjson does not know."""
    # Reached only for types orjson does not know; redact() already converted
    # everything it understands, so this is the last resort.
    return redact_text(_redact._safe_repr(value))


#: The integers orjson encodes: 64-bit signed and unsigned.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def fits_json_int(value: int) -> bool:
    """True for an integer orjson encodes (within 64 bits, signed or unsigned)."""
    return _INT_MIN <= value <= _INT_MAX


def int_text(value: int) -> str:
    """An integer's decimal text; past Python's digit limit, its size instead."""
    try:
        return str(int(value))
    except ValueError:  # more digits than sys.get_int_max_str_digits() allows
        return f"<int of {int(value).bit_length()} bits>"


def make_encodable(value: Any) -> Any:
    """``value`` as orjson can encode it, for an event it refused.

    Lone surrogates in strings (keys too) are replaced, so the text encodes as
    UTF-8; an integer beyond 64 bits becomes its decimal text (orjson refuses it,
    and a JSON reader that parses numbers as doubles would round it).
    """
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, int) and not isinstance(value, bool):
        return value if fits_json_int(value) else int_text(value)
    if isinstance(value, dict):
        return {make_encodable(k): make_encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [make_encodable(v) for v in value]
    return value


CACHE_MAX = 4096
_text_of: dict[Any, str] = {}


def as_text(value: Any) -> str:
    """``str()`` of a process or thread id, cached (ids repeat on every record)."""
    text = _text_of.get(value)
    if text is None:
        text = str(value)
        if len(_text_of) >= CACHE_MAX:
            _text_of.clear()
        _text_of[value] = text
    return text


_key_cache: dict[Any, tuple[str, bool]] = {}
_text_cache: dict[str, str] = {}
_cache_generation = -1


def value_caches() -> tuple[dict[Any, tuple[str, bool]], dict[str, str]]:
    """The key and text caches, emptied whenever the registered secrets change."""
    global _cache_generation
    if _cache_generation != _redact.generation:
        _key_cache.clear()
        _text_cache.clear()
        _cache_generation = _redact.generation
    return _key_cache, _text_cache


def cache_text(text: str, texts: dict[str, str]) -> str:
    """``redact_text(text)``, kept in ``texts`` (the text cache) when it is short."""
    clean = redact_text(text)
    if len(text) <= 256:
        if len(texts) >= CACHE_MAX:
            texts.clear()
        texts[text] = clean
    return clean


def out_key(key: Any) -> tuple[str, bool]:
    """A field's output name (``extra_<name>`` for a protected one) and whether it is secret."""
    name, secret = check_key(key if type(key) is str else _redact._safe_str(key))
    if name in PROTECTED:
        name = f"extra_{name}"
    return name, secret


def mask_secret_args(args: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """The mapping of a ``%(name)s`` message, with secret-looking keys' values masked.

    ``"db %(user)s:%(password)s"`` puts the bare value in the text, where no key
    is left to recognise it by: it is masked before formatting instead.
    """
    secret = _redact.is_secret_key
    if not any(type(key) is str and secret(key) for key in args):
        return args
    return {k: _redact.MASK if type(k) is str and secret(k) else v for k, v in args.items()}


def message_of(record: logging.LogRecord) -> str:
    """``record.getMessage()`` as a str; when it fails, the raw message saying so."""
    try:
        message = record.getMessage()
    except Exception as exc:  # bad %-args must not lose the line
        return (
            f"{_redact._safe_str(record.msg)} <formatting failed: {type(exc).__name__}; "
            f"args={_redact._safe_repr(record.args)}>"
        )
    return message if type(message) is str else _redact._safe_str(message)


def format_exception(exc_info: Any) -> str:
    """The traceback of ``exc_info`` as text, or a marker when it cannot be formatted."""
    try:
        return "".join(traceback.format_exception(*exc_info)).rstrip("\n")
    except Exception as exc:
        return f"<traceback could not be formatted: {type(exc).__name__}>"
