"""Loki's per-tenant ingestion rate limit: one token bucket per tenant.

The bucket holds up to ``burst_bytes`` tokens, refills at ``rate_bytes_s`` and lets a
push through only when it holds at least the push's size (line plus structured
metadata bytes), all or nothing, like Go's ``rate.Limiter.AllowN`` that Loki uses: a
push bigger than the burst is refused every time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """Per-tenant token buckets with Go's ``rate.Limiter.AllowN`` semantics.

    Not thread-safe. A new bucket is full.

    Args:
        rate_bytes_s: the refill rate; None lets everything through.
        burst_bytes: the bucket size.
        monotonic_s: the clock that refills the buckets.
    """

    def __init__(
        self,
        rate_bytes_s: float | None,
        burst_bytes: int,
        *,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_bytes_s = rate_bytes_s
        self.burst_bytes = burst_bytes
        self._monotonic_s = monotonic_s
        self._tokens: dict[str, float] = {}
        self._refilled_at: dict[str, float] = {}

    def allow(self, tenant_id: str, size: int) -> bool:
        """Take ``size`` tokens from the tenant's bucket if it holds that many.

        Args:
            tenant_id: the tenant.
            size: the push's size in bytes.

        Returns:
            True when the push may go in (the tokens are then taken).
        """
        rate = self.rate_bytes_s
        if rate is None:
            return True
        burst = float(self.burst_bytes)
        now = self._monotonic_s()
        elapsed = now - self._refilled_at.get(tenant_id, now)
        tokens = min(burst, self._tokens.get(tenant_id, burst) + elapsed * rate)
        self._refilled_at[tenant_id] = now
        allowed = size <= tokens
        self._tokens[tenant_id] = tokens - size if allowed else tokens
        return allowed
