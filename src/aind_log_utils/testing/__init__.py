"""Helpers for testing code that logs through aind-log-utils.

``capture_logs()`` collects the records a block emits, rendered exactly as the
sinks would see them (standard fields, context, redaction), parsed back from
JSON::

    from aind_log_utils.testing import capture_logs

    with capture_logs() as records:
        my_capsule.run()
    assert records[-1]["message"] == "done"

``LokiReceiver`` is a protocol-faithful Grafana Loki push receiver on loopback, for
testing what a program sends to Loki (and how it copes with 429s and outages).
"""

from __future__ import annotations

from ._capture import CapturedRecords, capture_logs, read_jsonl
from ._loki_receiver import LokiEntry, LokiReceiver, PushRecord, ReceiverMode
from ._sipe_receiver import SipeReceiver

__all__ = [
    "CapturedRecords",
    "LokiEntry",
    "LokiReceiver",
    "PushRecord",
    "ReceiverMode",
    "SipeReceiver",
    "capture_logs",
    "read_jsonl",
]
