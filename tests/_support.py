"""What several test modules share: quick delivery options and the SIPE sink helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aind_log_utils import setup_logging
from aind_log_utils._sipe import SipeSink
from aind_log_utils.testing import LokiReceiver, SipeReceiver

__all__ = ["FAST", "loki_session_to", "sipe_session_to", "sipe_sink_to"]

#: Delivery options that make a test's retries and batches quick.
FAST: dict[str, Any] = {
    "batch_wait_s": 0.02,
    "retry_start_s": 0.05,
    "retry_max_s": 0.5,
    "timeout_s": 2.0,
}


def sipe_sink_to(receiver: SipeReceiver, tmp_path: Path, **kwargs: Any) -> SipeSink:
    """A SIPE sink sending to ``receiver``, spooling under ``tmp_path``."""
    return SipeSink(receiver.url, spool_dir=tmp_path / "spool", **{**FAST, **kwargs})


def sipe_session_to(receiver: SipeReceiver, tmp_path: Path, **kwargs: Any) -> Any:
    """A quiet session ("water-log") whose only sink sends to ``receiver``.

    ``sink_options`` go to the sink, the rest to ``setup_logging``.
    """
    sink_options = kwargs.pop("sink_options", {})
    sink = sipe_sink_to(receiver, tmp_path, program="water-log", **sink_options)
    kwargs.setdefault("console", False)
    kwargs.setdefault("log_file", False)
    kwargs.setdefault("handle_sigterm", False)
    kwargs.setdefault("send_start_log", False)
    return setup_logging("water-log", sinks=[sink], **kwargs)


def loki_session_to(receiver: LokiReceiver, tmp_path: Path, **options: Any) -> Any:
    """A quiet session ("proc-test") sending to ``receiver``; ``options`` go to the sink.

    Its JSONL file is ``tmp_path / "run.jsonl"``, its spool ``tmp_path / "s"``.
    """
    return setup_logging(
        "proc-test", console=False, log_file=tmp_path / "run.jsonl", handle_sigterm=False,
        send_start_log=False, subject_id="123456", rig_id="rig_1",
        loki_url=receiver.url, loki_options={**FAST, "spool_dir": str(tmp_path / "s"), **options},
    )  # fmt: skip
