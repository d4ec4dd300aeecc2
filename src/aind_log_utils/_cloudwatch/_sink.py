"""The CloudWatch sink: records -> items -> the delivery engine -> CloudWatch Logs."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .._delivery import DeliveryEngine
from .._delivery._params import path_param
from .._sink import EngineSink, SinkHandler
from ._encode import (
    MAX_BATCH_EVENTS,
    MAX_MESSAGE_BYTES,
    encode_item,
    engine_batch_bytes,
    event_ms,
    fit_message,
)
from ._transport import NO_BOTO3, NO_CREDENTIALS, CloudWatchTransport

__all__ = [
    "DEFAULT_BATCH_WAIT_S",
    "DEFAULT_LOG_GROUP",
    "CloudWatchHandler",
    "CloudWatchSink",
    "cloudwatch_spool_dir",
    "default_log_stream",
]

#: 0.2.x's log group.
DEFAULT_LOG_GROUP = "aind/internal_logs"
#: How long a record may wait for its batch. Longer than Loki's 0.5 s: every
#: capsule of the account shares one PutLogEvents quota per region (5,000 calls/s),
#: and a thousand capsules running at once must stay well under it.
DEFAULT_BATCH_WAIT_S = 2.0
_GROUP_RE = re.compile(r"^[.\-_/#A-Za-z0-9]{1,512}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+$")
_MIN_SECRET_CHARS = 16
_OFF_REASONS = (NO_CREDENTIALS, NO_BOTO3)


def default_log_stream(program: str) -> str:
    """0.2.x's stream: ``CO_CAPSULE_ID``; outside Code Ocean, the program's name.

    Characters CloudWatch refuses in a stream name (``:`` and ``*``) become ``_``.
    """
    name = os.environ.get("CO_CAPSULE_ID") or program or "python"
    return re.sub(r"[:*]", "_", name)[:512]


def cloudwatch_spool_dir(
    log_group: str, log_stream: str, region: str | None, endpoint_url: str | None
) -> Path:
    """The default spool directory of a CloudWatch destination (one per stream)."""
    import platformdirs

    key = f"{endpoint_url or ''}|{region or ''}|{log_group}|{log_stream}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return (
        Path(platformdirs.user_cache_dir("aind-log-utils", appauthor=False))
        / "spool"
        / f"cloudwatch-{digest}"
    )


def _check_name(option: str, value: Any, pattern: re.Pattern[str] | None) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{option}: expected a string, got {type(value).__name__}")
    if not 1 <= len(value) <= 512:
        raise ValueError(f"{option}: must be 1 to 512 characters long")
    if pattern is not None and not pattern.match(value):
        raise ValueError(f"{option}: {value!r} has characters CloudWatch does not allow")
    if pattern is None and (":" in value or "*" in value):
        raise ValueError(f"{option}: {value!r} contains ':' or '*', which CloudWatch refuses")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_endpoint(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"endpoint_url: expected a string, got {type(value).__name__}")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("endpoint_url: expected http(s)://host[:port]")
    if parts.username or parts.password:
        raise ValueError("endpoint_url: must not contain credentials")
    return value.strip()


class CloudWatchSink(EngineSink):
    """Send records to CloudWatch Logs without blocking the caller and without losing one.

    Each record becomes one event whose message is the record's JSON line, exactly
    as in the file. Encoding happens on the caller's thread (a microsecond or two);
    everything else on the delivery engine's worker: importing botocore, resolving
    credentials, creating the group and stream when missing, PutLogEvents,
    retries with backoff, the on-disk spool while CloudWatch is away, the bounded
    flush at exit. Setting it up makes no network call and cannot fail because
    of AWS.

    When no AWS credentials are found (or boto3 is not installed) the sink turns
    itself off with ONE line on stderr: later records are dropped, counted under
    ``dropped["no_credentials"]`` (or ``"no_boto3"``), not spooled (a process
    without credentials will not get them; the file keeps every record).

    Args:
        program: the program's name (the stream's name outside Code Ocean).
        log_group: default ``aind/internal_logs`` (0.2.x's group).
        log_stream: default ``CO_CAPSULE_ID`` (0.2.x's stream), else ``program``.
        region: the AWS region; default: boto3's configuration (``AWS_REGION``,
            the profile), else us-west-2 (0.2.x's fixed region).
        endpoint_url: another endpoint (a VPC endpoint, an emulator).
        profile_name: an AWS profile of the shared config files.
        max_message_bytes: longer lines are truncated to valid JSON with a marker
            (default and maximum: 256 KB less CloudWatch's 26 bytes of overhead).
        spool_dir: where to spool (default: one folder per destination in the user
            cache directory).
        **engine_options: passed to :class:`DeliveryEngine` (``batch_wait_s``,
            default 2 s; ``max_batch_records``, at most and by default 10,000;
            ``max_batch_bytes``; ``retry_start_s``; ``retry_max_s``;
            ``timeout_s``; ``flush_timeout_s``; ``max_spool_bytes``; ...).

    Raises:
        ValueError: a bad name, region, URL or engine option (the message names it).
        TypeError: an option of the wrong type.
    """

    name = "cloudwatch"

    def __init__(
        self,
        *,
        program: str = "python",
        log_group: str | None = None,
        log_stream: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        profile_name: str | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        spool_dir: str | os.PathLike[str] | None = None,
        **engine_options: Any,
    ) -> None:
        self.program = program
        self.log_group = _check_name(
            "cloudwatch_log_group", log_group or DEFAULT_LOG_GROUP, _GROUP_RE
        )
        self.log_stream = _check_name(
            "cloudwatch_log_stream", log_stream or default_log_stream(program), None
        )
        if region is not None and (not isinstance(region, str) or not _REGION_RE.match(region)):
            raise ValueError(f"cloudwatch_region: {region!r} is not an AWS region name")
        self.endpoint_url = _check_endpoint(endpoint_url)
        if profile_name is not None and not isinstance(profile_name, str):
            raise TypeError(f"profile_name: expected a string, got {type(profile_name).__name__}")
        if (
            isinstance(max_message_bytes, bool)
            or not isinstance(max_message_bytes, int)
            or not 1024 <= max_message_bytes <= MAX_MESSAGE_BYTES
        ):
            raise ValueError(
                f"max_message_bytes: expected an int in 1024..{MAX_MESSAGE_BYTES}, "
                f"got {max_message_bytes!r}"
            )
        self.max_message_bytes = max_message_bytes
        # The engine checks the types; here, CloudWatch's own caps.
        records = engine_options.pop("max_batch_records", MAX_BATCH_EVENTS)
        if _is_int(records) and records > MAX_BATCH_EVENTS:
            raise ValueError(f"max_batch_records: at most {MAX_BATCH_EVENTS} for CloudWatch")
        limit = engine_batch_bytes(
            records if _is_int(records) and records > 0 else MAX_BATCH_EVENTS
        )
        batch_bytes = engine_options.pop("max_batch_bytes", limit)
        if _is_int(batch_bytes) and batch_bytes > limit:
            raise ValueError(
                f"max_batch_bytes: at most {limit} for CloudWatch with {records} records a "
                "batch (1 MiB a call, counting 26 bytes an event)"
            )
        engine_options.setdefault("batch_wait_s", DEFAULT_BATCH_WAIT_S)
        self._register_env_secrets()
        self._transport: CloudWatchTransport = CloudWatchTransport(
            log_group=self.log_group,
            log_stream=self.log_stream,
            region=region,
            endpoint_url=self.endpoint_url,
            profile_name=profile_name,
            max_message_bytes=max_message_bytes,
            max_batch_bytes=batch_bytes if _is_int(batch_bytes) else limit,
            max_batch_records=records if _is_int(records) else MAX_BATCH_EVENTS,
        )
        # A lookup, not an import. The transport needs only botocore (boto3's core).
        if importlib.util.find_spec("botocore") is None:
            self._transport.turn_off(
                NO_BOTO3, "boto3 is not installed (pip install 'aind-log-utils[cloudwatch]')"
            )
            engine_options["replay_on_start"] = False  # keep the spool for a process with boto3
        self.spool_dir = path_param("spool_dir", spool_dir) or cloudwatch_spool_dir(
            self.log_group, self.log_stream, region, self.endpoint_url
        )
        self.engine = DeliveryEngine(
            "cloudwatch",
            self._transport,
            spool_dir=self.spool_dir,
            max_batch_bytes=batch_bytes,
            max_batch_records=records,
            **engine_options,
        )
        self._off_lock = threading.RLock()  # re-entrant: a signal handler may log
        self._off_dropped: dict[str, int] = {}

    @staticmethod
    def _register_env_secrets() -> None:
        # Credentials from the environment are masked from the first record on
        # (reading the environment is not a network call); others are
        # registered by the worker once it has resolved them.
        values = [os.environ.get("AWS_SECRET_ACCESS_KEY"), os.environ.get("AWS_SESSION_TOKEN")]
        secrets = [v for v in values if v and len(v) >= _MIN_SECRET_CHARS]
        if secrets:
            from .._redact import register_secret

            register_secret(*secrets)

    def __repr__(self) -> str:
        return f"<CloudWatchSink {self.log_group}/{self.log_stream} region={self.region}>"

    @property
    def region(self) -> str | None:
        """The AWS region (None until the worker has resolved boto3's default)."""
        return self._transport.region

    @property
    def off_reason(self) -> str | None:
        """None while the sink delivers; ``"no_credentials"`` or ``"no_boto3"`` once off."""
        return self._transport.off_reason

    def push_event(self, event: Mapping[str, Any], line: bytes, ts_ms: int) -> None:
        """Queue one rendered record for CloudWatch; never blocks, never raises.

        Args:
            event: the redacted event (used only to truncate an over-long line).
            line: its JSON line (the event's message).
            ts_ms: the event's time in Unix milliseconds.
        """
        try:
            off = self._transport.off_reason
            if off is not None:
                with self._off_lock:
                    self._off_dropped[off] = self._off_dropped.get(off, 0) + 1
                return
            self.engine.submit(encode_item(ts_ms, fit_message(event, line, self.max_message_bytes)))
        except Exception:
            self.engine._count_error("encode", RuntimeError("encoding failed"))

    def handle_event(
        self, event: Mapping[str, Any], line: bytes, record: logging.LogRecord
    ) -> None:
        """Sink interface: queue the record."""
        self.push_event(event, line, event_ms(record.created))

    def counters(self) -> dict[str, Any]:
        """The delivery counters: sent, retried, spooled, replayed, rejected, dropped, ..."""
        counters = super().counters()
        rejected, dropped = counters["rejected"], counters["dropped"]
        with self._off_lock:
            off = dict(self._off_dropped)
        for reason in _OFF_REASONS:
            # What the worker held when it turned off was "rejected" by the
            # transport; it is a drop on our side, counted with the later ones.
            count = rejected.pop(reason, 0) + off.get(reason, 0)
            if count:
                dropped[reason] = dropped.get(reason, 0) + count
        return {**counters, "off": self.off_reason}


class CloudWatchHandler(SinkHandler):
    """A stdlib handler that sends records to CloudWatch Logs (without ``setup_logging``).

    Records are rendered exactly as ``setup_logging`` renders them (standard
    fields, context, redaction) and sent by a :class:`CloudWatchSink`; building
    it makes no network call.

    Args:
        level: the handler's level.
        static_fields: fields added to every record.
        **options: passed to :class:`CloudWatchSink` (``log_group``,
            ``log_stream``, ``region``, ``endpoint_url``, delivery options, ...).
    """

    def __init__(self, level: int = logging.NOTSET, *,
                 static_fields: Mapping[str, Any] | None = None, **options: Any) -> None:  # fmt: skip
        self.sink: CloudWatchSink = CloudWatchSink(**options)
        super().__init__(self.sink, static_fields, level)

    def __repr__(self) -> str:
        return f"<CloudWatchHandler {self.sink.log_group}/{self.sink.log_stream}>"
