"""The Loki sink against the in-repo, protocol-faithful Loki receiver (real HTTP)."""

from __future__ import annotations

import io
import logging
import time
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import orjson
import pytest

from _support import FAST
from aind_log_utils import _diagnostics, setup_logging
from aind_log_utils._loki import LokiHandler, LokiSink, normalize_push_url
from aind_log_utils._loki._encode import decode_item, encode_item, timestamp_ns, truncate_line
from aind_log_utils.testing import LokiReceiver, read_jsonl


def session_to(receiver: LokiReceiver, tmp_path: Path, **kwargs: Any) -> Any:
    options = {**FAST, "spool_dir": str(tmp_path / "spool"), **kwargs.pop("loki_options", {})}
    kwargs.setdefault("console", False)
    kwargs.setdefault("log_file", tmp_path / "run.jsonl")
    kwargs.setdefault("handle_sigterm", False)
    kwargs.setdefault("send_start_log", False)
    return setup_logging("loki-test", loki_url=receiver.url, loki_options=options, **kwargs)


def test_lines_labels_metadata_and_timestamps(receiver: LokiReceiver, tmp_path: Path) -> None:
    session = session_to(
        receiver, tmp_path, subject_id="123456", acquisition_name="123456_2026-01-01_23-00-00",
        rig_id="frg_1_a", instrument_id="MESO1", pipeline_name="pipe", loki_labels={"team": "ephys"},
    )  # fmt: skip
    log = logging.getLogger("cam")
    log.info("frame %d", 1, extra={"camera": "cam-01"})
    log.error("bad frame")
    session.close()
    assert receiver.wait_for(2, 10)
    file_lines = (tmp_path / "run.jsonl").read_bytes().splitlines()
    entries = receiver.entries()
    assert [e.line.encode() for e in entries] == file_lines  # the same JSON as the file
    info = entries[0]
    assert info.labels == {
        "service_name": "loki-test", "level": "INFO", "hostname": info.labels["hostname"],
        "rig_id": "frg_1_a", "instrument_id": "MESO1", "pipeline_name": "pipe", "team": "ephys",
    }  # fmt: skip
    assert entries[1].labels["level"] == "ERROR"
    assert info.metadata is not None
    assert info.metadata["subject_id"] == "123456"
    assert info.metadata["acquisition_name"] == "123456_2026-01-01_23-00-00"
    assert info.metadata["logger"] == "cam" and len(info.metadata["log_session"]) == 7
    assert "subject_id" not in info.labels  # high cardinality stays out of labels
    # each entry's time is its line's own instant, to the microsecond
    assert [e.ts_ns for e in entries] == [timestamp_ns(orjson.loads(e.line)) for e in entries]
    pushes = receiver.pushes()
    assert all(
        p.content_encoding == "gzip" and p.content_type == "application/json" for p in pushes
    )


@pytest.mark.parametrize("suffix", ["", "/", "/loki/api/v1/push"])
def test_base_or_push_url(receiver: LokiReceiver, tmp_path: Path, suffix: str) -> None:
    sink = LokiSink(receiver.url + suffix, spool_dir=tmp_path / "s", **FAST)
    sink.push_event({"timestamp": "2026-11-25T00:00:00.000001Z", "level": "INFO"}, b'{"a":1}\n',
                    time.time_ns())  # fmt: skip
    assert sink.flush(5)
    sink.close()
    assert receiver.lines() == ['{"a":1}']


