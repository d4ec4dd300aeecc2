"""The Loki push receiver answers as facts-loki.md says a real Loki 3.4 answers.

Every test talks real HTTP to a receiver on 127.0.0.1, port 0.
"""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from aind_log_utils.testing._loki_decode import _parse_value, _parse_values
from aind_log_utils.testing._loki_model import PushError, PushValue
from aind_log_utils.testing._loki_receiver import LokiReceiver

JSON = {"Content-Type": "application/json"}
HOUR_NS = 3600 * 10**9


@pytest.fixture
def loki() -> Iterator[LokiReceiver]:
    with LokiReceiver() as receiver:
        yield receiver
        assert receiver.errors == []


def now_ns(offset_s: float = 0.0) -> int:
    return time.time_ns() + int(offset_s * 1e9)


def body_of(*streams: tuple[dict[str, str], list[list[Any]]]) -> bytes:
    doc = {"streams": [{"stream": labels, "values": values} for labels, values in streams]}
    return json.dumps(doc).encode()


def push(
    receiver: LokiReceiver,
    *streams: tuple[dict[str, str], list[list[Any]]],
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
    timeout_s: float = 10.0,
) -> requests.Response:
    return requests.post(
        receiver.push_url,
        data=body_of(*streams) if data is None else data,
        headers=JSON if headers is None else headers,
        timeout=timeout_s,
    )


def values(*lines: str, ts: int | None = None) -> list[list[Any]]:
    base = now_ns() if ts is None else ts
    return [[str(base + i), line] for i, line in enumerate(lines)]


# -- the basic contract ------------------------------------------------------------


def test_valid_push_is_stored_and_answered_204_with_no_body(loki: LokiReceiver) -> None:
    ts = now_ns()
    response = push(loki, ({"service_name": "rig", "env": "test"}, [[str(ts), "hello"]]))

    assert response.status_code == 204
    assert response.content == b""
    [entry] = loki.entries()
    assert entry.labels == {"service_name": "rig", "env": "test"}
    assert (entry.ts_ns, entry.line, entry.metadata, entry.tenant) == (ts, "hello", None, None)
    assert loki.lines() == ["hello"]
    assert list(loki.streams()) == ['{env="test", service_name="rig"}']
    assert loki.requests == 1
    assert loki.status_counts == {204: 1}


def test_streams_groups_entries_by_label_set(loki: LokiReceiver) -> None:
    push(loki, ({"job": "a"}, values("a1", "a2")), ({"job": "b"}, values("b1")))
    push(loki, ({"job": "a"}, values("a3")))

    streams = loki.streams()

    assert {k: [e.line for e in v] for k, v in streams.items()} == {
        '{job="a", service_name="a"}': ["a1", "a2", "a3"],
        '{job="b", service_name="b"}': ["b1"],
    }


def test_entries_keep_each_streams_labels_tenant_and_metadata_in_arrival_order(
    loki: LokiReceiver,
) -> None:
    ts = now_ns()
    meta = {"subject_id": "123456"}
    a: tuple[dict[str, str], list[list[Any]]] = (
        {"job": "a"}, [[str(ts), "a1"], [str(ts + 1), "a2", meta]]
    )  # fmt: skip
    b: tuple[dict[str, str], list[list[Any]]] = ({"job": "b"}, [[str(ts), "b1"]])
    push(loki, a, b, headers={**JSON, "X-Scope-OrgID": "t1"})
    push(loki, ({"job": "c"}, []))  # a stream without values stores nothing
    push(loki, ({"job": "a"}, [[str(ts + 2), "a3"]]))

    got = [(e.labels["job"], e.ts_ns - ts, e.line, e.metadata, e.tenant) for e in loki.entries()]

    assert got == [
        ("a", 0, "a1", None, "t1"),
        ("a", 1, "a2", meta, "t1"),
        ("b", 0, "b1", None, "t1"),
        ("a", 2, "a3", None, None),
    ]
    assert loki.lines() == ["a1", "a2", "b1", "a3"]
    assert loki.count() == 4
    loki.clear()
    assert (loki.count(), loki.entries(), loki.lines()) == (0, [], [])


