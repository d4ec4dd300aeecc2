"""Shared fixtures: every test starts with a clean root logger, context and environment."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator

import pytest

from aind_log_utils import _diagnostics, _redact
from aind_log_utils._context import clear_context
from aind_log_utils._session import active_session
from aind_log_utils.testing import LokiReceiver

_ENV_PREFIXES = ("AIND_", "CO_", "aibs_", "AIBS_")


@pytest.fixture(autouse=True)
def _clean_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    handlers = list(root.handlers)
    level = root.level
    excepthook = sys.excepthook
    _diagnostics.set_quiet(True)
    yield
    session = active_session()
    if session is not None:
        session.close(timeout_s=2)
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    sys.excepthook = excepthook
    logging.captureWarnings(False)
    _redact.clear_secrets()
    clear_context()
    _diagnostics.set_quiet(False)
    for existing in logging.Logger.manager.loggerDict.values():
        if isinstance(existing, logging.Logger):
            existing.disabled = False


@pytest.fixture
def receiver() -> Iterator[LokiReceiver]:
    """A Loki receiver without rate limits that adds no ``service_name`` label.

    The tests of other servers (SIPE, a Loki with other settings) define a
    ``receiver`` of their own, which takes the place of this one in their module.
    """
    with LokiReceiver(rate_limit_bytes_s=None, discover_service_name=False) as server:
        yield server
