"""The 0.2.x entry point, kept so existing capsules upgrade without a change.

``from aind_log_utils import log; log.setup_logging("my-capsule", ...)`` calls
the same :func:`aind_log_utils.setup_logging`.
"""

from __future__ import annotations

from ._setup import setup_logging

__all__ = ["setup_logging"]
