"""Loki's distributor checks on one parsed stream: its labels, then each of its entries.

:func:`validate_stream` adds ``service_name`` when discovery is on, refuses the whole
stream for a missing label set or a label over the limits, and refuses single
entries that are too old, too far in the future, too long, or carry structured
metadata that is not allowed or over the limits. The other entries of the stream are
kept (Loki's partial acceptance). Nothing is counted or stored here: the caller gets
what was kept and what was refused (:class:`CheckedStream`).
"""

from __future__ import annotations

from typing import NamedTuple

from ._loki_model import (
    NS_PER_S,
    LokiLimits,
    ParsedStream,
    PushValue,
    format_labels,
    format_ts,
    metadata_bytes,
    nbytes,
)

__all__ = ["CheckedStream", "Refusal", "validate_stream"]

_SERVICE_NAME = "service_name"
# Loki 3.4's `discover_service_name` default, in its order of preference.
_SERVICE_NAME_SOURCES = (
    "service", "app", "application", "app_name", "name", "app_kubernetes_io_name",
    "container", "container_name", "k8s_container_name", "component", "workload", "job",
    "k8s_job_name",
)  # fmt: skip


class Refusal(NamedTuple):
    """Entries the distributor refused, for one reason.

    Attributes:
        reason: Loki's discard reason (``line_too_long``, ...).
        entries: how many entries.
        message: the line Loki adds to its 400 answer.
    """

    reason: str
    entries: int
    message: str


class CheckedStream(NamedTuple):
    """What the distributor made of one stream.

    Attributes:
        key: the stream's label set as Loki prints it (empty when it had no labels).
        labels: its labels, ``service_name`` added when discovered.
        kept: the entries that passed, in request order.
        refusals: what was refused, in the order Loki reports it.
    """

    key: str
    labels: dict[str, str]
    kept: list[PushValue]
    refusals: list[Refusal]


def validate_stream(stream: ParsedStream, limits: LokiLimits, now_ns: int) -> CheckedStream:
    """Apply the distributor's label and entry checks to a stream with entries.

    Args:
        stream: one stream of :func:`~._loki_decode.parse_push`'s output.
        limits: the tenant's limits.
        now_ns: the wall clock in Unix nanoseconds when the push arrived (Loki's
            distributor reads it once per push and judges every entry against it).

    Returns:
        What passes and what was refused.
    """
    labels = dict(stream.labels)
    if not labels:
        message = "error at least one label pair is required per stream"
        return CheckedStream(
            "", labels, [], [Refusal("missing_labels", len(stream.values), message)]
        )
    if limits.discover_service_name and _SERVICE_NAME not in labels:
        source = next((labels[n] for n in _SERVICE_NAME_SOURCES if n in labels), None)
        labels[_SERVICE_NAME] = source or "unknown_service"
    key = format_labels(labels)
    # Loki does not count service_name: it is so often added by Loki itself.
    counted = len(labels) - (_SERVICE_NAME in labels)
    label_error = None
    if limits.max_label_names and counted > limits.max_label_names:
        label_error = ("max_label_names_per_series", f"entry for stream '{key}' has "
                       f"{counted} label names; limit {limits.max_label_names}")  # fmt: skip
    for name, text in labels.items():
        if label_error is not None:
            break
        if limits.max_label_name_bytes and nbytes(name) > limits.max_label_name_bytes:
            label_error = ("label_name_too_long",
                           f"stream '{key}' has label name too long: '{name}'")  # fmt: skip
        elif limits.max_label_value_bytes and nbytes(text) > limits.max_label_value_bytes:
            label_error = ("label_value_too_long",
                           f"stream '{key}' has label value too long: '{text}'")  # fmt: skip
    if label_error is not None:
        reason, message = label_error
        return CheckedStream(key, labels, [], [Refusal(reason, len(stream.values), message)])
    kept: list[PushValue] = []
    refusals: list[Refusal] = []
    oldest = now_ns - int(limits.reject_older_than_s * NS_PER_S)
    newest = now_ns + int(limits.future_grace_s * NS_PER_S)
    # A quick test passes almost every entry; only those it cannot vouch for get the
    # exact check. It is conservative: a UTF-8 character is at most 4 bytes.
    low = oldest if limits.reject_older_than_s else None
    short_line = limits.max_line_bytes // 4 if limits.max_line_bytes else None
    meta_ok = limits.structured_metadata
    max_entries, max_meta = limits.max_metadata_entries, limits.max_metadata_bytes
    keep = kept.append
    for value in stream.values:
        ts_ns, meta = value.ts_ns, value.metadata
        if (
            (low is None or ts_ns >= low)
            and ts_ns <= newest
            and (short_line is None or len(value.line) <= short_line)
            and (
                meta is None
                or (
                    meta_ok
                    and (not max_entries or len(meta) <= max_entries)
                    and (
                        not max_meta
                        or 4 * (sum(map(len, meta)) + sum(map(len, meta.values()))) <= max_meta
                    )
                )
            )
        ):
            keep(value)
            continue
        problem = _check_entry(key, value, limits, oldest, newest)
        if problem is None:
            keep(value)
        else:
            refusals.append(Refusal(problem[0], 1, problem[1]))
    return CheckedStream(key, labels, kept, refusals)


def _check_entry(
    key: str, value: PushValue, lim: LokiLimits, oldest: int, newest: int
) -> tuple[str, str] | None:
    """Return (reason, message) when the distributor refuses this entry.

    ``oldest`` and ``newest`` are the timestamps (ns) the entry must lie between.
    """
    if lim.reject_older_than_s and value.ts_ns < oldest:
        return "greater_than_max_sample_age", (
            f"entry for stream '{key}' has timestamp too old: {format_ts(value.ts_ns)}, "
            f"oldest acceptable timestamp is: {format_ts(oldest)}"
        )
    if value.ts_ns > newest:
        return "too_far_in_future", (
            f"entry for stream '{key}' has timestamp too new: {format_ts(value.ts_ns)}"
        )
    line_bytes = nbytes(value.line)
    if lim.max_line_bytes and line_bytes > lim.max_line_bytes:
        return "line_too_long", (
            f"Max entry size '{lim.max_line_bytes}' bytes exceeded for stream '{key}' "
            f"while adding an entry with length '{line_bytes}' bytes"
        )
    if value.metadata:
        meta_bytes, meta_count = metadata_bytes(value.metadata), len(value.metadata)
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
