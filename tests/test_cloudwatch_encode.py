"""CloudWatch encoding and PutLogEvents rules, and how the transport reads the service's answers."""

from __future__ import annotations

import logging
import random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aind_log_utils._cloudwatch._encode import (
    ENGINE_MAX_BATCH_BYTES,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_MESSAGE_BYTES,
    batch_problem,
    build_events,
    decode_item,
    encode_item,
    engine_batch_bytes,
    event_ms,
    fit_message,
    put_body,
)
from aind_log_utils._cloudwatch._transport import CloudWatchTransport, _rejected
from aind_log_utils._delivery import SendOutcome
from aind_log_utils._render import Renderer


def test_item_round_trip() -> None:
    line = b'{"message":"caf\xc3\xa9","level":"INFO"}'
    assert decode_item(encode_item(1_764_000_000_123, line)) == (1_764_000_000_123, line)


@pytest.mark.parametrize("item", [b"", b"123", b"abc\n{}", b"123\n", b"-5\n{}"])
def test_items_not_ours_are_refused(item: bytes) -> None:
    with pytest.raises(ValueError):
        decode_item(item)


def test_event_time_agrees_with_the_line() -> None:
    renderer = Renderer()
    for created in (1_764_000_000.0, 1_764_000_000.9999996, 1_764_000_000.0015, 1.001):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        record.created = created
        event, _ = renderer.render(record)
        micros = int(event["timestamp"][20:26])
        assert event_ms(created) == int(created) * 1000 + micros // 1000


def test_fit_message_keeps_short_lines_and_truncates_long_ones() -> None:
    assert fit_message({}, b'{"a":1}\n', 1024) == b'{"a":1}'
    event = {"timestamp": "2026-01-01T00:00:00.000000Z", "level": "INFO", "message": "m" * 5000,
             "subject_id": "123456", "blob": "b" * 5000}  # fmt: skip
    line = orjson.dumps(event)
    short = fit_message(event, line + b"\n", 2048)
    assert len(short) <= 2048
    record = orjson.loads(short)
    assert record["truncated"] is True and record["original_bytes"] == len(line)
    assert record["subject_id"] == "123456" and record["dropped_fields"] == ["blob"]


def test_build_events_sorts_stably_skips_foreign_items_and_cuts_long_messages() -> None:
    long = orjson.dumps({"timestamp": "t", "level": "INFO", "message": "z" * 3000})
    batch = [encode_item(30, b'"c"'), b"garbage", encode_item(10, b'"a1"'),
             encode_item(20, long), encode_item(10, b'"a2"'), encode_item(5, b"")]  # fmt: skip
    events, invalid, size = build_events(batch, 1024)
    assert invalid == 2
    assert size == sum(len(message) + 26 for _, message in events)
    assert [ts for ts, _ in events] == [10, 10, 20, 30]
    assert [m for _, m in events[:2]] == [b'"a1"', b'"a2"']  # equal times keep order
    assert len(events[2][1]) <= 1024 and orjson.loads(events[2][1])["truncated"]


def test_damaged_utf8_is_replaced_and_counted_as_sent() -> None:
    events, invalid, size = build_events([encode_item(1, b'"\xff\xfe"')], 1024)
    assert invalid == 0 and events[0][1].decode() == '"\ufffd\ufffd"'
    assert size == len(events[0][1]) + 26 == 34


@pytest.mark.parametrize(
    "text",
    ['{"a":"plain"}', '{"q":"say \\"hi\\"","path":"C:\\\\data\\\\x"}', '{"u":"café ✓ 😀"}',
     '{"esc":"\\n\\t\\u0001"}', '{"m":"\\\\"}'],
)  # fmt: skip
def test_put_body_is_the_json_botocore_would_send(text: str) -> None:
    line = orjson.dumps(orjson.loads(text))  # as the renderer writes it
    events, _, _ = build_events([encode_item(7, line), encode_item(8, line)], 1024)
    body = orjson.loads(put_body("aind/internal_logs", "cap-1", events))
    assert body == {
        "logGroupName": "aind/internal_logs", "logStreamName": "cap-1",
        "logEvents": [{"timestamp": 7, "message": line.decode()},
                      {"timestamp": 8, "message": line.decode()}],
    }  # fmt: skip


def test_put_body_escapes_raw_control_characters() -> None:
    events, _, _ = build_events([encode_item(1, b"not ours\x01\nsecond line")], 1024)
    body = orjson.loads(put_body("g", "s", events))
    assert body["logEvents"] == [{"timestamp": 1, "message": "not ours\x01\nsecond line"}]


