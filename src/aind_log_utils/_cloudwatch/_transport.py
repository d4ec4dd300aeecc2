"""CloudWatch Logs over botocore: one batch of items -> one PutLogEvents call.

Everything here runs on the delivery engine's worker thread: botocore is imported,
credentials are resolved (the instance metadata service is a network call), and
the log group and stream are created there, never on the caller's thread.

botocore's own retries are off (one attempt per call): the engine retries, with
its backoff, its spool and its bounded exit. Answers are read as follows:

- success: delivered; ``rejectedLogEventsInfo`` (too old, too new, expired)
  counts those events as rejected, the others were stored;
- ``DataAlreadyAcceptedException``: delivered already;
- ``ThrottlingException``, ``ServiceUnavailableException``, other 5xx, expired
  tokens, connection errors and timeouts: retried;
- ``ResourceNotFoundException``: the group and stream are created, and the call
  is made once more;
- ``InvalidParameterException``, ``SerializationException``: the batch is split
  (a batch the service finds too big, or a damaged event; halving isolates a
  single bad event, which is then rejected);
- anything else (``AccessDeniedException``, ...): rejected (the records stay in
  the file), with one line on stderr;
- no credentials at all: the sink turns itself off, with one line on stderr.
"""

from __future__ import annotations

import os
from typing import Any

from .._delivery import SendResult, describe_error
from .._diagnostics import diagnose
from ._encode import MAX_BATCH_EVENTS, batch_problem, build_events, put_body

__all__ = ["DEFAULT_REGION", "NO_CREDENTIALS", "CloudWatchTransport"]

#: 0.2.x's region, used when neither the option nor boto3's configuration gives one.
DEFAULT_REGION = "us-west-2"
#: The counter key of records dropped because no AWS credentials were found.
NO_CREDENTIALS = "no_credentials"
#: The counter key of records dropped because boto3 (botocore) is not installed.
NO_BOTO3 = "no_boto3"

_RETRY_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalServerError",
        "InternalServerException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "OperationAbortedException",
        "InvalidSequenceTokenException",  # no longer returned; harmless to resend
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "IDPCommunicationError",
    }
)
#: A body the service cannot take: halving isolates the one bad event.
_SPLIT_CODES = frozenset(
    {"InvalidParameterException", "ValidationException", "SerializationException"}
)
_MIN_SECRET_CHARS = 16  # shorter values would mangle ordinary text if masked