@pytest.mark.parametrize("delivery", ["thread", "process"])
def test_push_event_takes_an_event_orjson_refuses(
    receiver: LokiReceiver, tmp_path: Path, delivery: str
) -> None:
    """An event of the caller's own with an integer beyond 64 bits or a lone
    surrogate: the sender process read it back from JSON text orjson refused."""
    sink = LokiSink(receiver.url, spool_dir=tmp_path / "s", delivery=delivery, **FAST)
    event = {"timestamp": "2026-11-25T00:00:00.000001Z", "level": "INFO",
             "subject_id": "a\ud800b", "n": 2**70}  # fmt: skip
    sink.push_event(event, b'{"own":1}\n', time.time_ns())
    assert sink.flush(5)
    sink.close()
    (entry,) = receiver.entries()
    assert entry.line == '{"own":1}' and entry.labels["level"] == "INFO"
    assert entry.metadata is not None and entry.metadata["subject_id"] == "a\ufffdb"
    assert sink.counters()["errors"] == 0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"url": "ftp://host"}, "loki_url"),
        ({"url": "not a url"}, "loki_url"),
        ({"url": "http://h:99999"}, "loki_url"),
        ({"url": "http://h", "labels": {"bad-name": "x"}}, "loki_labels"),
        ({"url": "http://h", "labels": {"level": "x"}}, "loki_labels"),
        ({"url": "http://h", "labels": {f"l{i}": "x" for i in range(12)}}, "loki_labels"),
        ({"url": "http://h", "labels": {"ok": "x" * 3000}}, "loki_labels"),
        ({"url": "http://h", "labels": {"ok": "\u00fc" * 1500}}, "loki_labels"),  # 3,000 bytes
        ({"url": "http://h", "max_batch_bytes": 8 * 1024 * 1024}, "max_batch_bytes"),
        ({"url": "http://h", "max_batch_bytes": "big"}, "max_batch_bytes"),
        ({"url": "http://h", "batch_wait_s": -1}, "batch_wait_s"),
        (
            {"url": "http://h", "bearer_token": "abcd", "username": "u", "password": "p"},
            "loki_bearer_token",
        ),
    ],
)
def test_bad_configuration_raises_naming_it(
    tmp_path: Path, kwargs: dict[str, Any], name: str
) -> None:
    url = kwargs.pop("url")
    with pytest.raises((ValueError, TypeError), match=name):
        LokiSink(url, spool_dir=tmp_path / "s", **kwargs)


def test_setup_with_bad_loki_url_names_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="loki_url"):
        setup_logging(
            "x", console=False, log_file=False, loki_url="localhost:3100", handle_sigterm=False
        )