def test_batch_problem_counts_events_bytes_and_span() -> None:
    def events(n: int, span_ms: int = 0) -> list[tuple[int, bytes]]:
        return [(span_ms * i // max(1, n - 1), b"x") for i in range(n)]

    assert batch_problem(events(MAX_BATCH_EVENTS), 1000) is None
    assert batch_problem(events(MAX_BATCH_EVENTS + 1), 1000) == "more than 10,000 events"
    assert batch_problem(events(4), MAX_BATCH_BYTES) is None
    assert batch_problem(events(4), MAX_BATCH_BYTES + 1) == "batch over 1,048,576 bytes"
    assert batch_problem(events(2, 24 * 3600 * 1000), 100) is None
    assert batch_problem(events(2, 24 * 3600 * 1000 + 1), 100) == "batch spans more than 24 h"
    exact = (MAX_BATCH_BYTES - 4 * 26) // 4  # the size counted as the service counts it
    for extra, fits in ((0, True), (1, False)):
        items = [encode_item(1, b"x" * (exact + extra)) for _ in range(4)]
        built = build_events(items, MAX_BATCH_BYTES)
        assert (batch_problem(built.events, built.size) is None) is fits
    built = build_events([encode_item(1, "é".encode() * 300_000)] * 2, MAX_BATCH_BYTES)
    assert built.size == 2 * (600_000 + 26)  # UTF-8 bytes, not characters
    assert batch_problem(built.events, built.size) == "batch over 1,048,576 bytes"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=MAX_MESSAGE_BYTES), min_size=1, max_size=40))
def test_an_engine_sized_batch_always_fits_one_call(sizes: list[int]) -> None:
    # The engine stops a batch at ENGINE_MAX_BATCH_BYTES of items (or 10,000 of them).
    batch: list[bytes] = []
    total = 0
    for size in sizes:
        item = encode_item(1_764_000_000_000, b"x" * size)
        if batch and total + len(item) > ENGINE_MAX_BATCH_BYTES:
            break
        batch.append(item)
        total += len(item)
    events, _, size = build_events(batch, MAX_MESSAGE_BYTES)
    assert batch_problem(events, size) is None


def test_ten_thousand_small_items_fit_too() -> None:
    per_item = (ENGINE_MAX_BATCH_BYTES // MAX_BATCH_EVENTS) - 14
    batch = [encode_item(1_764_000_000_000, b"y" * per_item) for _ in range(MAX_BATCH_EVENTS)]
    assert sum(map(len, batch)) <= ENGINE_MAX_BATCH_BYTES == engine_batch_bytes(MAX_BATCH_EVENTS)
    built = build_events(batch, MAX_MESSAGE_BYTES)
    assert batch_problem(built.events, built.size) is None


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (None, (0, "")),
        ({}, (0, "")),
        ({"tooOldLogEventEndIndex": 2}, (3, "too_old")),
        ({"expiredLogEventEndIndex": 0}, (1, "expired")),
        ({"tooNewLogEventStartIndex": 8}, (2, "too_new")),
        ({"tooOldLogEventEndIndex": 1, "tooNewLogEventStartIndex": 9}, (3, "too_old+too_new")),
        ({"tooOldLogEventEndIndex": 99}, (10, "too_old")),
    ],
)
def test_rejected_events_are_counted_from_the_indices(
    info: dict[str, int] | None, expected: tuple[int, str]
) -> None:
    assert _rejected(info, 10) == expected


# ---- answers -------------------------------------------------------------------
botocore_exceptions = pytest.importorskip("botocore.exceptions")


