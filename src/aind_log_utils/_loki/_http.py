"""One keep-alive HTTP/1.1 connection that POSTs pushes, with as few blocking calls as can be.

Why not ``requests`` here: the worker thread shares the GIL with the program that
logs, and every blocking call it makes (a ``poll`` to see whether a pooled
connection was dropped, a ``stat`` of ``~/.netrc`` or of a CA bundle, each
``send`` and ``recv``) hands the GIL back and must then win it again from a
thread that is busy logging. A ``requests`` push made about fifteen such calls and
cost the logging thread several microseconds per record; this connection makes
two per push (one ``sendall`` of headers and body, one ``recv`` of the answer),
using only the standard library's ``http.client``.

It keeps what ``requests`` gave the sink: keep-alive, TLS with a CA bundle or
without verification, the ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` variables,
proxies from the environment (``HTTP(S)_PROXY``, ``NO_PROXY``; CONNECT for
https), a timeout on every push, and one immediate retry on a fresh connection
when a kept-alive one turns out to have been closed by the server.
"""

from __future__ import annotations

import base64
import http.client
import os
import socket
import ssl
import urllib.request
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

__all__ = ["HttpAnswer", "PushConnection"]

#: The answer body kept (a Loki error text is a few lines; a proxy's page may be long).
MAX_ANSWER_BYTES = 64 * 1024
#: A kept-alive connection the server closed meanwhile fails with one of these
#: before any answer: the push is sent again at once on a new connection.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class HttpAnswer(NamedTuple):
    """A server's answer: status, the ``Retry-After`` header and the (cut) body text."""

    status: int
    retry_after: str | None
    text: str


def _ssl_context(verify: bool | str, trust_env: bool) -> ssl.SSLContext:
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if verify is True and trust_env:  # as requests does: the bundle the environment names
        verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    if isinstance(verify, str):
        try:
            if os.path.isdir(verify):
                return ssl.create_default_context(capath=verify)
            return ssl.create_default_context(cafile=verify)
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"loki_verify: cannot load the CA bundle: {exc}") from None
    return ssl.create_default_context()


def _proxy_for(scheme: str, host: str) -> str | None:
    """The proxy URL the environment names for this scheme and host, or None."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


class PushConnection:
    """POST bodies to one URL over one kept-alive connection; not thread-safe.

    Args:
        url: the full URL (``http`` or ``https``; no credentials in it).
        headers: headers sent with every request (content type, auth, tenant).
        verify: TLS verification: True, False, or a CA bundle file or directory.
        trust_env: take proxies and the CA bundle from the environment, as
            ``requests`` does.
    """

    def __init__(
        self, url: str, *, headers: dict[str, str], verify: bool | str, trust_env: bool = True
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url: expected http(s)://host[:port]/path")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._context = _ssl_context(verify, trust_env) if self._https else None
        self._proxy = _proxy_for(parts.scheme, self._host) if trust_env else None
        self._proxy_headers: dict[str, str] = {}
        host = self._host if ":" not in self._host else f"[{self._host}]"
        netloc = host if parts.port is None else f"{host}:{self._port}"
        target = path
        extra: dict[str, str] = {}
        if self._proxy is not None:
            proxy = urlsplit(self._proxy)
            if proxy.username is not None:
                token = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
                auth = "Basic " + base64.b64encode(token.encode()).decode()
                self._proxy_headers["Proxy-Authorization"] = auth
            if not self._https:  # a plain-http proxy takes the absolute URL
                target = f"http://{netloc}{path}"
                extra = self._proxy_headers
        lines = [f"POST {target} HTTP/1.1", f"Host: {netloc}", "Accept-Encoding: identity"]
        for name, value in {**headers, **extra}.items():
            if not value.isprintable():  # CR, LF, NUL...: would split the request
                raise ValueError(f"header {name}: the value holds a control character")
            lines.append(f"{name}: {value}")
        lines.append("Content-Length: ")
        try:
            #: The request head up to the Content-Length's value.
            self._head = "\r\n".join(lines).encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("headers: values must be Latin-1 text (HTTP/1.1)") from None
        self._path = path
        self._conn: http.client.HTTPConnection | None = None

    def __repr__(self) -> str:
        scheme = "https" if self._https else "http"
        return f"<PushConnection {scheme}://{self._host}:{self._port}{self._path}>"

    def _connect(self, timeout_s: float) -> socket.socket:
        """Open the connection (through the proxy and TLS, as configured)."""
        if self._proxy is None:
            host, port = self._host, self._port
        else:
            proxy = urlsplit(self._proxy)
            host, port = proxy.hostname or "", proxy.port or 8080
        conn: http.client.HTTPConnection
        if self._context is not None:
            conn = http.client.HTTPSConnection(host, port, timeout=timeout_s, context=self._context)
            if self._proxy is not None:
                conn.set_tunnel(self._host, self._port, headers=self._proxy_headers)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
        self._conn = conn
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock: socket.socket = conn.sock
        return sock

    def post(self, body: bytes, timeout_s: float) -> HttpAnswer:
        """POST ``body``; return the answer.

        Raises:
            OSError: no answer (refused, reset, timed out, TLS failure); the
                connection is closed and the next call opens a new one.
            http.client.HTTPException: the answer was not HTTP.
        """
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                return self._exchange(conn.sock, body, timeout_s)
            except _STALE:
                self.close()  # closed while idle: once more, on a new connection
            except BaseException:
                self.close()
                raise
        try:
            return self._exchange(self._connect(timeout_s), body, timeout_s)
        except BaseException:
            self.close()
            raise

    def _exchange(self, sock: socket.socket, body: bytes, timeout_s: float) -> HttpAnswer:
        sock.settimeout(timeout_s)
        sock.sendall(b"".join((self._head, b"%d\r\n\r\n" % len(body), body)))  # one call
        response = http.client.HTTPResponse(sock, method="POST")
        try:
            response.begin()
            data = response.read(MAX_ANSWER_BYTES)
            if not response.isclosed():
                response.read()  # drain the rest, so the connection can be kept
            keep = not response.will_close
        finally:
            response.close()  # the response's file, not the socket
        if not keep:
            self.close()
        return HttpAnswer(
            response.status, response.getheader("Retry-After"), data.decode("utf-8", "replace")
        )

    def close(self) -> None:
        """Close the connection (the next :meth:`post` opens a new one); idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