def test_env_variable_turns_loki_on(
    receiver: LokiReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIND_LOKI_URL", receiver.url)
    monkeypatch.setenv("AIND_LOKI_LABELS", "team=ephys,site=sea")
    monkeypatch.setenv(
        "AIND_LOKI_OPTIONS", orjson.dumps({**FAST, "spool_dir": str(tmp_path / "s")}).decode()
    )
    session = setup_logging(
        "env-cap", console=False, log_file=False, handle_sigterm=False, send_start_log=False
    )
    logging.getLogger("x").warning("via env")
    session.close()
    entries = receiver.entries()
    assert [orjson.loads(e.line)["message"] for e in entries] == ["via env"]
    assert entries[0].labels["team"] == "ephys" and entries[0].labels["site"] == "sea"


def test_auth_headers_and_no_credential_anywhere(receiver: LokiReceiver, tmp_path: Path) -> None:
    stderr = io.StringIO()
    _diagnostics.set_quiet(False)
    with redirect_stderr(stderr):
        basic = setup_logging(
            "auth", console=False, log_file=tmp_path / "a.jsonl", handle_sigterm=False,
            loki_url=receiver.url.replace("http://", "http://alice:s3cret-pass@"), loki_tenant_id="tenant-1",
            loki_options={**FAST, "spool_dir": str(tmp_path / "s1")},
        )  # fmt: skip
        logging.getLogger("x").info("password is s3cret-pass, url %s", basic.sinks[-1])
        assert "s3cret-pass" not in repr(basic.sinks[-1]) and "s3cret-pass" not in repr(basic)
        basic.close()
        token = LokiSink(
            receiver.url, bearer_token="tok-123456789", spool_dir=tmp_path / "s2", **FAST
        )
        token.push_event({"timestamp": "2026-11-25T00:00:00Z"}, b'{"b":1}', time.time_ns())
        token.close()
    auths = [p.authorization for p in receiver.pushes()]
    assert auths[0] is not None and auths[0].startswith("Basic ")
    assert auths[-1] == "Bearer tok-123456789"
    assert receiver.pushes()[0].tenant == "tenant-1"
    everything = (tmp_path / "a.jsonl").read_text() + "".join(receiver.lines()) + stderr.getvalue()
    assert "s3cret-pass" not in everything and "tok-123456789" not in everything
    assert "alice:" not in everything


def test_partial_acceptance_400_is_counted_and_never_resent(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    sink = LokiSink(receiver.url, spool_dir=tmp_path / "s", **FAST)
    now = time.time_ns()
    sink.push_event({}, b'{"n":"new"}', now)
    sink.push_event({}, b'{"n":"ancient"}', now - 3 * 3600 * 10**9)  # > 1 h behind the newest
    sink.push_event({}, b'{"n":"new2"}', now + 1)
    assert sink.flush(5)
    counters = sink.counters()
    sink.close()
    assert receiver.lines() == ['{"n":"new"}', '{"n":"new2"}']
    assert receiver.status_counts[400] == 1 and receiver.requests == 1
    assert counters["rejected"] == {"too_far_behind": 1}


def test_the_active_stream_limit_is_retried_and_said_not_split(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    _diagnostics.set_quiet(False)
    with LokiReceiver(max_streams=1) as receiver:
        sink = LokiSink(receiver.url, spool_dir=tmp_path / "s", delivery="thread", **FAST)
        now = time.time_ns()
        sink.push_event({"level": "INFO"}, b'{"n":"first stream"}', now)
        sink.push_event({"level": "ERROR"}, b'{"n":"a second stream"}', now + 1)
        assert not sink.flush(1.5)  # the second stream cannot be stored yet
        counters = sink.counters()
        sink.close(timeout_s=0)
        assert receiver.lines() == ['{"n":"first stream"}']
        # Every push held both records: a split cannot get past a stream limit.
        assert receiver.requests >= 3 and receiver.rejected["stream_limit"] == receiver.requests
    assert counters["dropped"] == {} and counters["rejected"] == {}
    assert "429 active stream limit: too many label values" in capfd.readouterr().err


def test_structured_metadata_refused_falls_back_and_remembers(tmp_path: Path) -> None:
    with LokiReceiver(structured_metadata=False, rate_limit_bytes_s=None) as old_loki:
        sink = LokiSink(old_loki.url, spool_dir=tmp_path / "s", **FAST)
        for i in range(3):
            sink.push_event({"subject_id": "1"}, b'{"i":%d}' % i, time.time_ns() + i)
            assert sink.flush(5)
        sink.close()
        assert old_loki.lines() == ['{"i":0}', '{"i":1}', '{"i":2}']
        assert old_loki.status_counts[400] == 1  # only the first push was refused
        assert all(e.metadata is None for e in old_loki.entries())


def test_retry_after_429_and_500s_deliver_everything(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    receiver.fail_next(2, status=429, retry_after=0.2)
    receiver.fail_next(2, status=500)
    sink = LokiSink(receiver.url, spool_dir=tmp_path / "s", **FAST)
    for i in range(100):
        sink.push_event({}, b'{"i":%d}' % i, time.time_ns() + i)
    assert sink.flush(10)
    counters = sink.counters()
    sink.close()
    assert receiver.lines() == ['{"i":%d}' % i for i in range(100)]
    assert counters["retried"] >= 4 and counters["sent"] == 100


def test_stalled_server_never_blocks_the_caller(receiver: LokiReceiver, tmp_path: Path) -> None:
    receiver.set_mode("hang")
    sink = LokiSink(receiver.url, spool_dir=tmp_path / "s", **{**FAST, "timeout_s": 30.0})
    sink.push_event({}, b'{"first":1}', time.time_ns())
    assert receiver.wait_for_requests(1, 10)  # the worker is now stuck in a push
    for i in range(2000):
        sink.push_event({}, b'{"i":%d}' % i, time.time_ns() + i)
    # Every call above returned while the only push was still held by the server.
    assert receiver.requests == 1 and receiver.entries() == []
    receiver.set_mode("ok")
    assert sink.flush(20)
    sink.close()
    assert len(set(receiver.lines())) == 2001


def test_over_long_line_is_truncated_to_valid_json_with_marker(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    session = session_to(receiver, tmp_path)
    logging.getLogger("x").info("big", extra={"blob": "z" * 60_000, "blob2": "y" * 60_000, "blob3": "w" * 60_000,
                                              "blob4": "v" * 60_000, "blob5": "u" * 60_000})  # fmt: skip
    session.close()
    (entry,) = receiver.entries()
    record = orjson.loads(entry.line)
    assert record["truncated"] is True and record["original_bytes"] > 256 * 1024
    assert record["message"] == "big" and len(entry.line.encode()) <= 256 * 1024
    assert read_jsonl(tmp_path / "run.jsonl")[0]["blob"] == "z" * 60_000  # the file keeps it whole


def test_long_label_and_metadata_values_are_cut_to_what_loki_accepts(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    # Loki counts a label value in bytes (2,048 at most) and refuses an entry whose
    # structured metadata is over 64 KB; the receiver answers as Loki does.
    session = session_to(receiver, tmp_path)
    log = logging.getLogger("x")
    log.info("label", extra={"rig_id": "\u00fc" * 2000})  # 2,000 characters, 4,000 bytes
    log.info("metadata", extra={"subject_id": "1" * 50_000, "user_id": "\u00e9" * 40_000})
    session.close()
    assert receiver.wait_for(2, 10)
    assert not receiver.rejected and session.stats()["sinks"]["loki"]["rejected"] == {}
    label, metadata = receiver.entries()
    assert label.labels["rig_id"] == "\u00fc" * 1024  # 2,048 bytes
    assert metadata.metadata is not None
    assert metadata.metadata["subject_id"] == "1" * 4096
    assert metadata.metadata["user_id"] == "\u00e9" * 2048
    # The lines keep every value whole.
    assert orjson.loads(label.line)["rig_id"] == "\u00fc" * 2000
    assert orjson.loads(metadata.line)["subject_id"] == "1" * 50_000


def test_truncate_line_keeps_standard_fields() -> None:
    event = {
        "timestamp": "t",
        "level": "INFO",
        "message": "m" * 5000,
        "subject_id": "1",
        "x": "y" * 5000,
    }
    line = orjson.dumps(event)
    out = orjson.loads(truncate_line(event, line, 2048))
    assert out["subject_id"] == "1" and out["truncated"] is True and "x" not in out
    assert len(orjson.dumps(out)) <= 2048


def test_item_round_trip() -> None:
    item = encode_item(b'{"service_name":"a"}', 123, {"k": "v"}, b'{"line":"\\n"}')
    assert decode_item(item) == ({"service_name": "a"}, "123", {"k": "v"}, '{"line":"\\n"}')


def test_normalize_push_url_lifts_credentials() -> None:
    assert normalize_push_url("https://u:p@loki.example:3100/") == (
        "https://loki.example:3100/loki/api/v1/push", ("u", "p"))  # fmt: skip


def test_outage_then_recovery_delivers_each_line_once(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    session = session_to(receiver, tmp_path)
    log = logging.getLogger("outage")
    for i in range(500):
        log.info("before %d", i)
    receiver.go_away()
    for i in range(500):
        log.info("during %d", i)
    receiver.come_back()
    for i in range(500):
        log.info("after %d", i)
    assert session.flush(30)
    session.close()
    messages = [orjson.loads(line)["message"] for line in receiver.lines()]
    assert len(messages) == 1500 and len(set(messages)) == 1500


def test_loki_handler_standalone(receiver: LokiReceiver, tmp_path: Path) -> None:
    handler = LokiHandler(receiver.url, program="standalone", static_fields={"rig_id": "r1"},
                          spool_dir=tmp_path / "s", **FAST)  # fmt: skip
    logger = logging.getLogger("standalone")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("hello", extra={"password": "hunter22"})
    finally:
        logger.removeHandler(handler)
        handler.close()
    (entry,) = receiver.entries()
    assert entry.labels["service_name"] == "standalone" and entry.labels["rig_id"] == "r1"
    assert orjson.loads(entry.line)["password"] == "**********"


def test_debug_chatter_of_our_own_worker_never_loops(
    receiver: LokiReceiver, tmp_path: Path
) -> None:
    session = session_to(receiver, tmp_path, level="DEBUG")
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    for i in range(50):
        logging.getLogger("app").debug("tick %d", i)
    session.flush()
    session.close()
    loggers = {orjson.loads(line)["logger"] for line in receiver.lines()}
    assert loggers == {"app"}  # urllib3's records from our worker thread were not sent
    assert len(receiver.lines()) == 50


def test_a_429_storm_loses_nothing(receiver: LokiReceiver, tmp_path: Path) -> None:
    receiver.set_mode("error429")
    session = session_to(receiver, tmp_path)
    for i in range(3000):
        logging.getLogger("storm").info("storm %d", i)
    assert receiver.wait_for_requests(3, 10)  # several pushes refused with 429
    receiver.set_mode("ok")
    assert session.flush(30)
    session.close()
    messages = [orjson.loads(line)["message"] for line in receiver.lines()]
    assert sorted(messages) == sorted(f"storm {i}" for i in range(3000))
    assert receiver.status_counts[429] >= 3


def test_default_rate_limit_a_13_mb_burst_is_delivered_in_full_before_exit(tmp_path: Path) -> None:
    # Loki's defaults: 4 MiB/s with a 6 MiB burst. 13 MB cannot go in one breath:
    # pushes get 429s, are retried with backoff, and still all arrive before exit.
    with LokiReceiver(discover_service_name=False) as loki:
        session = setup_logging(
            "burst", console=False, log_file=False, send_start_log=False, handle_sigterm=False,
            loki_url=loki.url, loki_options={"spool_dir": str(tmp_path / "s"), "batch_wait_s": 0.05},
        )  # fmt: skip
        pad = "x" * 520
        lines = 22_000  # ~600 bytes each: ~13 MB
        for i in range(lines):
            logging.getLogger("burst").info("b %d", i, extra={"pad": pad})
        session.close(timeout_s=30)
        assert len(loki.entries()) == lines
        assert sum(len(e.line) for e in loki.entries()) > 13_000_000
