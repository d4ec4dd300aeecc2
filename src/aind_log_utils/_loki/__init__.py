"""The Grafana Loki sink: labels, structured metadata, HTTP push, on the delivery engine."""

from ._encode import LABEL_FIELDS, METADATA_FIELDS, loki_labels, loki_metadata, timestamp_ns
from ._sink import LokiHandler, LokiSink, loki_spool_dir, normalize_push_url

__all__ = [
    "LABEL_FIELDS",
    "METADATA_FIELDS",
    "LokiHandler",
    "LokiSink",
    "loki_labels",
    "loki_metadata",
    "loki_spool_dir",
    "normalize_push_url",
    "timestamp_ns",
]
