"""What several test modules share: quick delivery options, a recording transport and
its switch, polling with a deadline, and the SIPE and Loki session helpers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aind_log_utils import setup_logging
from aind_log_utils._delivery import SendOutcome, SendResult
from aind_log_utils._sipe import SipeSink
from aind_log_utils.testing import LokiReceiver, SipeReceiver

__all__ = [
    "FAST",
    "RecordingTransport",
    "Responder",
    "Switch",
    "loki_session_to",
    "poll",
    "sipe_session_to",
    "sipe_sink_to",
]

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


Responder = Callable[[list[bytes]], SendResult]


class RecordingTransport:
    """Records every attempt; answers what ``respond`` says; can be held by a gate."""

    def __init__(self, respond: Responder | None = None, *, gate: threading.Event | None = None):
        self.respond = respond
        self.gate = gate
        self.cond = threading.Condition()
        self.attempts: list[tuple[float, list[bytes]]] = []
        self.delivered: list[bytes] = []
        self.in_send = threading.Event()

    def send(self, batch: list[bytes], timeout_s: float) -> SendResult:
        with self.cond:
            self.attempts.append((time.monotonic(), list(batch)))
            self.cond.notify_all()
        self.in_send.set()
        if self.gate is not None:
            self.gate.wait()
        result = self.respond(batch) if self.respond else SendResult.ok()
        with self.cond:
            if result.outcome is SendOutcome.DELIVERED:
                self.delivered.extend(batch)
            elif result.outcome is SendOutcome.REJECTED:
                self.delivered.extend(batch[result.rejected :])
            self.cond.notify_all()
        return result

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, timeout), "transport condition not reached"

    def wait_delivered(self, n: int, timeout: float = 10.0) -> None:
        self.wait_for(lambda: len(self.delivered) >= n, timeout)


class Switch:
    """A responder that fails (retryable) until switched on."""

    def __init__(self, up: bool = False):
        self.up = up

    def __call__(self, batch: list[bytes]) -> SendResult:
        return SendResult.ok() if self.up else SendResult.retry("server away")


def poll(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll with a deadline (for state with no condition to wait on)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        threading.Event().wait(0.005)
