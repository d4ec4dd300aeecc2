"""Grafana Loki's push rules, as a real Loki 3.4 applies them, without any HTTP.

Three separate steps, in the order Loki runs them: :func:`decode_body` undoes the
Content-Encoding and checks the Content-Type, :func:`parse_push` reads the JSON into
streams (a malformed request is refused whole), and :meth:`LokiStore.ingest`
validates each entry like the distributor (a bad entry is refused, the others of
the same request are kept), applies the tenant rate limit and the 4 MiB message
limit, and stores like the ingester (out-of-order window, stream limit, exact
duplicates dropped). The store is not thread-safe: the HTTP layer holds a lock.

Sizes are counted like Loki counts them: UTF-8 bytes, and Loki's "KB"/"MB" are
binary (``256KB`` is 262,144 bytes, as its "Max entry size '262144'" errors show;
the ingestion rate of 4 MB/s is ``4 * 2**20`` bytes/s).
"""

from __future__ import annotations

import gzip
import json
import re
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

__all__ = [
    "LokiEntry",
    "LokiLimits",
    "LokiStore",
    "ParsedStream",
    "PushError",
    "decode_body",
    "format_labels",
    "parse_push",
]

MIB = 1024 * 1024
_NS_PER_S = 1_000_000_000
_INT64_MAX = 2**63 - 1
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_TIMESTAMP = re.compile(r"[+-]?[0-9]+\Z")
_SERVICE_NAME = "service_name"
# Loki 3.4's `discover_service_name` default, in its order of preference.
_SERVICE_NAME_SOURCES = (
    "service", "app", "application", "app_name", "name", "app_kubernetes_io_name",
    "container", "container_name", "k8s_container_name", "component", "workload", "job",
    "k8s_job_name",
)  # fmt: skip