class CloudWatchTransport:
    """Send batches of CloudWatch items to one log stream with PutLogEvents.

    Args:
        log_group: the log group (created when missing).
        log_stream: the log stream (created when missing).
        region: the AWS region; None: boto3's configuration, else us-west-2.
        endpoint_url: another endpoint (a VPC endpoint, an emulator).
        profile_name: an AWS profile of the shared config files.
        max_message_bytes: longer messages are truncated (items spooled by a
            process configured otherwise).
        max_batch_bytes: the engine never builds a larger batch (item bytes).
        max_batch_records: the engine never builds a larger batch (items).
    """

    def __init__(
        self,
        *,
        log_group: str,
        log_stream: str,
        region: str | None,
        endpoint_url: str | None,
        profile_name: str | None,
        max_message_bytes: int,
        max_batch_bytes: int,
        max_batch_records: int = MAX_BATCH_EVENTS,
    ) -> None:
        self.log_group = log_group
        self.log_stream = log_stream
        #: The region in use (resolved on the worker when not given).
        self.region = region
        self.endpoint_url = endpoint_url
        self.profile_name = profile_name
        self.max_message_bytes = max_message_bytes
        self.max_batch_bytes = max_batch_bytes
        self.max_batch_records = max_batch_records
        #: None while the sink may deliver; else why it is off (a counter key).
        self.off_reason: str | None = None
        #: The delivery engine's name (its diagnostics' prefix).
        self.engine_name = "cloudwatch"
        self._closed = False
        self._client: Any = None
        self._credentials: Any = None
        self._pid = 0
        self._body: bytes | None = None  # the PutLogEvents body being sent
        self._exc: Any = None  # botocore.exceptions, once imported

    def __repr__(self) -> str:
        return f"<CloudWatchTransport {self.log_group}/{self.log_stream} region={self.region}>"

    # ---- connecting (on the worker) -----------------------------------------
    def turn_off(self, reason: str, message: str) -> None:
        """Stop delivering for good, with one line on stderr.

        Args:
            reason: the counter key (``no_credentials``, ``no_boto3``).
            message: what to tell the user (free of secrets).
        """
        if self.off_reason is None:
            self.off_reason = reason
            # Under the key the engine reports rejections with: the batch held now
            # is "rejected" with this reason, and this line stands for it (one line).
            diagnose(
                f"{self.engine_name}:rejected",
                f"cloudwatch: {message}; CloudWatch sink off (records still go to the other sinks)",
            )

    def _connect(self, timeout_s: float) -> SendResult | None:
        """Import botocore, resolve credentials and region, build the client.

        botocore, not boto3: boto3 imports ``concurrent.futures.thread`` (for S3
        transfers), which cannot be imported once the interpreter is exiting,
        and a short program's first batch is often sent by the exit flush.
        """
        try:
            import botocore.exceptions
            import botocore.session
            from botocore.config import Config
        except ImportError:
            self.turn_off(
                NO_BOTO3, "boto3 is not installed (pip install 'aind-log-utils[cloudwatch]')"
            )
            return None
        except Exception as exc:  # e.g. an import refused at interpreter exit
            return SendResult.retry(f"import: {describe_error(exc)}")
        self._exc = botocore.exceptions
        session = botocore.session.Session(profile=self.profile_name)
        try:
            credentials = session.get_credentials()  # may ask the metadata service
        except botocore.exceptions.ProfileNotFound:
            self.turn_off(NO_CREDENTIALS, f"AWS profile {self.profile_name!r} not found")
            return None
        except Exception as exc:  # a provider failed: maybe transient
            return SendResult.retry(f"credentials: {self._safe(describe_error(exc))}")
        if credentials is None:
            self.turn_off(NO_CREDENTIALS, "no AWS credentials found")
            return None
        self._credentials = credentials
        self._register_secrets()
        if self.region is None:
            self.region = session.get_config_variable("region") or DEFAULT_REGION
        from .. import __version__

        config = Config(
            connect_timeout=min(timeout_s, 10.0),
            read_timeout=timeout_s,
            retries={"total_max_attempts": 1, "mode": "standard"},  # the engine retries
            parameter_validation=False,  # our events are valid; validation costs ~1 us each
            user_agent_extra=f"aind-log-utils/{__version__}",
        )
        self._client = session.create_client(
            "logs", region_name=self.region, endpoint_url=self.endpoint_url, config=config
        )
        # The body is serialised by orjson (put_body): botocore's serialiser walks
        # each event in Python, and the worker's time is GIL time taken from the
        # logging threads.
        # botocore documents ``before-sign`` as the place to mutate a request.
        self._client.meta.events.register(
            "before-sign.cloudwatch-logs.PutLogEvents", self._use_body
        )
        self._pid = os.getpid()
        return None

    def _use_body(self, request: Any, **_: Any) -> None:
        if self._body is not None:
            request.data = self._body

    def _register_secrets(self) -> None:
        try:
            frozen = self._credentials.get_frozen_credentials()
            values = [v for v in (frozen.secret_key, frozen.token) if v]
            values = [v for v in values if len(v) >= _MIN_SECRET_CHARS]
            if values:
                from .._redact import register_secret

                register_secret(*values)
        except Exception:
            pass

    def _safe(self, text: str) -> str:
        """``text`` with the credentials in use masked, on one line, short."""
        from .._redact import MASK, redact_text

        text = " ".join(text.split())
        try:
            frozen = self._credentials.get_frozen_credentials() if self._credentials else None
        except Exception:
            frozen = None
        if frozen is not None:
            for value in (frozen.secret_key, frozen.token, frozen.access_key):
                if value and len(value) >= 4:
                    text = text.replace(value, MASK)
        text = redact_text(text)
        return text if len(text) <= 200 else text[:197] + "..."

    # ---- sending (on the worker) --------------------------------------------
    def send(self, batch: list[bytes], timeout_s: float) -> SendResult:
        """Send one batch with PutLogEvents; see the module docstring for the answers."""
        # No lock: send() runs on the worker only, and close() (on another
        # thread) must not wait for a call that hangs.
        if self._closed:
            return SendResult.retry("closed")
        if self.off_reason is None and (self._client is None or self._pid != os.getpid()):
            self._client = None  # a forked child builds its own client
            connecting = self._connect(timeout_s)
            if connecting is not None:
                return connecting
        if self.off_reason is not None:
            return SendResult.reject(len(batch), self.off_reason)
        events, invalid, size = build_events(batch, self.max_message_bytes)
        if not events:
            return SendResult.reject(invalid, "invalid_item")
        problem = batch_problem(events, size)
        if problem is not None:
            return SendResult.too_large(problem)
        return self._put(events, invalid)

    def _put(self, events: list[tuple[int, bytes]], invalid: int) -> SendResult:
        exc_mod = self._exc
        try:
            try:
                response = self._put_log_events(events)
            except exc_mod.ClientError as exc:
                if _code(exc) != "ResourceNotFoundException":
                    raise
                self._create_destination()
                response = self._put_log_events(events)
        except exc_mod.ClientError as exc:
            return self._answer(exc, len(events) + invalid)
        except exc_mod.NoCredentialsError:
            self.turn_off(NO_CREDENTIALS, "no AWS credentials found")
            return SendResult.reject(len(events) + invalid, NO_CREDENTIALS)
        except exc_mod.BotoCoreError as exc:  # connection refused/closed, timeouts
            return SendResult.retry(f"connection: {self._safe(describe_error(exc))}")
        rejected, reason = _rejected(response.get("rejectedLogEventsInfo"), len(events))
        if invalid:
            rejected, reason = rejected + invalid, reason or "invalid_item"
        return SendResult.reject(rejected, reason) if rejected else SendResult.ok()

    def _put_log_events(self, events: list[tuple[int, bytes]]) -> Any:
        self._body = put_body(self.log_group, self.log_stream, events)
        try:  # botocore serialises an empty list; _use_body puts the events in
            return self._client.put_log_events(
                logGroupName=self.log_group, logStreamName=self.log_stream, logEvents=[]
            )
        finally:
            self._body = None

    def _create_destination(self) -> None:
        exc_mod = self._exc
        try:
            self._client.create_log_group(logGroupName=self.log_group)
        except exc_mod.ClientError as exc:
            # AccessDenied: the group may exist and creating it not be allowed;
            # creating the stream says whether it does.
            if _code(exc) not in ("ResourceAlreadyExistsException", "AccessDeniedException"):
                raise
        try:
            self._client.create_log_stream(
                logGroupName=self.log_group, logStreamName=self.log_stream
            )
        except exc_mod.ClientError as exc:
            if _code(exc) != "ResourceAlreadyExistsException":
                raise

    def _answer(self, exc: Any, size: int) -> SendResult:
        code = _code(exc)
        status = _status(exc)
        if code == "DataAlreadyAcceptedException":
            return SendResult.ok()
        if code in _RETRY_CODES or status >= 500 or status == 429:
            return SendResult.retry(code or f"http_{status}")
        message = self._safe(str(exc.response.get("Error", {}).get("Message") or ""))
        if code in _SPLIT_CODES or status == 413:
            diagnose(f"cloudwatch:{code}", f"cloudwatch: {code}: {message} (splitting the batch)")
            return SendResult.too_large(code or f"http_{status}")
        diagnose(
            f"cloudwatch:{code}",
            f"cloudwatch: {self.log_group}/{self.log_stream} refused {size} record(s): "
            f"{code or status}: {message}",
        )
        return SendResult.reject(size, code or f"http_{status}")

    def close(self) -> None:
        """Close the botocore client's connections (idempotent)."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            try:
                client.close()
            except Exception:
                pass


def _code(exc: Any) -> str:
    try:
        return str(exc.response.get("Error", {}).get("Code") or "")
    except Exception:
        return ""


def _status(exc: Any) -> int:
    try:
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    except Exception:
        return 0


def _rejected(info: Any, size: int) -> tuple[int, str]:
    """Count the events ``rejectedLogEventsInfo`` names (indices into the sent batch)."""
    if not isinstance(info, dict) or not info:
        return 0, ""
    reasons = []
    prefix = -1
    for key, reason in (
        ("tooOldLogEventEndIndex", "too_old"),
        ("expiredLogEventEndIndex", "expired"),
    ):
        index = info.get(key)
        if isinstance(index, int) and index >= 0:
            prefix = max(prefix, min(index, size - 1))
            reasons.append(reason)
    suffix = 0
    start = info.get("tooNewLogEventStartIndex")
    if isinstance(start, int) and 0 <= start < size:
        suffix = size - max(start, prefix + 1)
        reasons.append("too_new")
    count = min(size, prefix + 1 + max(0, suffix))
    return count, "+".join(reasons)