def test_stored_entries_add_no_objects_for_the_garbage_collector_to_walk(
    loki: LokiReceiver,
) -> None:
    # Stored as objects the collector tracks, 200,000 entries made every full
    # collection walk them all: a third of the receiver's CPU.
    import gc

    meta = {"subject_id": "123456", "asset_name": "ecephys_123456"}
    push(loki, ({"job": "warm"}, values("w")))
    ts = now_ns()
    data = body_of(({"job": "a"}, [[str(ts + i), f"line {i}", meta] for i in range(2000)]))
    gc.collect()
    before = len(gc.get_objects())
    assert push(loki, data=data).status_code == 204
    assert loki.wait_for(2001)
    gc.collect()

    assert len(gc.get_objects()) - before < 200


def test_url_properties_and_named_daemon_thread(loki: LokiReceiver) -> None:
    assert loki.port > 0
    assert loki.url == f"http://127.0.0.1:{loki.port}"
    assert loki.push_url == f"http://127.0.0.1:{loki.port}/loki/api/v1/push"
    threads = [t for t in threading.enumerate() if t.name == f"loki-receiver-{loki.port}"]
    assert len(threads) == 1
    assert threads[0].daemon


def test_service_name_is_discovered_like_loki_3(loki: LokiReceiver) -> None:
    push(loki, ({"app": "acq", "job": "j"}, values("a")), ({"env": "x"}, values("b")))

    by_line = {e.line: e.labels for e in loki.entries()}
    assert by_line["a"]["service_name"] == "acq"
    assert by_line["b"]["service_name"] == "unknown_service"


def test_ready_404_and_405(loki: LokiReceiver) -> None:
    ready = requests.get(loki.url + "/ready", timeout=5)
    assert (ready.status_code, ready.text.strip()) == (200, "ready")
    assert requests.post(loki.url + "/api/prom/push", data=b"{}", timeout=5).status_code == 404
    assert requests.get(loki.push_url, timeout=5).status_code == 405


# -- content type and encoding --------------------------------------------------------


def test_missing_content_type_is_400_no_media_type(loki: LokiReceiver) -> None:
    response = push(loki, ({"a": "b"}, values("x")), headers={})

    assert response.status_code == 400
    assert "mime: no media type" in response.text
    assert loki.entries() == []


def test_protobuf_content_type_is_400(loki: LokiReceiver) -> None:
    response = push(
        loki, ({"a": "b"}, values("x")), headers={"Content-Type": "application/x-protobuf"}
    )

    assert response.status_code == 400
    assert "protobuf" in response.text
    assert loki.entries() == []


def test_json_content_type_with_charset_is_accepted(loki: LokiReceiver) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    assert push(loki, ({"a": "b"}, values("x")), headers=headers).status_code == 204
    assert loki.lines() == ["x"]


def test_gzip_body_is_decoded(loki: LokiReceiver) -> None:
    data = gzip.compress(body_of(({"a": "b"}, values("zipped"))))
    response = push(loki, data=data, headers={**JSON, "Content-Encoding": "gzip"})

    assert response.status_code == 204
    assert loki.lines() == ["zipped"]
    assert loki.pushes()[0].content_encoding == "gzip"
    assert loki.pushes()[0].body_bytes == len(data)


@pytest.mark.parametrize("backend", ["isal", "stdlib"])
def test_a_push_is_inflated_as_gzip_decompress_does(backend: str) -> None:
    """One clean member through ISA-L; anything else gets the stdlib's answer or error."""
    from aind_log_utils._gzip import decompress

    isal = pytest.importorskip("isal.isal_zlib") if backend == "isal" else None
    one = gzip.compress(b"a" * 5000)
    bodies = [
        one,
        one + gzip.compress(b"second member"),  # several members: all of them
        gzip.compress(b""),
        one + b"trailing",  # not a gzip member after the first
        one[:-4],  # cut short
        b"not gzip at all",
        b"",
    ]
    for body in bodies:
        try:
            expected: bytes | str = gzip.decompress(body)
        except Exception as exc:
            expected = type(exc).__name__
        try:
            got: bytes | str = decompress(body, isal)
        except Exception as exc:
            got = type(exc).__name__
        assert got == expected, body[-12:]


def test_raw_deflate_is_accepted_but_zlib_wrapped_is_not(loki: LokiReceiver) -> None:
    raw = body_of(({"a": "b"}, values("deflated")))
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)  # Go's compress/flate: no header
    deflated = compressor.compress(raw) + compressor.flush()
    headers = {**JSON, "Content-Encoding": "deflate"}

    assert push(loki, data=deflated, headers=headers).status_code == 204
    assert push(loki, data=zlib.compress(raw), headers=headers).status_code == 400
    assert loki.lines() == ["deflated"]


