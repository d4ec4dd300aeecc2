"""Where a SIPE sink sends: the server's host and port from its URL, and its spool directory."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["DEFAULT_PORT", "parse_sipe_url", "sipe_spool_dir"]

#: The port of the SIPE log server (``eng-logtools.corp.alleninstitute.org:9000``).
DEFAULT_PORT = 9000


def parse_sipe_url(url: str) -> tuple[str, int]:
    """Read the server's host and port from ``http://host:port``, ``tcp://...`` or ``host:port``.

    The standard writes the address as an ``http://`` URL, but the server speaks
    the stdlib socket-logging protocol over plain TCP, so the scheme only says
    where to connect.

    Args:
        url: the address; the port defaults to 9000.

    Returns:
        ``(host, port)``.

    Raises:
        TypeError: ``url`` is not a string (the message names ``sipe_url``).
        ValueError: not an address of those forms (the message names ``sipe_url``).
    """
    if not isinstance(url, str):
        raise TypeError(f"sipe_url: expected a string, got {type(url).__name__}")
    text = url.strip()
    if not text:
        raise ValueError("sipe_url: empty; expected http://host:port, tcp://host:port or host:port")
    if "://" not in text:
        text = f"tcp://{text}"
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "tcp"):
        raise ValueError(
            f"sipe_url: scheme {parts.scheme!r} not supported; the SIPE server speaks the "
            "socket-logging protocol over TCP (http://host:port, tcp://host:port or host:port)"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError("sipe_url: the SIPE protocol has no credentials; remove user:password@")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("sipe_url: expected no path, query or fragment after host:port")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("sipe_url: the port is not a number in 0-65535") from None
    host = parts.hostname
    if not host:
        raise ValueError("sipe_url: no host; expected http://host:port or host:port")
    if port == 0:
        raise ValueError("sipe_url: port 0 is not a server's port")
    return host, DEFAULT_PORT if port is None else port


def sipe_spool_dir(host: str, port: int) -> Path:
    """The default spool directory of a SIPE destination (one per host and port)."""
    import platformdirs

    digest = hashlib.sha256(f"{host.lower()}:{port}".encode()).hexdigest()[:12]
    return (
        Path(platformdirs.user_cache_dir("aind-log-utils", appauthor=False))
        / "spool"
        / f"sipe-{digest}"
    )