class FakeClient:
    """Stands in for the boto3 client: answers each call with the next scripted outcome."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[str] = []

    def _next(self, name: str) -> Any:
        self.calls.append(name)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def put_log_events(self, **_: Any) -> Any:
        return self._next("put")

    def create_log_group(self, **_: Any) -> Any:
        return self._next("group")

    def create_log_stream(self, **_: Any) -> Any:
        return self._next("stream")


def client_error(code: str, status: int = 400, message: str = "m") -> Exception:
    response: Any = {"Error": {"Code": code, "Message": message},
                     "ResponseMetadata": {"HTTPStatusCode": status}}  # fmt: skip
    error: Exception = botocore_exceptions.ClientError(response, "PutLogEvents")
    return error


def transport_with(client: FakeClient) -> CloudWatchTransport:
    transport = CloudWatchTransport(
        log_group="g", log_stream="s", region="us-west-2", endpoint_url=None,
        profile_name=None, max_message_bytes=MAX_MESSAGE_BYTES, max_batch_bytes=ENGINE_MAX_BATCH_BYTES,
    )  # fmt: skip
    transport._client = client
    transport._exc = botocore_exceptions
    transport._pid = __import__("os").getpid()
    return transport


BATCH = [encode_item(1_764_000_000_000 + i, b'{"i":%d}' % i) for i in range(3)]


@pytest.mark.parametrize(
    ("answer", "outcome", "reason"),
    [
        ({}, SendOutcome.DELIVERED, ""),
        (client_error("ThrottlingException"), SendOutcome.RETRY, "ThrottlingException"),
        (client_error("ServiceUnavailableException", 503), SendOutcome.RETRY, "ServiceUnavailableException"),
        (client_error("Whatever", 502), SendOutcome.RETRY, "Whatever"),
        (client_error("ExpiredTokenException"), SendOutcome.RETRY, "ExpiredTokenException"),
        (client_error("DataAlreadyAcceptedException"), SendOutcome.DELIVERED, ""),
        (client_error("InvalidParameterException"), SendOutcome.SPLIT, "InvalidParameterException"),
        (client_error("AccessDeniedException"), SendOutcome.REJECTED, "AccessDeniedException"),
        (botocore_exceptions.EndpointConnectionError(endpoint_url="http://x"), SendOutcome.RETRY, None),
        (botocore_exceptions.ReadTimeoutError(endpoint_url="http://x"), SendOutcome.RETRY, None),
    ],
)  # fmt: skip
def test_answers_are_read_as_documented(
    answer: Any, outcome: SendOutcome, reason: str | None
) -> None:
    result = transport_with(FakeClient(answer)).send(list(BATCH), 1.0)
    assert result.outcome is outcome
    if reason is not None:
        assert result.reason == reason
    if outcome is SendOutcome.REJECTED:
        assert result.rejected == 3


def test_a_missing_stream_is_created_then_the_call_made_again() -> None:
    client = FakeClient(
        client_error("ResourceNotFoundException"),
        client_error("ResourceAlreadyExistsException"),
        {},
        {},
    )
    assert transport_with(client).send(list(BATCH), 1.0).outcome is SendOutcome.DELIVERED
    assert client.calls == ["put", "group", "stream", "put"]


def test_a_group_we_may_not_create_is_reported_not_retried_forever() -> None:
    client = FakeClient(client_error("ResourceNotFoundException"), client_error("AccessDeniedException"),
                        client_error("ResourceNotFoundException"))  # fmt: skip
    result = transport_with(client).send(list(BATCH), 1.0)
    assert result.outcome is SendOutcome.REJECTED and result.reason == "ResourceNotFoundException"


def test_partial_acceptance_and_foreign_items_are_counted() -> None:
    client = FakeClient({"rejectedLogEventsInfo": {"tooOldLogEventEndIndex": 0}})
    result = transport_with(client).send([*BATCH, b"not an item"], 1.0)
    assert result.outcome is SendOutcome.REJECTED and result.rejected == 2
    assert result.reason == "too_old"


def test_a_batch_too_big_for_one_call_is_split_before_sending() -> None:
    client = FakeClient()
    batch = [encode_item(1_764_000_000_000, b"x" * 200_000) for _ in range(6)]
    result = transport_with(client).send(batch, 1.0)
    assert result.outcome is SendOutcome.SPLIT and client.calls == []


def test_no_credentials_on_a_call_turns_it_off() -> None:
    client = FakeClient(botocore_exceptions.NoCredentialsError())
    transport = transport_with(client)
    result = transport.send(list(BATCH), 1.0)
    assert result.outcome is SendOutcome.REJECTED and result.reason == "no_credentials"
    assert transport.off_reason == "no_credentials"
    assert transport.send(list(BATCH), 1.0).reason == "no_credentials" and client.calls == ["put"]


def test_sorted_batches_reach_the_client_in_time_order() -> None:
    seen: list[list[int]] = []

    class Recording(FakeClient):
        def put_log_events(self, **kwargs: Any) -> Any:
            # The events travel in the orjson body that replaces botocore's (before-sign).
            assert kwargs["logEvents"] == [] and transport._body is not None
            body = orjson.loads(transport._body)
            assert (body["logGroupName"], body["logStreamName"]) == ("g", "s")
            seen.append([e["timestamp"] for e in body["logEvents"]])
            return {}

    stamps = [random.randrange(10**6) + 1_764_000_000_000 for _ in range(200)]
    batch = [encode_item(ts, b"{}") for ts in stamps]
    transport = transport_with(Recording())
    assert transport.send(batch, 1.0).outcome is SendOutcome.DELIVERED
    assert seen == [sorted(stamps)] and transport._body is None