def test_brotli_is_400(loki: LokiReceiver) -> None:
    response = push(loki, ({"a": "b"}, values("x")), headers={**JSON, "Content-Encoding": "br"})

    assert response.status_code == 400
    assert "not supported" in response.text
    assert loki.entries() == []


def test_gzip_body_without_the_header_is_400(loki: LokiReceiver) -> None:
    response = push(loki, data=gzip.compress(body_of(({"a": "b"}, values("x")))))

    assert response.status_code == 400
    assert loki.entries() == []


def test_chunked_request_body_is_read(loki: LokiReceiver) -> None:
    data = body_of(({"a": "b"}, values("streamed")))
    pieces = iter([data[:10], data[10:]])  # a generator body makes requests send chunks

    response = requests.post(loki.push_url, data=pieces, headers=JSON, timeout=10)

    assert response.status_code == 204
    assert loki.pushes()[0].headers.get("Transfer-Encoding") == "chunked"
    assert loki.lines() == ["streamed"]


# -- timestamps and JSON shape --------------------------------------------------------


def test_numeric_timestamp_is_400(loki: LokiReceiver) -> None:
    response = push(loki, ({"a": "b"}, [[now_ns(), "x"]]))

    assert response.status_code == 400
    assert "string" in response.text
    assert loki.entries() == []


@pytest.mark.parametrize("ts", ["", "12.5", "1e18", " 12", "99999999999999999999"])
def test_malformed_timestamp_string_is_400(loki: LokiReceiver, ts: str) -> None:
    assert push(loki, ({"a": "b"}, [[ts, "x"]])).status_code == 400
    assert loki.entries() == []


def test_invalid_json_is_400(loki: LokiReceiver) -> None:
    assert push(loki, data=b'{"streams": [').status_code == 400
    assert push(loki, data=b"[]").status_code == 400
    assert loki.rejected == {}


def test_lone_surrogate_escape_is_read_as_pythons_parser_reads_it(loki: LokiReceiver) -> None:
    # orjson (the fast path) refuses it; the stdlib parser accepts it, as before.
    data = b'{"streams": [{"stream": {"a": "b"}, "values": [["%d", "x\\ud800y"]]}]}' % now_ns()
    assert push(loki, data=data).status_code == 204
    assert loki.lines() == ["x\ud800y"]


@pytest.mark.parametrize("ts", ["0", "1", "999999999999999999", "9223372036854775807", "-5"])
def test_timestamps_at_the_edges_of_int64_are_parsed(loki: LokiReceiver, ts: str) -> None:
    # Old or far-future instants are then refused by the age checks, not by the parser.
    response = push(loki, ({"a": "b"}, [[ts, "x"]]))
    assert "invalid timestamp" not in response.text
    too_big = push(loki, ({"a": "b"}, [["9223372036854775808", "x"]]))
    assert too_big.status_code == 400
    assert "invalid timestamp" in too_big.text


# -- labels -------------------------------------------------------------------------


def test_empty_label_set_is_400_but_other_streams_are_stored(loki: LokiReceiver) -> None:
    response = push(loki, ({}, values("lost")), ({"a": "b"}, values("kept")))

    assert response.status_code == 400
    assert "at least one label pair" in response.text
    assert loki.lines() == ["kept"]
    assert loki.rejected == {"missing_labels": 1}


def test_no_streams_is_422(loki: LokiReceiver) -> None:
    response = push(loki, data=b'{"streams": []}')

    assert response.status_code == 422
    assert loki.status_counts == {422: 1}


def test_stream_without_values_is_ignored_with_204(loki: LokiReceiver) -> None:
    assert push(loki, ({"a": "b"}, [])).status_code == 204
    assert loki.entries() == []


@pytest.mark.parametrize("name", ["a-b", "1abc", "é", "a.b"])
def test_invalid_label_name_refuses_the_whole_push(loki: LokiReceiver, name: str) -> None:
    response = push(loki, ({name: "v"}, values("x")), ({"ok": "v"}, values("y")))

    assert response.status_code == 400
    assert loki.entries() == []


def test_fifteen_labels_pass_and_sixteen_are_400(loki: LokiReceiver) -> None:
    fifteen = {f"l{i}": "v" for i in range(15)}
    sixteen = {f"l{i}": "v" for i in range(16)}

    assert push(loki, (fifteen, values("ok"))).status_code == 204
    response = push(loki, (sixteen, values("too many")))
    assert response.status_code == 400
    assert "16 label names; limit 15" in response.text
    # service_name is not counted (Loki adds it itself).
    assert push(loki, ({**fifteen, "service_name": "s"}, values("ok too"))).status_code == 204
    assert loki.lines() == ["ok", "ok too"]


