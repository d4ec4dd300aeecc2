"""The Loki sink's HTTP connection, against real loopback servers."""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import certifi
import orjson
import pytest

from aind_log_utils._loki import LokiSink
from aind_log_utils._loki._http import PushConnection, _ssl_context
from aind_log_utils.testing import LokiReceiver

HEADERS = {"Content-Type": "application/json", "Content-Encoding": "gzip"}


def push_body(*lines: str) -> bytes:
    import time

    values = [[str(time.time_ns() + i), line] for i, line in enumerate(lines)]
    return gzip.compress(orjson.dumps({"streams": [{"stream": {"a": "b"}, "values": values}]}))


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    with LokiReceiver(rate_limit_bytes_s=None) as server:
        yield server


class Capture:
    """A loopback TCP server that keeps each request it reads and answers 204."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.accepted = 0
        self.got = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head)
                conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                self.got.set()

    def close(self) -> None:
        self.sock.close()


def test_pushes_share_one_kept_alive_connection(receiver: LokiReceiver) -> None:
    conn = PushConnection(receiver.push_url, headers=HEADERS, verify=True, trust_env=False)
    for i in range(5):
        assert conn.post(push_body(f"line {i}"), 5.0).status == 204
    assert receiver.lines() == [f"line {i}" for i in range(5)]
    peers = {p.headers.get("Host") for p in receiver.pushes()}
    assert peers == {f"127.0.0.1:{receiver.port}"}
    conn.close()
    conn.close()  # idempotent


def test_a_connection_the_server_dropped_is_replaced_without_an_error(
    receiver: LokiReceiver,
) -> None:
    conn = PushConnection(receiver.push_url, headers=HEADERS, verify=True, trust_env=False)
    assert conn.post(push_body("before"), 5.0).status == 204
    receiver.go_away()  # every open connection is shut, as a restarting server does
    receiver.come_back()
    assert conn.post(push_body("after"), 5.0).status == 204
    assert receiver.lines() == ["before", "after"]


def test_answers_are_read_with_status_retry_after_and_text(receiver: LokiReceiver) -> None:
    conn = PushConnection(receiver.push_url, headers=HEADERS, verify=True, trust_env=False)
    receiver.fail_next(1, 429, retry_after=3)
    answer = conn.post(push_body("x"), 5.0)
    assert (answer.status, answer.retry_after) == (429, "3")
    assert "rate limit" in answer.text.lower()
    assert conn.post(push_body("y"), 5.0).status == 204  # the same connection goes on


def test_no_server_raises_oserror() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn = PushConnection(f"http://127.0.0.1:{port}/p", headers={}, verify=True, trust_env=False)
    with pytest.raises(OSError):
        conn.post(b"{}", 2.0)


def test_a_proxy_from_the_environment_gets_the_absolute_url_and_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = Capture()
    try:
        monkeypatch.setenv("http_proxy", f"http://pa:pw@127.0.0.1:{proxy.port}")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        conn = PushConnection(
            "http://loki.example:3100/loki/api/v1/push",
            headers={"X-Scope-OrgID": "t1"},
            verify=True,
        )
        assert conn.post(b"{}", 5.0).status == 204
        head = proxy.requests[0].decode()
        assert head.startswith("POST http://loki.example:3100/loki/api/v1/push HTTP/1.1")
        assert "Proxy-Authorization: Basic cGE6cHc=" in head  # pa:pw
        assert "X-Scope-OrgID: t1" in head and "Content-Length: 2" in head
    finally:
        proxy.close()


def test_no_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch, receiver: LokiReceiver) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    conn = PushConnection(receiver.push_url, headers=HEADERS, verify=True)
    assert conn.post(push_body("direct"), 5.0).status == 204


def test_tls_contexts_follow_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    off = _ssl_context(False, trust_env=True)
    assert off.verify_mode == ssl.CERT_NONE and not off.check_hostname
    on = _ssl_context(True, trust_env=True)
    assert on.verify_mode == ssl.CERT_REQUIRED and on.check_hostname
    bundle = _ssl_context(certifi.where(), trust_env=True)
    assert bundle.verify_mode == ssl.CERT_REQUIRED and bundle.cert_store_stats()["x509_ca"] > 0
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="loki_verify"):
        _ssl_context(str(tmp_path / "bad.pem"), trust_env=True)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "bad.pem"))
    with pytest.raises(ValueError, match="loki_verify"):  # the environment's bundle is used
        _ssl_context(True, trust_env=True)


@pytest.mark.parametrize("value", ["two\nlines", "cr\rhere", "nul\x00"])
def test_a_header_value_that_would_split_the_request_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="X-Scope-OrgID"):
        PushConnection("http://127.0.0.1:1/p", headers={"X-Scope-OrgID": value}, verify=True)


def test_sink_names_the_bad_tenant_or_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loki_tenant_id"):
        LokiSink("http://127.0.0.1:1", tenant_id="a\nb", spool_dir=tmp_path)
    with pytest.raises(ValueError, match="loki_bearer_token"):
        LokiSink("http://127.0.0.1:1", bearer_token="tok\r\nX: y", spool_dir=tmp_path)


@pytest.mark.parametrize("level", [1, 2, 6, 9])
@pytest.mark.parametrize("backend", ["isal", "zlib"])
def test_a_push_body_is_one_gzip_member_whichever_deflate_makes_it(
    backend: str, level: int
) -> None:
    """ISA-L (where installed) and zlib both make a body Loki's gzip reader takes."""
    from aind_log_utils import _gzip

    isal = pytest.importorskip("isal.isal_zlib") if backend == "isal" else None
    data = orjson.dumps({"streams": [{"stream": {"a": "b"}, "values": [["1", "x" * 5000]]}]})
    packed = _gzip.compress(data, level, isal)
    assert packed[:2] == b"\x1f\x8b"  # a gzip member's magic, as Loki's reader checks
    assert gzip.decompress(packed) == data
    assert len(packed) < len(data) // 10


def test_isal_is_the_deflate_where_its_wheel_is_installed() -> None:
    """The dependency is declared for the platforms it has wheels for; there it is used."""
    from aind_log_utils import _gzip

    try:
        import isal  # noqa: F401
    except ImportError:
        assert _gzip.ISAL is None
    else:
        assert _gzip.ISAL is not None
