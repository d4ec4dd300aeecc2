"""Where a Loki sink pushes: the push URL from a base or push URL, and its spool directory."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

__all__ = ["PUSH_PATH", "loki_spool_dir", "normalize_push_url"]

#: Loki's push path, added to a base URL.
PUSH_PATH = "/loki/api/v1/push"


def normalize_push_url(url: str) -> tuple[str, tuple[str, str] | None]:
    """Turn a base or push URL into the push URL, lifting credentials out of it.

    Args:
        url: ``http(s)://host:port`` or the full push URL, maybe with ``user:pass@``.

    Returns:
        The push URL without userinfo, and ``(user, password)`` if it had some.

    Raises:
        ValueError: not an http(s) URL with a host (the message names ``loki_url``).
    """
    if not isinstance(url, str):
        raise TypeError(f"loki_url: expected a string, got {type(url).__name__}")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("loki_url: expected http(s)://host[:port][/loki/api/v1/push]")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("loki_url: the port is not a number in 0-65535") from None
    auth = (parts.username or "", parts.password or "") if parts.username else None
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if port is not None:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    if not path.endswith(PUSH_PATH):
        path = path + PUSH_PATH
    return urlunsplit((parts.scheme, netloc, path, parts.query, "")), auth


def loki_spool_dir(push_url: str, tenant_id: str | None = None) -> Path:
    """The default spool directory of a Loki destination (one per URL and tenant)."""
    import platformdirs

    digest = hashlib.sha256(f"{push_url}|{tenant_id or ''}".encode()).hexdigest()[:12]
    return (
        Path(platformdirs.user_cache_dir("aind-log-utils", appauthor=False))
        / "spool"
        / f"loki-{digest}"
    )
