"""The CloudWatch sink against moto's standalone server on loopback (a real AWS API emulator).

moto runs in its own interpreter (:class:`MotoServer`), so its request logging
never reaches the logging under test and its HTTP handling never shares our GIL.
A small loopback proxy (:class:`Proxy`) in front of it records each PutLogEvents
call and can answer ``ThrottlingException`` (moto cannot throttle) or an error
that echoes the request's signed headers.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from aind_log_utils import _diagnostics, setup_logging
from aind_log_utils._cloudwatch import CloudWatchHandler, CloudWatchSink
from aind_log_utils._cloudwatch._encode import MAX_MESSAGE_BYTES

REGION = "us-west-2"
GROUP = "aind/internal_logs"
#: Fake credentials, long enough to be registered as secrets and found if leaked.
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLEsessionTOKENvalue0123456789abcdefXYZ"
FAST: dict[str, Any] = {
    "batch_wait_s": 0.02,
    "retry_start_s": 0.05,
    "retry_max_s": 0.3,
    "timeout_s": 2.0,
}

MOTO_SERVER = textwrap.dedent(
    """
    import logging, sys
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    def serve(port):
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        return server

    server = serve(0)
    port = server.get_host_and_port()[1]
    print(port, flush=True)
    for line in sys.stdin:
        if line.strip() == "stop":  # an outage: the port refuses connections
            server.stop()
            server._server.server_close()
            print("stopped", flush=True)
        elif line.strip() == "start":  # back on the same port, with what it stored
            server = serve(port)
            print("started", flush=True)
    """
)


class MotoServer:
    """moto's standalone server in a subprocess; ``stop()``/``start()`` make an outage."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MOTO_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def _command(self, command: str, answer: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == answer

    def stop(self) -> None:
        self._command("stop", "stopped")

    def start(self) -> None:
        self._command("start", "started")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    try:
        yield server
    finally:
        server.close()


