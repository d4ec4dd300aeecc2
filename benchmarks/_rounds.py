"""How every benchmark turns per-round timings into a ratio."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def ratio_within_rounds(top: Sequence[float], bottom: Sequence[float]) -> float:
    """The median over rounds of ``top / bottom`` taken within each round.

    A round runs every variant once, back to back. This VM's speed drifts by a
    quarter between runs seconds apart, and a ratio of medians taken over
    different minutes would carry that drift; a ratio within a round does not.
    """
    return statistics.median(t / b for t, b in zip(top, bottom, strict=True))
