"""aind-log-utils: structured JSON logging for AIND rigs and Code Ocean capsules.

One line of setup::

    from aind_log_utils import setup_logging
    setup_logging("my-capsule", subject_id="123456")

and every record from every logger becomes one JSON object per line with the
AIND standard fields, secrets redacted, on the console and in a JSONL file.

``import aind_log_utils`` stays light: the parts (and pydantic, http.client) load
only when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.3.0.dev0"

__all__ = [
    "CloudWatchHandler",
    "JsonFormatter",
    "LoggingSession",
    "LokiHandler",
    "RunDirectory",
    "RunReader",
    "SipeHandler",
    "__version__",
    "bind_context",
    "canonical",
    "clear_context",
    "current_canonical",
    "get_context",
    "list_runs",
    "log",
    "log_context",
    "redact",
    "register_secret",
    "setup_logging",
    "unbind_context",
]

_LAZY: dict[str, tuple[str, str]] = {
    "setup_logging": ("._setup", "setup_logging"),
    "LoggingSession": ("._session", "LoggingSession"),
    "JsonFormatter": ("._formatter", "JsonFormatter"),
    "redact": ("._redact", "redact"),
    "register_secret": ("._redact", "register_secret"),
    "bind_context": ("._context", "bind_context"),
    "unbind_context": ("._context", "unbind_context"),
    "clear_context": ("._context", "clear_context"),
    "get_context": ("._context", "get_context"),
    "log_context": ("._context", "log_context"),
    "log": (".log", ""),
    "RunDirectory": ("._rundir", "RunDirectory"),
    "canonical": ("._canonical", "canonical"),
    "current_canonical": ("._canonical", "current_canonical"),
    "RunReader": ("._rundir", "RunReader"),
    "list_runs": ("._rundir", "list_runs"),
    "LokiHandler": ("._loki", "LokiHandler"),
    "SipeHandler": ("._sipe", "SipeHandler"),
    "CloudWatchHandler": ("._cloudwatch", "CloudWatchHandler"),
}

if TYPE_CHECKING:
    from . import log
    from ._canonical import canonical, current_canonical
    from ._cloudwatch import CloudWatchHandler
    from ._context import bind_context, clear_context, get_context, log_context, unbind_context
    from ._formatter import JsonFormatter
    from ._loki import LokiHandler
    from ._redact import redact, register_secret
    from ._rundir import RunDirectory, RunReader, list_runs
    from ._session import LoggingSession
    from ._setup import setup_logging
    from ._sipe import SipeHandler


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'aind_log_utils' has no attribute {name!r}") from None
    module = importlib.import_module(module_name, __name__)
    value = module if not attr else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
