"""Loki's push API over HTTP: one batch of items -> one gzip'd JSON push.

Answers are read as a real Loki 3 gives them (see the project's
``facts-loki.md``): 204 is success; a 400 is a partial acceptance and is never
resent; 429 and 5xx and connection errors are retried; a push too big for the
server is split.
"""

from __future__ import annotations

import base64
import http.client
import re
from itertools import groupby
from operator import itemgetter, methodcaller

from .. import _gzip
from .._delivery import SendResult, describe_error
from .._diagnostics import diagnose
from ._encode import strip_metadata
from ._http import PushConnection

__all__ = ["LokiTransport"]

_TOTAL_IGNORED_RE = re.compile(r"total ignored: (\d+) out of")
_TOO_LARGE_RE = re.compile(
    r"received message larger than max|request entity too large", re.IGNORECASE
)
_REASONS = (
    ("too far behind", "too_far_behind"),
    ("timestamp too old", "timestamp_too_old"),
    ("timestamp too new", "timestamp_too_new"),
    ("Max entry size", "line_too_long"),
    ("structured metadata", "structured_metadata"),
    ("label", "invalid_labels"),
)
#: How Loki's 429 for a tenant over its active-stream limit begins.
_STREAM_LIMIT = "Maximum active stream limit exceeded"
_split = methodcaller("partition", b"\n")  # item -> (labels, "\n", value)
_LABELS = itemgetter(0)


def _strip_all(values: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for value in values:
        try:
            out.append(strip_metadata(value))
        except Exception:
            continue  # not ours (a corrupt spool item): skip it, never crash
    return out


#: After this many 429s in a row on one batch, split it (a push bigger than the
#: tenant's burst is refused forever).
SPLIT_AFTER_429 = 3


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: use our own backoff
    return seconds if seconds >= 0 else None


class LokiTransport:
    """Send batches of Loki items to ``push_url``.

    Args:
        push_url: the full ``/loki/api/v1/push`` URL (no credentials in it).
        headers: extra headers (tenant, bearer token); kept out of every message.
        auth: basic-auth ``(user, password)`` or None.
        verify: TLS verification: True, False or a CA bundle path.
        max_batch_bytes: the engine never builds a larger batch.
        structured_metadata: send structured metadata (turned off for good after
            a server refuses it).
        gzip_level: the compression level (1: cheapest; see facts-loki).
    """

    def __init__(
        self,
        push_url: str,
        *,
        headers: dict[str, str],
        auth: tuple[str, str] | None,
        verify: bool | str,
        max_batch_bytes: int,
        structured_metadata: bool = True,
        gzip_level: int = 1,
    ) -> None:
        self.push_url = push_url
        self.max_batch_bytes = max_batch_bytes
        self.structured_metadata = structured_metadata
        self._gzip_level = gzip_level
        all_headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", **headers}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            all_headers["Authorization"] = f"Basic {token}"
        self._http = PushConnection(push_url, headers=all_headers, verify=verify)
        self._consecutive_429 = 0

    def __repr__(self) -> str:
        return f"<LokiTransport {self.push_url}>"

    def body(self, batch: list[bytes]) -> bytes:
        """The JSON push body for a batch: streams in first-seen order, values joined as bytes.

        Consecutive items of one stream (the usual case) are handled as a run, so
        the per-item work is one ``partition`` and one check that the value is a
        JSON array; an item that is not one of ours (a corrupt spool item) is
        skipped rather than making Loki refuse the whole push.
        """
        streams: dict[bytes, list[bytes]] = {}
        with_meta = self.structured_metadata
        for labels, run in groupby(map(_split, batch), _LABELS):
            values = [value for _, sep, value in run if sep and value[:1] == b"["]
            if not values or labels[:1] != b"{":
                continue
            if not with_meta:
                values = _strip_all(values)
            joined = streams.get(labels)
            if joined is None:
                streams[labels] = values
            else:
                joined.extend(values)
        return b'{"streams":[' + b"]},".join(
            [b'{"stream":' + labels + b',"values":[' + b",".join(values)
             for labels, values in streams.items()]
        ) + (b"]}]}" if streams else b"]}")  # fmt: skip

    def send(self, batch: list[bytes], timeout_s: float) -> SendResult:
        """Push one batch; see the module docstring for how answers are read."""
        # One call makes the whole gzip member (header, deflate, CRC): each C call
        # that lets go of the GIL costs a busy logging thread a hand-over.
        payload = _gzip.compress(self.body(batch), self._gzip_level)
        try:
            answer = self._http.post(payload, timeout_s)
        except (OSError, http.client.HTTPException) as exc:
            return SendResult.retry(f"connection: {describe_error(exc)}")
        status = answer.status
        text = answer.text[:4000] if status >= 300 else ""
        if status < 300:
            self._consecutive_429 = 0
            return SendResult.ok()
        if status == 429 and _STREAM_LIMIT in text:
            # Too many active streams for the tenant (labels of too many values): no
            # split gets a push past it; it clears as streams go idle on the server.
            self._consecutive_429 = 0
            return SendResult.retry(
                "429 active stream limit: too many label values for this tenant",
                _retry_after(answer.retry_after),
            )
        if status == 429:
            self._consecutive_429 += 1
            if self._consecutive_429 >= SPLIT_AFTER_429 and len(batch) > 1:
                self._consecutive_429 = 0
                return SendResult.too_large("rate limited: push larger than the burst?")
            return SendResult.retry("429 rate limited", _retry_after(answer.retry_after))
        self._consecutive_429 = 0
        if status == 413 or _TOO_LARGE_RE.search(text):
            return SendResult.too_large(f"{status} push too large")
        if (
            status == 400
            and self.structured_metadata
            and "structured metadata" in text
            and "disallowed" in text
        ):
            # An older Loki: send without structured metadata from now on.
            self.structured_metadata = False
            diagnose(
                "loki:metadata", "Loki refused structured metadata; sending without it from now on"
            )
            return self.send(batch, timeout_s)
        if status == 400:
            return SendResult.reject(_count_rejected(text, len(batch)), _reason(text))
        if status in (408,) or status >= 500:
            return SendResult.retry(f"{status} {text[:80]}", _retry_after(answer.retry_after))
        # 401/403/404...: the server will not take these; they stay in the file.
        diagnose(f"loki:{status}", f"Loki answered {status}: {text[:200]}")
        return SendResult.reject(len(batch), f"http_{status}")

    def close(self) -> None:
        """Close the HTTP connection."""
        self._http.close()


def _count_rejected(text: str, size: int) -> int:
    totals = [int(n) for n in _TOTAL_IGNORED_RE.findall(text)]
    if totals:
        count = sum(totals)
    else:
        count = sum(1 for line in text.splitlines() if line.strip())
    return max(1, min(size, count))


def _reason(text: str) -> str:
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    return "bad_request"