def test_label_value_up_to_2048_bytes(loki: LokiReceiver) -> None:
    assert push(loki, ({"a": "v" * 2048}, values("fits"))).status_code == 204
    response = push(loki, ({"a": "v" * 2049}, values("too long")))

    assert response.status_code == 400
    assert "label value too long" in response.text
    assert loki.lines() == ["fits"]


def test_stream_limit_answers_429_and_keeps_existing_streams() -> None:
    with LokiReceiver(max_streams=2) as loki:
        assert push(loki, ({"s": "1"}, values("a")), ({"s": "2"}, values("b"))).status_code == 204
        response = push(loki, ({"s": "3"}, values("c")))
        assert response.status_code == 429
        assert "Maximum active stream limit exceeded" in response.text
        assert push(loki, ({"s": "1"}, values("d"))).status_code == 204
        assert loki.lines() == ["a", "b", "d"]
        assert loki.rejected == {"stream_limit": 1}


# -- lines ----------------------------------------------------------------------------


def test_long_line_is_400_but_the_other_lines_are_stored(loki: LokiReceiver) -> None:
    limit = 256 * 1024  # Loki's "256KB" is binary: "Max entry size '262144'"
    lines = ["before", "x" * (limit + 1), "y" * limit, "after"]

    response = push(loki, ({"a": "b"}, values(*lines)))

    assert response.status_code == 400
    assert f"Max entry size '{limit}' bytes exceeded" in response.text
    assert loki.lines() == ["before", "y" * limit, "after"]
    assert loki.rejected == {"line_too_long": 1}


def test_line_size_counts_utf8_bytes() -> None:
    with LokiReceiver(max_line_bytes=10) as loki:
        assert push(loki, ({"a": "b"}, values("é" * 5))).status_code == 204
        assert push(loki, ({"a": "b"}, values("é" * 6))).status_code == 400
        assert loki.lines() == ["é" * 5]


def test_empty_lines_are_accepted_but_never_stored(loki: LokiReceiver) -> None:
    response = push(loki, ({"a": "b"}, values("", "real", "")))

    assert response.status_code == 204
    assert loki.lines() == ["real"]
    assert loki.dropped == {"empty_line": 2}


def test_exact_duplicates_are_stored_once(loki: LokiReceiver) -> None:
    ts = now_ns()
    stream = ({"a": "b"}, [[str(ts), "same"], [str(ts), "other line"]])

    assert push(loki, stream).status_code == 204
    assert push(loki, stream).status_code == 204  # a resent batch is not an error
    assert push(loki, ({"a": "c"}, [[str(ts), "same"]])).status_code == 204  # other stream

    assert sorted(loki.lines()) == ["other line", "same", "same"]
    assert loki.dropped == {"duplicate": 2}


def test_one_timestamp_keeps_every_distinct_line_once_short_ones_included(
    loki: LokiReceiver,
) -> None:
    ts = now_ns()
    stream = ({"a": "b"}, [[str(ts), line] for line in ("x", "y", "x", "long " * 50, "y")])
    assert push(loki, stream).status_code == 204
    assert push(loki, stream).status_code == 204
    assert loki.lines() == ["x", "y", "long " * 50]
    assert loki.count() == 3 and loki.dropped == {"duplicate": 7}
    assert [(e.ts_ns, e.labels["a"]) for e in loki.entries()] == [(ts, "b")] * 3


def test_stored_entries_are_not_walked_by_the_garbage_collector() -> None:
    """A full collection walks every tracked container whole: a store that kept its
    entries in lists, sets or NamedTuples made each one slower as it grew."""
    import gc

    from aind_log_utils.testing._loki_model import LokiLimits, ParsedStream
    from aind_log_utils.testing._loki_rules import LokiStore

    store = LokiStore(LokiLimits(rate_limit_bytes_s=None))
    base = now_ns()

    def ingest(first: int, count: int) -> None:
        values = [
            PushValue(base + i, f"line {i}", {"subject_id": "123456"})
            for i in range(first, first + count)
        ]
        assert store.ingest([ParsedStream({"service_name": "x"}, values)], None, 0)[0] == 204

    def walked() -> int:  # what a full collection visits: every reference of a tracked object
        gc.collect()
        gc.collect()  # a tuple of tuples is untracked once those are: a collection later
        return sum(len(gc.get_referents(o)) for o in gc.get_objects())

    ingest(0, 100)
    before = walked()
    for first in range(100, 20_100, 1000):
        ingest(first, 1000)
    grown = walked() - before
    assert store.count == 20_100 and len(store.entries()) == 20_100
    # A handful per push (20 of them) and the newest few runs' tuples, not one or
    # more per entry (a store of lists grew by 80,000).
    assert grown < 2_000