def set_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, credentials: bool) -> None:
    """Isolate boto3 from the machine: no config files, no metadata service."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    if credentials:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    set_aws_env(monkeypatch, tmp_path, credentials=True)


_streams = itertools.count()


def new_stream() -> str:
    return f"test-{os.getpid()}-{next(_streams)}"


def make_sink(url: str, tmp_path: Path, stream: str, **options: Any) -> CloudWatchSink:
    options = {**FAST, **options}
    return CloudWatchSink(
        program="cw-test", log_stream=stream, endpoint_url=url,
        spool_dir=tmp_path / "spool", **options,
    )  # fmt: skip


def start_session(sink: CloudWatchSink, tmp_path: Path, **kwargs: Any) -> Any:
    kwargs.setdefault("console", False)
    kwargs.setdefault("log_file", tmp_path / "run.jsonl")
    return setup_logging(
        "cw-test", send_start_log=False, handle_sigterm=False, sinks=[sink], **kwargs
    )


def read_events(url: str, stream: str, group: str = GROUP) -> list[dict[str, Any]]:
    """Every event of a stream, with get_log_events, oldest first."""
    import boto3

    client = boto3.client("logs", endpoint_url=url, region_name=REGION)
    events: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        args: dict[str, Any] = {"logGroupName": group, "logStreamName": stream}
        args.update({"nextToken": token} if token else {"startFromHead": True})
        page = client.get_log_events(**args)
        if not page["events"] or page["nextForwardToken"] == token:
            return events
        events.extend(page["events"])
        token = page["nextForwardToken"]


def wait_until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Poll ``predicate`` until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.02)
    return True


class Proxy:
    """A loopback HTTP proxy in front of moto: records, throttles, or answers an error."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.throttle = 0  # answer ThrottlingException to this many PutLogEvents
        self.throttled = 0
        self.echo_error = False  # answer an error quoting the signed headers
        self.calls: list[list[dict[str, Any]]] = []  # PutLogEvents forwarded and stored
        self.operations: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                operation = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
                with proxy.lock:
                    proxy.operations.append(operation)
                    throttle = operation == "PutLogEvents" and proxy.throttle > 0
                    if throttle:
                        proxy.throttle -= 1
                        proxy.throttled += 1
                if throttle:
                    self.answer(400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
                    return
                if proxy.echo_error and operation == "PutLogEvents":
                    headers = "\n".join(f"{k}:{v}" for k, v in self.headers.items())
                    self.answer(400, {"__type": "InvalidSignatureException",
                                      "message": f"Signature mismatch. Canonical request:\n{headers}"})  # fmt: skip
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                try:
                    upstream.request("POST", self.path, body, dict(self.headers.items()))
                    response = upstream.getresponse()
                    data = response.read()
                except OSError:
                    self.answer(503, {"__type": "ServiceUnavailableException", "message": "down"})
                    return
                finally:
                    upstream.close()
                if operation == "PutLogEvents" and response.status == 200:
                    with proxy.lock:
                        proxy.calls.append(orjson.loads(body)["logEvents"])
                self.send_response(response.status)
                self.send_header("Content-Type", response.getheader("Content-Type") or "")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def answer(self, status: int, payload: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("x-amzn-ErrorType", payload["__type"])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[Proxy]:
    server = Proxy(moto.port)
    try:
        yield server
    finally:
        server.close()


class ConnectionCounter:
    """A TCP port that counts the connections made to it (and closes them)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def counter() -> Iterator[ConnectionCounter]:
    server = ConnectionCounter()
    try:
        yield server
    finally:
        server.close()


def file_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


# ---- delivery ----------------------------------------------------------------
def test_every_record_arrives_in_order_as_the_file_line(moto: MotoServer, tmp_path: Path) -> None:
    stream = new_stream()
    sink = make_sink(moto.url, tmp_path, stream)
    session = start_session(sink, tmp_path, subject_id="123456")
    log = logging.getLogger("cam")
    for i in range(3000):
        log.info("frame %d", i, extra={"seq": i, "camera": "cam-01"})
    session.close(timeout_s=20)
    events = read_events(moto.url, stream)
    assert [e["message"] for e in events] == file_lines(tmp_path / "run.jsonl")
    assert [orjson.loads(e["message"])["seq"] for e in events] == list(range(3000))
    first = orjson.loads(events[0]["message"])
    assert first["subject_id"] == "123456" and first["camera"] == "cam-01"
    assert sink.counters()["sent"] == 3000 and sink.records_dropped == 0
    assert sink.region == REGION  # from AWS_DEFAULT_REGION, resolved on the worker


def test_threads_keep_their_order_and_nothing_is_lost(moto: MotoServer, tmp_path: Path) -> None:
    stream = new_stream()
    session = start_session(make_sink(moto.url, tmp_path, stream), tmp_path)

    def work(name: str) -> None:
        log = logging.getLogger(name)
        for i in range(500):
            log.info("n %d", i, extra={"seq": i})

    threads = [threading.Thread(target=work, args=(f"t{k}",)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    session.close(timeout_s=20)
    records = [orjson.loads(e["message"]) for e in read_events(moto.url, stream)]
    assert len(records) == 2000
    for k in range(4):
        assert [r["seq"] for r in records if r["logger"] == f"t{k}"] == list(range(500))


def test_group_and_stream_are_created_or_reused(
    moto: MotoServer, proxy: Proxy, tmp_path: Path
) -> None:
    group, stream = f"aind/test-{os.getpid()}", new_stream()
    for run in range(2):  # the second run finds both: no creation, one call
        sink = make_sink(proxy.url, tmp_path / str(run), stream, log_group=group)
        sink.push_event({}, b'{"run": %d}\n' % run, int(time.time() * 1000))
        assert sink.flush(20)
        sink.close()
    assert proxy.operations == [
        "PutLogEvents", "CreateLogGroup", "CreateLogStream", "PutLogEvents", "PutLogEvents",
    ]  # fmt: skip
    assert [e["message"] for e in read_events(moto.url, stream, group)] == [
        '{"run": 0}',
        '{"run": 1}',
    ]


def test_batches_follow_cloudwatch_rules(moto: MotoServer, proxy: Proxy, tmp_path: Path) -> None:
    stream = new_stream()
    sink = make_sink(proxy.url, tmp_path, stream, batch_wait_s=0.5)
    session = start_session(sink, tmp_path)
    log = logging.getLogger("bulk")
    big = "x" * 200_000
    for i in range(12_000):
        log.info("small %d", i)
    for i in range(12):
        log.info("big %d %s", i, big)
    for i in range(12_000):
        log.info("small again %d", i)
    session.close(timeout_s=30)
    assert len(proxy.calls) >= 4
    for call in proxy.calls:
        assert len(call) <= 10_000
        assert sum(len(e["message"].encode()) + 26 for e in call) <= 1_048_576
        stamps = [e["timestamp"] for e in call]
        assert stamps == sorted(stamps)
    events = read_events(moto.url, stream)
    assert [e["message"] for e in events] == file_lines(tmp_path / "run.jsonl")


def test_an_overlong_line_is_truncated_to_valid_json(moto: MotoServer, tmp_path: Path) -> None:
    stream = new_stream()
    session = start_session(make_sink(moto.url, tmp_path, stream), tmp_path)
    blocks = {f"block_{k}": "y" * 60_000 for k in range(6)}  # strings are capped at 64 KiB
    logging.getLogger("big").info("huge", extra={"subject_id": "123456", **blocks})
    session.close(timeout_s=20)
    (event,) = read_events(moto.url, stream)
    assert len(event["message"].encode()) <= MAX_MESSAGE_BYTES
    record = orjson.loads(event["message"])
    assert record["truncated"] is True and record["original_bytes"] > 360_000
    assert record["subject_id"] == "123456" and record["message"] == "huge"
    assert len(record["dropped_fields"]) >= 2  # the largest extras go first
    assert len(file_lines(tmp_path / "run.jsonl")[0]) > 360_000  # the file keeps it all


def test_out_of_order_and_day_spanning_events_are_sent(moto: MotoServer, tmp_path: Path) -> None:
    stream = new_stream()
    sink = make_sink(moto.url, tmp_path, stream, batch_wait_s=5.0)
    now = int(time.time() * 1000)
    stamps = [now, now - 1000, now - 30 * 3600 * 1000, now - 2000]  # 30 h: two calls
    for i, ts in enumerate(stamps):
        sink.push_event({}, b'{"i": %d}' % i, ts)
    assert sink.flush(20)
    sink.close()
    events = read_events(moto.url, stream)
    assert [e["timestamp"] for e in events] == sorted(stamps)
    assert sink.counters()["sent"] == 4 and sink.counters()["rejected"] == {}


def test_events_too_old_are_counted_as_rejected(moto: MotoServer, tmp_path: Path) -> None:
    stream = new_stream()
    sink = make_sink(moto.url, tmp_path, stream, batch_wait_s=5.0)
    now = int(time.time() * 1000)
    sink.push_event({}, b'{"old": true}', now - 20 * 86_400_000)  # CloudWatch keeps 14 days
    sink.push_event({}, b'{"old": false}', now)
    assert sink.flush(20)
    sink.close()
    assert [e["message"] for e in read_events(moto.url, stream)] == ['{"old": false}']
    counters = sink.counters()
    assert counters["rejected"] == {"too_old": 1} and counters["sent"] == 1


def test_throttling_loses_nothing(moto: MotoServer, proxy: Proxy, tmp_path: Path) -> None:
    stream = new_stream()
    proxy.throttle = 5
    sink = make_sink(proxy.url, tmp_path, stream)
    session = start_session(sink, tmp_path)
    log = logging.getLogger("busy")
    for i in range(2000):
        log.info("line %d", i)
        if i == 1000:
            assert wait_until(lambda: proxy.throttled >= 2)
    session.close(timeout_s=30)
    assert proxy.throttled == 5
    assert sink.counters()["retried"] >= 5
    events = read_events(moto.url, stream)
    assert [e["message"] for e in events] == file_lines(tmp_path / "run.jsonl")


def test_an_outage_mid_stream_loses_nothing(moto: MotoServer, tmp_path: Path) -> None:
    stream = new_stream()
    sink = make_sink(moto.url, tmp_path, stream)
    session = start_session(sink, tmp_path)
    log = logging.getLogger("outage")
    for i in range(500):
        log.info("before %d", i)
    assert wait_until(lambda: sink.counters()["sent"] == 500)
    moto.stop()
    try:
        for i in range(1500):
            log.info("during %d", i)
        assert wait_until(lambda: sink.counters()["retried"] >= 2)
        assert sink.counters()["spooled"] > 0  # on disk while CloudWatch is away
    finally:
        moto.start()
    assert session.flush(timeout_s=30)
    session.close(timeout_s=10)
    events = read_events(moto.url, stream)
    assert [e["message"] for e in events] == file_lines(tmp_path / "run.jsonl")  # once each


def test_cloudwatch_handler_without_setup_logging(moto: MotoServer, tmp_path: Path) -> None:
    stream = new_stream()
    handler = CloudWatchHandler(
        static_fields={"subject_id": "654321"}, program="h", log_stream=stream,
        endpoint_url=moto.url, spool_dir=tmp_path / "spool", **FAST,
    )  # fmt: skip
    log = logging.getLogger("handler-test")
    log.addHandler(handler)
    try:
        log.warning("via the handler", extra={"k": 1})
    finally:
        log.removeHandler(handler)
        handler.close()
    (event,) = read_events(moto.url, stream)
    record = orjson.loads(event["message"])
    assert record["message"] == "via the handler" and record["subject_id"] == "654321"
    assert record["level"] == "WARNING" and record["k"] == 1


# ---- no network at setup, no credentials, no secrets ---------------------------
def test_setup_makes_no_network_call(counter: ConnectionCounter, tmp_path: Path) -> None:
    started = time.perf_counter()
    sink = make_sink(counter.url, tmp_path, new_stream())
    session = start_session(sink, tmp_path)
    elapsed = time.perf_counter() - started
    assert counter.connections == 0 and elapsed < 2.0
    logging.getLogger("x").info("now the worker connects")
    assert wait_until(lambda: counter.connections > 0)  # the counter does see connections
    session.close(timeout_s=0.5)


SETUP_PROGRAM = """
import logging, sys, threading, time
from aind_log_utils import setup_logging
from aind_log_utils._cloudwatch import CloudWatchSink
sink = CloudWatchSink(program="p", endpoint_url=sys.argv[1], spool_dir=sys.argv[2], batch_wait_s=0.01)
session = setup_logging("p", console=False, log_file=False, send_start_log=False, sinks=[sink])
print("boto3" in sys.modules, "botocore" in sys.modules, flush=True)
logging.getLogger("p").info("one")
deadline = time.monotonic() + 20
while "botocore" not in sys.modules and time.monotonic() < deadline:
    threading.Event().wait(0.01)
print("botocore" in sys.modules, flush=True)
session.close(timeout_s=0)
"""


def test_boto3_is_imported_on_the_worker_only(counter: ConnectionCounter, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SETUP_PROGRAM, counter.url, str(tmp_path / "spool")],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.split("\n")[:2] == ["False False", "True"]


def test_no_credentials_turns_the_sink_off_with_one_line(
    counter: ConnectionCounter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    set_aws_env(monkeypatch, tmp_path, credentials=False)
    _diagnostics.set_quiet(False)
    monkeypatch.setattr(_diagnostics, "_last", {})  # forget the rate limits of earlier tests
    sink = make_sink(counter.url, tmp_path, new_stream())
    session = start_session(sink, tmp_path)
    log = logging.getLogger("nocreds")
    for i in range(50):
        log.info("line %d", i)
    assert session.flush(timeout_s=10)
    assert wait_until(lambda: sink.off_reason == "no_credentials")
    for i in range(10):
        log.info("after %d", i)
    session.close(timeout_s=5)
    assert counter.connections == 0
    assert sink.counters()["dropped"] == {"no_credentials": 60}
    assert sink.records_dropped == 60
    assert len(file_lines(tmp_path / "run.jsonl")) == 60  # the file has every record
    err = [line for line in capfd.readouterr().err.splitlines() if "cloudwatch" in line]
    assert len(err) == 1 and "no AWS credentials found" in err[0]


def test_credentials_never_appear_in_a_line(
    moto: MotoServer,
    proxy: Proxy,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _diagnostics.set_quiet(False)
    monkeypatch.setattr(_diagnostics, "_last", {})  # forget the rate limits of earlier tests
    stream = new_stream()
    proxy.echo_error = True  # the service answers with the signed headers in its message
    sink = make_sink(proxy.url, tmp_path, stream)
    session = start_session(sink, tmp_path, level="DEBUG", console="json")
    log = logging.getLogger("secrets")
    log.info("refused")
    assert session.flush(timeout_s=10)
    assert sink.counters()["rejected"] == {"InvalidSignatureException": 1}
    proxy.echo_error = False
    log.info("accepted")
    log.debug("the token is %s", SESSION_TOKEN)  # masked: registered at setup
    session.close(timeout_s=10)
    captured = capfd.readouterr()
    stored = "\n".join(e["message"] for e in read_events(moto.url, stream))
    everything = [captured.err, captured.out, (tmp_path / "run.jsonl").read_text(), stored]
    assert "InvalidSignatureException" in captured.err  # the refusal was reported...
    for text in everything:  # ...without a credential, anywhere
        assert SECRET_KEY not in text and SESSION_TOKEN not in text and ACCESS_KEY not in text
    assert "botocore" not in (tmp_path / "run.jsonl").read_text()  # worker records stay out


# ---- configuration -------------------------------------------------------------
def test_defaults_follow_0_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CO_CAPSULE_ID", "abc-123")
    sink = CloudWatchSink(program="p", spool_dir=tmp_path / "s")
    assert (sink.log_group, sink.log_stream) == ("aind/internal_logs", "abc-123")
    sink.close(0)
    monkeypatch.delenv("CO_CAPSULE_ID")
    sink = CloudWatchSink(program="my:prog*", spool_dir=tmp_path / "s")
    assert sink.log_stream == "my_prog_"  # characters CloudWatch refuses are replaced
    sink.close(0)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"log_group": "bad group!"}, "cloudwatch_log_group"),
        ({"log_stream": "a:b"}, "cloudwatch_log_stream"),
        ({"log_stream": "x" * 513}, "cloudwatch_log_stream"),
        ({"region": "US West"}, "cloudwatch_region"),
        ({"endpoint_url": "ftp://host"}, "endpoint_url"),
        ({"endpoint_url": "http://user:pw@host"}, "endpoint_url"),
        ({"max_batch_records": 20_000}, "max_batch_records"),
        ({"max_batch_bytes": 1_048_576}, "max_batch_bytes"),
        ({"max_message_bytes": 300_000}, "max_message_bytes"),
        ({"batch_wait_s": -1}, "batch_wait_s"),
    ],
)
def test_bad_options_name_themselves(options: dict[str, Any], named: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=named):
        CloudWatchSink(spool_dir=tmp_path / "s", **options)
