"""The CloudWatch Logs sink (the ``cloudwatch`` extra): 0.2.x's destination, on the delivery engine.

Nothing here imports boto3 or botocore: the transport imports botocore on the engine's worker
thread, when the first batch is sent.
"""

from ._encode import (
    EVENT_OVERHEAD_BYTES,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_BATCH_SPAN_MS,
    MAX_MESSAGE_BYTES,
)
from ._sink import (
    DEFAULT_LOG_GROUP,
    CloudWatchHandler,
    CloudWatchSink,
    cloudwatch_spool_dir,
    default_log_stream,
)
from ._transport import DEFAULT_REGION, NO_CREDENTIALS, CloudWatchTransport

__all__ = [
    "DEFAULT_LOG_GROUP",
    "DEFAULT_REGION",
    "EVENT_OVERHEAD_BYTES",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "MAX_BATCH_SPAN_MS",
    "MAX_MESSAGE_BYTES",
    "NO_CREDENTIALS",
    "CloudWatchHandler",
    "CloudWatchSink",
    "CloudWatchTransport",
    "cloudwatch_spool_dir",
    "default_log_stream",
]