class PushError(Exception):
    """A push refused as a whole, with the status and text Loki answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LokiEntry(NamedTuple):
    """One stored log entry.

    Attributes:
        labels: the stream's labels as Loki stores them (with ``service_name``
            added when the push had none and discovery is on).
        ts_ns: the timestamp in Unix nanoseconds.
        line: the log line.
        metadata: the structured metadata, or None when the entry had none.
        tenant: the request's ``X-Scope-OrgID``, or None when it had none.
    """

    labels: dict[str, str]
    ts_ns: int
    line: str
    metadata: dict[str, str] | None
    tenant: str | None


class _Value(NamedTuple):
    ts_ns: int
    line: str
    metadata: dict[str, str] | None


class ParsedStream(NamedTuple):
    """One stream of a parsed push: its labels and its ``(ts_ns, line, metadata)`` values."""

    labels: dict[str, str]
    values: list[_Value]


@dataclass(frozen=True)
class LokiLimits:
    """Loki's per-tenant limits; the defaults are Loki 3.4's.

    A size or count limit of 0 (or None for the rate) turns that check off.
    """

    max_line_bytes: int = 256 * 1024
    max_label_names: int = 15
    max_label_name_bytes: int = 1024
    max_label_value_bytes: int = 2048
    max_streams: int = 5000
    structured_metadata: bool = True
    max_metadata_bytes: int = 64 * 1024
    max_metadata_entries: int = 128
    reject_older_than_s: float = 7 * 24 * 3600.0
    future_grace_s: float = 600.0
    out_of_order_window_s: float = 3600.0
    max_push_bytes: int = 4 * MIB
    rate_limit_bytes_s: float | None = 4 * MIB
    burst_bytes: int = 6 * MIB
    discover_service_name: bool = True

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or value is None:
                continue
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")


def decode_body(body: bytes, content_type: str | None, content_encoding: str | None) -> bytes:
    """Undo the Content-Encoding and check the Content-Type, like Loki's push parser.

    Args:
        body: the request body as received.
        content_type: the Content-Type header, or None.
        content_encoding: the Content-Encoding header, or None.

    Returns:
        The decoded JSON bytes.

    Raises:
        PushError: 400 for an unsupported or corrupt encoding, a missing
            Content-Type, or a Content-Type other than JSON.
    """
    encoding = content_encoding or ""
    try:
        if encoding in ("", "snappy"):  # Loki passes "snappy" through untouched
            data = body
        elif encoding == "gzip":
            data = gzip.decompress(body)
        elif encoding == "deflate":  # Go's compress/flate: raw RFC 1951, no zlib header
            data = zlib.decompress(body, -zlib.MAX_WBITS)
        else:
            raise PushError(400, f"Content-Encoding {json.dumps(encoding)} not supported")
    except (OSError, EOFError, zlib.error) as exc:
        raise PushError(400, f"{encoding}: invalid compressed body: {exc}") from exc
    if not content_type or not content_type.strip():
        raise PushError(400, "mime: no media type")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise PushError(
            400,
            f"unsupported Content-Type {content_type!r}: this receiver decodes only "
            "application/json (a real Loki reads any other type as protobuf+snappy)",
        )
    return data


def parse_push(data: bytes) -> list[ParsedStream]:
    """Read a JSON push body into streams; anything malformed refuses the whole push.

    Args:
        data: the decoded JSON body.

    Returns:
        The streams in request order, empty label values already dropped (Loki
        treats an empty value as an absent label).

    Raises:
        PushError: 400 for invalid JSON, a non-string or malformed timestamp, a
            non-string line or metadata value, or an invalid label name.
    """
    try:
        doc = json.loads(data)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise PushError(400, f"loghttp.PushRequest: invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise PushError(400, "loghttp.PushRequest: expected a JSON object")
    raw_streams = doc.get("streams") or []
    if not isinstance(raw_streams, list):
        raise PushError(400, "loghttp.PushRequest.streams: expected an array")
    return [_parse_stream(raw) for raw in raw_streams]


def _parse_stream(raw: Any) -> ParsedStream:
    if not isinstance(raw, dict):
        raise PushError(400, "loghttp.PushRequest.streams: each stream must be an object")
    raw_labels = raw.get("stream") or {}
    if not isinstance(raw_labels, dict) or not all(isinstance(v, str) for v in raw_labels.values()):
        raise PushError(400, "loghttp.Stream.stream: expected an object of strings")
    for name in raw_labels:
        if not _LABEL_NAME.match(name):
            raise PushError(
                400,
                f"couldn't parse labels: invalid label name {name!r}: must match "
                "[a-zA-Z_][a-zA-Z0-9_]*",
            )
    labels = {k: v for k, v in raw_labels.items() if v}
    raw_values = raw.get("values") or []
    if not isinstance(raw_values, list):
        raise PushError(400, "loghttp.Stream.values: expected an array")
    return ParsedStream(labels, [_parse_value(v) for v in raw_values])


def _parse_value(raw: Any) -> _Value:
    if not isinstance(raw, list) or len(raw) not in (2, 3):
        raise PushError(400, "loghttp.Entry: expected [ts, line] or [ts, line, {metadata}]")
    ts, line = raw[0], raw[1]
    if not isinstance(ts, str):
        raise PushError(400, f"loghttp.Entry.ts: expected a string of Unix nanoseconds, got {ts!r}")
    if not _TIMESTAMP.match(ts) or abs(int(ts)) > _INT64_MAX:
        raise PushError(400, f"loghttp.Entry.ts: invalid timestamp {ts!r}")
    if not isinstance(line, str):
        raise PushError(400, "loghttp.Entry.line: expected a string")
    metadata = raw[2] if len(raw) == 3 else None
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
    ):
        raise PushError(400, "loghttp.Entry.structuredMetadata: expected an object of strings")
    return _Value(int(ts), line, metadata or None)


def format_labels(labels: dict[str, str]) -> str:
    """Render labels as Loki does in messages and queries: ``{a="1", b="2"}``.

    Args:
        labels: label names to values.

    Returns:
        The sorted label set, values quoted.
    """
    inner = ", ".join(f"{k}={json.dumps(labels[k], ensure_ascii=False)}" for k in sorted(labels))
    return "{" + inner + "}"


def _format_ts(ts_ns: int) -> str:
    try:
        moment = datetime.fromtimestamp(ts_ns / _NS_PER_S, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return str(ts_ns)
    return moment.isoformat().replace("+00:00", "Z")


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _metadata_bytes(metadata: dict[str, str] | None) -> int:
    return sum(_nbytes(k) + _nbytes(v) for k, v in (metadata or {}).items())


class _StreamState:
    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.highest_ts: int | None = None
        self.seen: set[tuple[int, str]] = set()


class LokiStore:
    """Validates pushes and stores entries like a single Loki 3.4 instance.

    Not thread-safe. The wall clock judges timestamps, the monotonic clock fills
    the rate-limit bucket; both can be replaced for tests.
    """

    def __init__(
        self,
        limits: LokiLimits,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self._clock_ns = clock_ns
        self._monotonic_s = monotonic_s
        self.reset()

    def reset(self) -> None:
        """Forget every entry, stream and counter; refill the rate-limit bucket."""
        self.entries: list[LokiEntry] = []
        self.rejected: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self._streams: dict[tuple[str, str], _StreamState] = {}
        self._streams_per_tenant: Counter[str] = Counter()
        self._tokens: dict[str, float] = {}
        self._refilled_at: dict[str, float] = {}

    def ingest(
        self, streams: list[ParsedStream], tenant: str | None, push_bytes: int
    ) -> tuple[int, str]:
        """Validate, rate-limit and store one parsed push.

        Args:
            streams: the output of :func:`parse_push`.
            tenant: the ``X-Scope-OrgID`` header, or None (Loki's ``fake`` tenant).
            push_bytes: the decoded body size, judged against ``max_push_bytes``.

        Returns:
            The status (204, 400, 422, 429 or 500) and the text Loki answers.
        """
        if not streams:
            return 422, "error at least one valid stream is required for ingestion"
        tenant_id = tenant or "fake"
        errors: list[str] = []
        valid: list[tuple[str, dict[str, str], list[_Value]]] = []
        for stream in streams:
            if stream.values:
                self._validate_stream(stream, errors, valid)
        if not valid:
            return (400, "\n".join(errors)) if errors else (204, "")
        count = sum(len(values) for _, _, values in valid)
        size = sum(_nbytes(v.line) + _metadata_bytes(v.metadata) for _, _, vs in valid for v in vs)
        if not self._allow(tenant_id, size):
            self.rejected["rate_limited"] += count
            limit = int(self.limits.rate_limit_bytes_s or 0)
            return 429, (
                f"Ingestion rate limit exceeded for user {tenant_id} (limit: {limit} bytes/sec) "
                f"while attempting to ingest '{count}' lines totaling '{size}' bytes, reduce log "
                "volume or contact your Loki administrator to see if the limit can be increased"
            )
        max_push = self.limits.max_push_bytes
        if max_push and push_bytes > max_push:
            self.rejected["message_too_large"] += count
            return 500, (
                "rpc error: code = ResourceExhausted desc = grpc: received message larger "
                f"than max ({push_bytes} vs. {max_push})"
            )
        failure: tuple[int, str] | None = None
        for key, labels, values in valid:
            failure = self._store_stream(tenant_id, tenant, key, labels, values) or failure
        if failure is not None:
            return failure
        return (400, "\n".join(errors)) if errors else (204, "")

    def _validate_stream(
        self,
        stream: ParsedStream,
        errors: list[str],
        valid: list[tuple[str, dict[str, str], list[_Value]]],
    ) -> None:
        """Apply the distributor's label and entry checks; keep what passes."""
        lim = self.limits
        labels = dict(stream.labels)
        if not labels:
            self._reject("missing_labels", len(stream.values))
            errors.append("error at least one label pair is required per stream")
            return
        if lim.discover_service_name and _SERVICE_NAME not in labels:
            source = next((labels[n] for n in _SERVICE_NAME_SOURCES if n in labels), None)
            labels[_SERVICE_NAME] = source or "unknown_service"
        key = format_labels(labels)
        # Loki does not count service_name: it is so often added by Loki itself.
        counted = len(labels) - (_SERVICE_NAME in labels)
        label_error = None
        if lim.max_label_names and counted > lim.max_label_names:
            label_error = ("max_label_names_per_series", f"entry for stream '{key}' has "
                           f"{counted} label names; limit {lim.max_label_names}")  # fmt: skip
        for name, text in labels.items():
            if label_error is not None:
                break
            if lim.max_label_name_bytes and _nbytes(name) > lim.max_label_name_bytes:
                label_error = ("label_name_too_long",
                               f"stream '{key}' has label name too long: '{name}'")  # fmt: skip
            elif lim.max_label_value_bytes and _nbytes(text) > lim.max_label_value_bytes:
                label_error = ("label_value_too_long",
                               f"stream '{key}' has label value too long: '{text}'")  # fmt: skip
        if label_error is not None:
            self._reject(label_error[0], len(stream.values))
            errors.append(label_error[1])
            return
        kept = []
        for value in stream.values:
            problem = self._check_entry(key, value)
            if problem is None:
                kept.append(value)
            else:
                self._reject(problem[0], 1)
                errors.append(problem[1])
        if kept:
            valid.append((key, labels, kept))

    def _check_entry(self, key: str, value: _Value) -> tuple[str, str] | None:
        """Return (reason, message) when the distributor refuses this entry."""
        lim = self.limits
        now = self._clock_ns()
        oldest = now - int(lim.reject_older_than_s * _NS_PER_S)
        if lim.reject_older_than_s and value.ts_ns < oldest:
            return "greater_than_max_sample_age", (
                f"entry for stream '{key}' has timestamp too old: {_format_ts(value.ts_ns)}, "
                f"oldest acceptable timestamp is: {_format_ts(oldest)}"
            )
        if value.ts_ns > now + int(lim.future_grace_s * _NS_PER_S):
            return "too_far_in_future", (
                f"entry for stream '{key}' has timestamp too new: {_format_ts(value.ts_ns)}"
            )
        line_bytes = _nbytes(value.line)
        if lim.max_line_bytes and line_bytes > lim.max_line_bytes:
            return "line_too_long", (
                f"Max entry size '{lim.max_line_bytes}' bytes exceeded for stream '{key}' "
                f"while adding an entry with length '{line_bytes}' bytes"
            )
        if value.metadata:
            meta_bytes, meta_count = _metadata_bytes(value.metadata), len(value.metadata)
            if not lim.structured_metadata:
                return "disallowed_structured_metadata", (
                    f"stream '{key}' includes structured metadata, but this feature is "
                    "disallowed. Please see `limits_config.allow_structured_metadata` or "
                    "contact your Loki administrator to enable it."
                )
            if lim.max_metadata_bytes and meta_bytes > lim.max_metadata_bytes:
                return "structured_metadata_too_large", (
                    f"stream '{key}' has structured metadata too large: '{meta_bytes}' bytes, "
                    f"limit: '{lim.max_metadata_bytes}' bytes."
                )
            if lim.max_metadata_entries and meta_count > lim.max_metadata_entries:
                return "structured_metadata_too_many", (
                    f"stream '{key}' has too many structured metadata labels: '{meta_count}', "
                    f"limit: '{lim.max_metadata_entries}'."
                )
        return None

    def _allow(self, tenant_id: str, size: int) -> bool:
        """Token bucket with Go's ``rate.Limiter.AllowN`` semantics."""
        rate = self.limits.rate_limit_bytes_s
        if rate is None:
            return True
        burst = float(self.limits.burst_bytes)
        now = self._monotonic_s()
        elapsed = now - self._refilled_at.get(tenant_id, now)
        tokens = min(burst, self._tokens.get(tenant_id, burst) + elapsed * rate)
        self._refilled_at[tenant_id] = now
        allowed = size <= tokens
        self._tokens[tenant_id] = tokens - size if allowed else tokens
        return allowed

    def _store_stream(
        self,
        tenant_id: str,
        tenant: str | None,
        key: str,
        labels: dict[str, str],
        values: list[_Value],
    ) -> tuple[int, str] | None:
        """Store like the ingester; return its error (status, text) if any."""
        non_empty = [v for v in values if v.line]
        self._drop("empty_line", len(values) - len(non_empty))
        if not non_empty:
            return None
        state = self._streams.get((tenant_id, key))
        if state is None:
            if self.limits.max_streams and (
                self._streams_per_tenant[tenant_id] >= self.limits.max_streams
            ):
                self._reject("stream_limit", len(non_empty))
                return 429, (
                    "Maximum active stream limit exceeded when trying to create stream "
                    f"{key}, reduce the number of active streams (reduce labels or reduce "
                    "label values), or contact your Loki administrator to see if the limit "
                    f"can be increased, user: '{tenant_id}'"
                )
            state = self._streams[(tenant_id, key)] = _StreamState(labels)
            self._streams_per_tenant[tenant_id] += 1
        window_ns = int(self.limits.out_of_order_window_s * _NS_PER_S)
        behind: list[str] = []
        for value in non_empty:
            if state.highest_ts is not None and value.ts_ns < state.highest_ts - window_ns:
                cutoff = state.highest_ts - window_ns
                behind.append(
                    f"entry with timestamp {_format_ts(value.ts_ns)} ignored, reason: 'entry "
                    f"too far behind, entry timestamp is: {_format_ts(value.ts_ns)}, oldest "
                    f"acceptable timestamp is: {_format_ts(cutoff)}',"
                )
                continue
            if (value.ts_ns, value.line) in state.seen:
                self._drop("duplicate", 1)
                continue
            state.seen.add((value.ts_ns, value.line))
            if state.highest_ts is None or value.ts_ns > state.highest_ts:
                state.highest_ts = value.ts_ns
            self.entries.append(
                LokiEntry(dict(labels), value.ts_ns, value.line, value.metadata, tenant)
            )
        if not behind:
            return None
        self._reject("too_far_behind", len(behind))
        summary = (
            f"user '{tenant_id}', total ignored: {len(behind)} out of {len(non_empty)} "
            f"for stream: {key}"
        )
        return 400, "\n".join([*behind, summary])

    def _reject(self, reason: str, count: int) -> None:
        if count:
            self.rejected[reason] += count

    def _drop(self, reason: str, count: int) -> None:
        if count:
            self.dropped[reason] += count