def test_stored_metadata_leaves_the_collector_at_its_first_collection() -> None:
    """What is still tracked after a young collection is promoted, and promotions
    bring on full collections: metadata kept as pairs (untracked a collection after
    its pairs) cost 29 of them in 200,000 entries. Flat, it is untracked at once."""
    import gc

    from aind_log_utils.testing._loki_model import LokiLimits, ParsedStream
    from aind_log_utils.testing._loki_rules import LokiStore

    store = LokiStore(LokiLimits(rate_limit_bytes_s=None))
    base = now_ns()
    meta = {"subject_id": "123456", "rig_id": "rig_1"}
    values = [PushValue(base + i, f"line {i}", dict(meta)) for i in range(100)]
    was_enabled = gc.isenabled()
    gc.disable()  # so that no collection runs before the one looked at
    try:
        assert store.ingest([ParsedStream({"service_name": "x"}, values)], None, 0)[0] == 204
        gc.collect(0)
        stored = store._runs[-1][4]
        assert [e.metadata for e in store.entries()] == [meta] * 100
        assert not any(gc.is_tracked(m) for m in stored)
    finally:
        if was_enabled:
            gc.enable()


# -- time rules -------------------------------------------------------------------------


def test_entries_within_an_hour_behind_are_accepted(loki: LokiReceiver) -> None:
    newest = now_ns()
    push(loki, ({"a": "b"}, [[str(newest), "newest"]]))

    response = push(loki, ({"a": "b"}, [[str(newest - HOUR_NS // 2), "half an hour back"]]))

    assert response.status_code == 204
    assert loki.lines() == ["newest", "half an hour back"]


def test_entry_too_far_behind_is_400_and_the_rest_stored(loki: LokiReceiver) -> None:
    newest = now_ns()
    push(loki, ({"a": "b"}, [[str(newest), "newest"]]))

    response = push(
        loki,
        ({"a": "b"}, [[str(newest - 2 * HOUR_NS), "too far"], [str(newest + 1), "fine"]]),
    )

    assert response.status_code == 400
    assert "entry too far behind" in response.text
    assert loki.lines() == ["newest", "fine"]
    assert loki.rejected == {"too_far_behind": 1}
    # The window is per stream: another stream may start two hours back.
    assert push(loki, ({"a": "other"}, values("old", ts=newest - 2 * HOUR_NS))).status_code == 204


def test_timestamp_older_than_7_days_is_400(loki: LokiReceiver) -> None:
    response = push(loki, ({"a": "b"}, [[str(now_ns(-8 * 86400)), "old"], *values("new")]))

    assert response.status_code == 400
    assert "timestamp too old" in response.text
    assert loki.lines() == ["new"]


def test_timestamp_more_than_10_minutes_ahead_is_400(loki: LokiReceiver) -> None:
    response = push(
        loki, ({"a": "b"}, [[str(now_ns(11 * 60)), "future"], [str(now_ns(5 * 60)), "soon"]])
    )

    assert response.status_code == 400
    assert "too new" in response.text
    assert loki.lines() == ["soon"]


# -- structured metadata --------------------------------------------------------------------


def test_structured_metadata_is_stored(loki: LokiReceiver) -> None:
    ts = now_ns()
    response = push(loki, ({"a": "b"}, [[str(ts), "x", {"trace_id": "abc"}], [str(ts + 1), "y"]]))

    assert response.status_code == 204
    assert [e.metadata for e in loki.entries()] == [{"trace_id": "abc"}, None]


def test_structured_metadata_limits(loki: LokiReceiver) -> None:
    ts = now_ns()
    many = {f"k{i}": "v" for i in range(129)}
    big = {"k": "v" * (64 * 1024)}  # 64 KiB + 1 byte with the name
    response = push(
        loki,
        ({"a": "b"}, [[str(ts), "many", many], [str(ts + 1), "big", big], [str(ts + 2), "ok"]]),
    )

    assert response.status_code == 400
    assert "too many structured metadata labels" in response.text
    assert "structured metadata too large" in response.text
    assert loki.lines() == ["ok"]
    assert loki.rejected == {"structured_metadata_too_many": 1, "structured_metadata_too_large": 1}

    at_limits = [
        [str(ts + 3), "128 pairs", {f"k{i}": "v" for i in range(128)}],
        [str(ts + 4), "64 KiB", {"k": "v" * (64 * 1024 - 1)}],
    ]
    assert push(loki, ({"a": "b"}, at_limits)).status_code == 204
    assert loki.lines() == ["ok", "128 pairs", "64 KiB"]


def test_non_string_metadata_value_is_400(loki: LokiReceiver) -> None:
    assert push(loki, ({"a": "b"}, [[str(now_ns()), "x", {"n": 1}]])).status_code == 400
    assert loki.entries() == []


def test_old_loki_refuses_structured_metadata() -> None:
    with LokiReceiver(structured_metadata=False) as loki:
        ts = now_ns()
        response = push(loki, ({"a": "b"}, [[str(ts), "meta", {"k": "v"}], [str(ts + 1), "plain"]]))

        assert response.status_code == 400
        assert "structured metadata" in response.text
        assert loki.lines() == ["plain"]


# -- tenants and headers ----------------------------------------------------------------------


def test_tenant_and_authorization_are_recorded(loki: LokiReceiver) -> None:
    headers = {**JSON, "X-Scope-OrgID": "team-a", "Authorization": "Basic dXNlcjpwdw=="}
    push(loki, ({"a": "b"}, values("x")), headers=headers)

    assert loki.entries()[0].tenant == "team-a"
    [record] = loki.pushes()
    assert (record.status, record.tenant, record.authorization) == (
        204,
        "team-a",
        "Basic dXNlcjpwdw==",
    )


def test_require_tenant_answers_401_without_org_id() -> None:
    with LokiReceiver(require_tenant=True) as loki:
        assert push(loki, ({"a": "b"}, values("anonymous"))).status_code == 401
        headers = {**JSON, "X-Scope-OrgID": "t1"}
        assert push(loki, ({"a": "b"}, values("known")), headers=headers).status_code == 204
        assert [(e.line, e.tenant) for e in loki.entries()] == [("known", "t1")]


# -- size and rate ------------------------------------------------------------------------------


def test_push_over_4_mib_decoded_is_500(loki: LokiReceiver) -> None:
    lines = ["x" * 200_000 for _ in range(22)]  # ~4.4 MB: under the 6 MB burst
    data = body_of(({"a": "b"}, values(*lines)))

    response = push(loki, data=gzip.compress(data), headers={**JSON, "Content-Encoding": "gzip"})

    assert response.status_code == 500
    assert f"grpc: received message larger than max ({len(data)} vs. 4194304)" in response.text
    assert loki.entries() == []


def test_push_bigger_than_the_burst_is_429_every_time(loki: LokiReceiver) -> None:
    data = body_of(({"a": "b"}, values(*["x" * 200_000 for _ in range(35)])))  # 7 MB

    statuses = [push(loki, data=data).status_code for _ in range(2)]

    assert statuses == [429, 429]
    assert loki.entries() == []
    assert loki.rejected == {"rate_limited": 70}


def test_rate_limit_refuses_the_whole_request_until_the_bucket_refills() -> None:
    with LokiReceiver(rate_limit_bytes_s=1000, burst_bytes=2000) as loki:
        before_first = time.monotonic()
        assert push(loki, ({"a": "b"}, values("x" * 1500))).status_code == 204

        response = push(loki, ({"a": "b"}, values("y" * 700, "z" * 800)))
        assert response.status_code == 429
        assert "Ingestion rate limit exceeded" in response.text
        assert loki.lines() == ["x" * 1500]

        # 500 tokens were left: the 1500 needed take 1 s to refill at 1000 bytes/s.
        status = 429
        while status == 429 and time.monotonic() < before_first + 10:
            time.sleep(0.05)  # polling pace, with a deadline
            status = push(loki, ({"a": "b"}, values("y" * 700, "z" * 800))).status_code
        assert status == 204
        assert time.monotonic() - before_first >= 0.99
        assert loki.lines()[1:] == ["y" * 700, "z" * 800]


def test_rate_limit_can_be_turned_off() -> None:
    with LokiReceiver(rate_limit_bytes_s=None, burst_bytes=10) as loki:
        assert push(loki, ({"a": "b"}, values("x" * 1000))).status_code == 204
        assert loki.lines() == ["x" * 1000]


# -- keep-alive -----------------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection_even_after_errors(loki: LokiReceiver) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", loki.port, timeout=10)
    try:
        statuses = []
        socks = set()
        for body in (body_of(({"a": "b"}, values("one"))), b"not json", b'{"streams": []}'):
            conn.request("POST", "/loki/api/v1/push", body=body, headers=JSON)
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
            socks.add(id(conn.sock))
            assert conn.sock is not None
    finally:
        conn.close()

    assert statuses == [204, 400, 422]
    assert len(socks) == 1


# -- failure injection ------------------------------------------------------------------------------


def test_fail_next_answers_n_pushes_then_recovers(loki: LokiReceiver) -> None:
    loki.fail_next(2, status=429, retry_after=3)
    loki.fail_next(1, status=500)

    responses = [push(loki, ({"a": "b"}, values(f"try {i}"))) for i in range(4)]

    assert [r.status_code for r in responses] == [429, 429, 500, 204]
    assert responses[0].headers["Retry-After"] == "3"
    assert "empty ring" in responses[2].text
    assert loki.lines() == ["try 3"]
    assert loki.status_counts == {429: 2, 500: 1, 204: 1}


@pytest.mark.parametrize(
    ("mode", "status", "text"),
    [("error500", 500, ""), ("error429", 429, "rate limit"), ("empty_ring", 500, "empty ring")],
)
def test_error_modes(loki: LokiReceiver, mode: Any, status: int, text: str) -> None:
    loki.set_mode(mode)
    response = push(loki, ({"a": "b"}, values("x")))
    assert response.status_code == status
    assert text in response.text

    loki.set_mode("ok")
    assert push(loki, ({"a": "b"}, values("y"))).status_code == 204
    assert loki.lines() == ["y"]


def test_empty_ring_mode_is_not_ready(loki: LokiReceiver) -> None:
    loki.set_mode("empty_ring")
    assert requests.get(loki.url + "/ready", timeout=5).status_code == 503
    loki.set_mode("ok")
    assert requests.get(loki.url + "/ready", timeout=5).status_code == 200


def test_slow_mode_delays_the_answer(loki: LokiReceiver) -> None:
    loki.set_mode("slow", slow_s=0.3)
    started = time.monotonic()

    response = push(loki, ({"a": "b"}, values("late")))

    assert response.status_code == 204
    assert time.monotonic() - started >= 0.3
    assert loki.lines() == ["late"]


def test_hang_holds_the_push_until_the_mode_changes(loki: LokiReceiver) -> None:
    loki.set_mode("hang")
    answered = threading.Event()
    result: list[int] = []

    def client() -> None:
        result.append(push(loki, ({"a": "b"}, values("held"))).status_code)
        answered.set()

    thread = threading.Thread(target=client)
    thread.start()
    assert loki.wait_for_requests(1, timeout_s=5)
    assert not answered.is_set()  # held: no answer while the mode is "hang"
    assert loki.entries() == []

    loki.set_mode("ok")
    assert answered.wait(5)
    thread.join(5)
    assert result == [204]
    assert loki.lines() == ["held"]


def test_hang_makes_a_client_timeout_fire(loki: LokiReceiver) -> None:
    loki.set_mode("hang")
    with pytest.raises(requests.exceptions.ReadTimeout):
        push(loki, ({"a": "b"}, values("x")), timeout_s=0.3)
    assert loki.entries() == []


def test_go_away_drops_a_held_push_unanswered(loki: LokiReceiver) -> None:
    loki.set_mode("hang")
    errors: list[BaseException] = []

    def client() -> None:
        try:
            push(loki, ({"a": "b"}, values("held")))
        except requests.exceptions.ConnectionError as exc:
            errors.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    assert loki.wait_for_requests(1, timeout_s=5)

    loki.go_away()
    thread.join(5)

    assert not thread.is_alive()
    assert len(errors) == 1
    # The client sees its connection shut as the server goes away; the handler that
    # held its push records it a moment later, on its own thread.
    deadline = time.monotonic() + 5
    while not loki.pushes() and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the receiver's record with a deadline
    assert [p.status for p in loki.pushes()] == [None]
    assert loki.entries() == []


def test_go_away_refuses_connections_and_come_back_uses_the_same_port(
    loki: LokiReceiver,
) -> None:
    port = loki.port
    with requests.Session() as session:
        first = session.post(loki.push_url, data=body_of(({"a": "b"}, values("before"))),
                             headers=JSON, timeout=5)  # fmt: skip
        assert first.status_code == 204

        loki.go_away()
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(loki.push_url, data=b"{}", headers=JSON, timeout=5)

        loki.come_back()
        assert loki.port == port
        again = session.post(loki.push_url, data=body_of(({"a": "b"}, values("after"))),
                             headers=JSON, timeout=5)  # fmt: skip
        assert again.status_code == 204

    assert loki.lines() == ["before", "after"]  # what was acknowledged survives


def test_go_away_and_come_back_repeatedly(loki: LokiReceiver) -> None:
    for i in range(5):
        loki.go_away()
        loki.come_back()
        assert push(loki, ({"a": "b"}, values(f"round {i}"))).status_code == 204
    assert len(loki.lines()) == 5


# -- inspection and lifecycle -------------------------------------------------------------------------


def test_wait_for_blocks_until_entries_arrive(loki: LokiReceiver) -> None:
    assert loki.wait_for(1, timeout_s=0.05) is False

    thread = threading.Thread(target=push, args=(loki, ({"a": "b"}, values("x", "y"))))
    thread.start()
    assert loki.wait_for(2, timeout_s=5) is True
    thread.join(5)


def test_concurrent_pushes_are_all_stored(loki: LokiReceiver) -> None:
    def client(n: int) -> None:
        with requests.Session() as session:
            for i in range(10):
                data = body_of(({"client": str(n)}, values(f"{n}-{i}")))
                session.post(loki.push_url, data=data, headers=JSON, timeout=10)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert loki.wait_for(80, timeout_s=5)
    assert sorted(loki.lines()) == sorted(f"{n}-{i}" for n in range(8) for i in range(10))
    assert loki.status_counts == {204: 80}


def test_clear_forgets_entries_streams_and_counters(loki: LokiReceiver) -> None:
    stream = ({"a": "b"}, values("x"))
    push(loki, stream)
    loki.clear()

    assert (loki.entries(), loki.requests, loki.status_counts, loki.pushes()) == ([], 0, {}, [])
    assert push(loki, stream).status_code == 204
    assert loki.lines() == ["x"]  # the same entry again is no longer a duplicate
    assert loki.dropped == {}


def test_stop_is_idempotent_and_final() -> None:
    loki = LokiReceiver().start()
    url = loki.push_url
    loki.stop()
    loki.stop()

    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(url, data=b"{}", headers=JSON, timeout=5)
    with pytest.raises(RuntimeError):
        loki.start()
    with pytest.raises(RuntimeError):
        loki.come_back()


@pytest.mark.parametrize(
    "kwargs",
    [{"port": -1}, {"slow_s": -1.0}, {"max_line_bytes": -5}, {"burst_bytes": -1}],
)
def test_bad_configuration_raises_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LokiReceiver(**kwargs)


def test_bad_failure_injection_raises_value_error(loki: LokiReceiver) -> None:
    with pytest.raises(ValueError, match="status"):
        loki.fail_next(1, status=200)
    with pytest.raises(ValueError, match="mode"):
        loki.set_mode("broken")  # type: ignore[arg-type]


_TS_TEXT = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64).map(str),
    st.sampled_from(["9223372036854775807", "9223372036854775808", "0", "", "+5", "-0",
                     "\uff11\uff12", "\u00b2", "1e9", " 1", "00000000000000000001"]),
    st.text(max_size=20),
)  # fmt: skip
_JSONISH = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.booleans())
_ENTRY = st.one_of(
    st.lists(
        st.one_of(
            _TS_TEXT,
            st.text(max_size=10),
            st.dictionaries(st.text(max_size=4), st.one_of(st.text(max_size=4), _JSONISH)),
            _JSONISH,
        ),
        max_size=4,
    ),
    st.tuples(_TS_TEXT, st.text(max_size=10)).map(list),
    st.tuples(
        _TS_TEXT, st.text(max_size=10), st.dictionaries(st.text(max_size=4), st.text(max_size=4))
    ).map(list),
    _JSONISH,
)


@given(st.lists(_ENTRY, max_size=6))
@settings(max_examples=400, deadline=None)
def test_the_quick_entry_parse_agrees_with_the_exact_one(raws: list[Any]) -> None:
    # parse_push takes most entries through a quick path; whatever it accepts or
    # refuses must be exactly what the entry-by-entry checks accept or refuse.
    try:
        expected: list[Any] | str = [_parse_value(raw) for raw in raws]
    except PushError as exc:
        expected = exc.message
    try:
        got: list[Any] | str = _parse_values(raws)
    except PushError as exc:
        got = exc.message
    assert got == expected
    if isinstance(got, list):
        assert all(type(v) is PushValue for v in got)
