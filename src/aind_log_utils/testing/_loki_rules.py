"""Grafana Loki's push rules, as a real Loki 3.4 applies them, without any HTTP.

Three separate steps, in the order Loki runs them: :func:`decode_body` undoes the
Content-Encoding and checks the Content-Type, :func:`parse_push` reads the JSON into
streams (a malformed request is refused whole), and :meth:`LokiStore.ingest`
validates each entry like the distributor (a bad entry is refused, the others of
the same request are kept), applies the tenant rate limit and the 4 MiB message
limit, and stores like the ingester (out-of-order window, stream limit, exact
duplicates dropped). The store is not thread-safe: the HTTP layer holds a lock.

This module is the store: it runs the steps in Loki's order and keeps what passed.
The steps themselves are in :mod:`._loki_decode` (decoding and parsing),
:mod:`._loki_validate` (the distributor's label and entry checks) and
:mod:`._loki_ratelimit` (the token bucket); the data types in :mod:`._loki_model`.
Everything this module exported before that split is still importable from here.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from itertools import chain

from ._loki_decode import decode_body, parse_push
from ._loki_model import (
    NS_PER_S,
    LokiEntry,
    LokiLimits,
    ParsedStream,
    PushError,
    PushValue,
    format_labels,
    format_ts,
    metadata_bytes,
    nbytes,
)
from ._loki_ratelimit import TokenBucket
from ._loki_validate import validate_stream

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


#: One stream of one push as stored: labels, tenant, timestamps, lines, metadata.
_Run = tuple[
    dict[str, str],
    str | None,
    tuple[int, ...],
    tuple[str, ...],
    tuple[tuple[str, ...] | None, ...],
]


class _StreamState:
    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.highest_ts: int | None = None
        # The entries stored, for dropping exact duplicates: the first line of each
        # timestamp in a dict of ints and strings (which the garbage collector does
        # not track, so never walks), other lines of a timestamp in a set.
        self.first_line: dict[int, str] = {}
        self.more_lines: set[tuple[int, str]] = set()


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
        # The stored entries, one run per stream of a push: its labels, its tenant,
        # and its timestamps, lines and metadata as tuples. Every full collection of
        # the garbage collector walks every tracked container whole: a stored
        # LokiEntry (a NamedTuple, never untracked) cost a third of the receiver's
        # CPU in a 200,000-line run, and lists of the entries' columns still cost
        # a full collection a pass over every entry, 0.12 s at a million. A tuple of
        # strings, ints or such tuples is itself untracked after a collection or two
        # (one holding a dict never is). An entry's metadata is one flat tuple of
        # keys and values: as a tuple of pairs, untracked only a collection after
        # its pairs, it reached the oldest generation often enough to cost 29 full
        # collections (0.26 s, 1.3 us an entry) in 200,000 entries; flat, 8.
        self._runs: list[_Run] = []
        #: How many entries are stored.
        self.count = 0
        self.rejected: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self._streams: dict[tuple[str, str], _StreamState] = {}
        self._streams_per_tenant: Counter[str] = Counter()
        self._bucket = TokenBucket(
            self.limits.rate_limit_bytes_s, self.limits.burst_bytes, monotonic_s=self._monotonic_s
        )

    @property
    def lines(self) -> list[str]:
        """The lines of the stored entries, in arrival order (a new list)."""
        return [line for run in self._runs for line in run[3]]

    def entries(self) -> list[LokiEntry]:
        """The stored entries as :class:`LokiEntry`, in arrival order."""
        make = tuple.__new__  # a NamedTuple's own __new__ is a Python call per entry
        out: list[LokiEntry] = []
        for labels, tenant, stamps, lines, metadata in self._runs:
            out += [
                make(LokiEntry, (labels, ts_ns, line, _as_dict(meta), tenant))
                for ts_ns, line, meta in zip(stamps, lines, metadata, strict=True)
            ]
        return out

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
        valid: list[tuple[str, dict[str, str], list[PushValue]]] = []
        now_ns = self._clock_ns()
        for stream in streams:
            if stream.values:
                checked = validate_stream(stream, self.limits, now_ns)
                for refusal in checked.refusals:
                    self._reject(refusal.reason, refusal.entries)
                    errors.append(refusal.message)
                if checked.kept:
                    valid.append((checked.key, checked.labels, checked.kept))
        if not valid:
            return (400, "\n".join(errors)) if errors else (204, "")
        count = sum(len(values) for _, _, values in valid)
        size = 0
        if self.limits.rate_limit_bytes_s is not None:  # what the bucket counts
            size = sum(
                nbytes(v.line) + metadata_bytes(v.metadata) for _, _, vs in valid for v in vs
            )
        if not self._bucket.allow(tenant_id, size):
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

    def _store_stream(
        self,
        tenant_id: str,
        tenant: str | None,
        key: str,
        labels: dict[str, str],
        values: list[PushValue],
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
        window_ns = int(self.limits.out_of_order_window_s * NS_PER_S)
        behind: list[str] = []
        first_lines, more_lines = state.first_line, state.more_lines
        first_line = first_lines.get
        stamps: list[int] = []
        lines: list[str] = []
        metadata: list[tuple[str, ...] | None] = []
        add_ts, add_line, add_meta = stamps.append, lines.append, metadata.append
        highest = state.highest_ts
        duplicates = 0
        for value in non_empty:
            ts_ns, line = value.ts_ns, value.line
            if highest is not None and ts_ns < highest - window_ns:
                cutoff = highest - window_ns
                behind.append(
                    f"entry with timestamp {format_ts(ts_ns)} ignored, reason: 'entry "
                    f"too far behind, entry timestamp is: {format_ts(ts_ns)}, oldest "
                    f"acceptable timestamp is: {format_ts(cutoff)}',"
                )
                continue
            first = first_line(ts_ns)
            if first is None:
                first_lines[ts_ns] = line
            elif first == line or (ts_ns, line) in more_lines:
                duplicates += 1
                continue
            else:  # another line of a timestamp already stored
                more_lines.add((ts_ns, line))
            if highest is None or ts_ns > highest:
                highest = ts_ns
            # One labels dict per stream and push (validate_stream copied it), shared
            # by its entries: copying it per entry would cost more than the checks.
            add_ts(ts_ns)
            add_line(line)
            meta = value.metadata  # flat (see reset): a tuple of dicts is never untracked
            add_meta(tuple(chain.from_iterable(meta.items())) if meta else None)
        state.highest_ts = highest
        if lines:
            self._runs.append((labels, tenant, tuple(stamps), tuple(lines), tuple(metadata)))
            self.count += len(lines)
        self._drop("duplicate", duplicates)
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


def _as_dict(flat: tuple[str, ...] | None) -> dict[str, str] | None:
    """An entry's metadata as stored (keys and values in turn) as the dict it was."""
    return dict(zip(flat[::2], flat[1::2], strict=True)) if flat else None
