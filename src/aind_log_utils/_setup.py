"""``setup_logging()``: one call wires fields, redaction, console and file sinks."""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from . import _redact
from ._args import check_sinks, parse_console, parse_level, resolve_log_file
from ._config import env_values, load_config_file, parse_bool
from ._console import ConsoleSink
from ._dispatch import DispatchHandler
from ._file import JsonlFileSink
from ._network import NETWORK_OPTIONS, build_network_sinks
from ._render import Renderer
from ._session import LoggingSession, _replace_active
from ._sink import Sink

__all__ = ["setup_logging"]

_DEPRECATED = {"mouse_id": "subject_id", "session_name": "asset_name"}
_FIELD_ARGS = (
    "acquisition_name",
    "instrument_id",
    "rig_id",
    "specimen_id",
    "pipeline_name",
    "user_id",
    "software_name",
    "software_version",
)
#: Options a config file may set (besides the standard fields).
_CONFIG_OPTIONS = frozenset(
    {
        "process_name",
        "subject_id",
        "asset_name",
        "send_start_log",
        "disable_existing_loggers",
        "level",
        "console",
        "log_file",
        "fields",
        "handle_sigterm",
        "flush_timeout_s",
    }
)


def _caller_module() -> str | None:
    frame = inspect.currentframe()
    try:
        while frame is not None:
            name = frame.f_globals.get("__name__", "")
            if not str(name).startswith("aind_log_utils"):
                return str(name)
            frame = frame.f_back
    finally:
        del frame
    return None


def setup_logging(
    process_name: str | None = None,
    subject_id: str | int | None = None,
    asset_name: str | None = None,
    send_start_log: bool = True,
    disable_existing_loggers: bool = False,
    *,
    acquisition_name: str | None = None,
    instrument_id: str | None = None,
    rig_id: str | None = None,
    specimen_id: str | None = None,
    pipeline_name: str | None = None,
    user_id: str | None = None,
    software_name: str | None = None,
    software_version: str | None = None,
    level: int | str | None = None,
    console: bool | str | None = None,
    console_stream: TextIO | None = None,
    log_file: str | os.PathLike[str] | bool | None = None,
    secrets: Iterable[Any] | None = None,
    fields: Mapping[str, Any] | None = None,
    config: str | os.PathLike[str] | None = None,
    handle_sigterm: bool | None = None,
    flush_timeout_s: float | None = None,
    sinks: Sequence[Sink] = (),
    loki_url: str | None = None,
    loki_labels: Mapping[str, str] | None = None,
    loki_tenant_id: str | None = None,
    loki_username: str | None = None,
    loki_password: str | None = None,
    loki_bearer_token: str | None = None,
    loki_verify: bool | str | None = None,
    loki_options: Mapping[str, Any] | None = None,
    sipe_url: str | None = None,
    sipe_level: int | str | None = None,
    sipe_options: Mapping[str, Any] | None = None,
    cloudwatch: bool | None = None,
    cloudwatch_log_group: str | None = None,
    cloudwatch_log_stream: str | None = None,
    cloudwatch_region: str | None = None,
    cloudwatch_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> LoggingSession:
    """Turn every stdlib log record into one AIND-standard JSON line, everywhere.

    One call: every record from every logger gets the standard fields, is
    redacted, rendered once as JSON and written to the console and a JSONL file
    (and to the network sinks configured). Calling it again replaces what the
    previous call installed; handlers it did not install are left alone.

    The first five parameters keep the 0.2.x order and meaning, so
    ``log.setup_logging("my-capsule", subject_id=..., asset_name=...)`` keeps
    working. Precedence for every option and field, highest first: explicit
    arguments > ``AIND_*`` environment variables > the config file >
    discovered values.

    Args:
        process_name: the program's name (the Code Ocean capsule).
        subject_id: the subject of the acquisition.
        asset_name: the AIND asset name; ``subject_id`` and ``acquisition_name``
            are derived from ``<modality>_<subject_id>_<date>_<time>`` when not given.
        send_start_log: write a "Starting" line now and a "Stopping" line (the
            run's canonical line) at the end.
        disable_existing_loggers: silence every logger created before this call
            (0.2.x's default; False here so library loggers keep working).
        acquisition_name: ``<subject_id>_<YYYY-MM-DD>_<HH-MM-SS>``.
        instrument_id: e.g. ``MESO1``.
        rig_id: SIPE's rig name (default: env ``aibs_comp_id``).
        specimen_id: must contain the subject_id.
        pipeline_name: the pipeline running this program.
        user_id: who runs the experiment.
        software_name: default: the calling distribution's name.
        software_version: default: the calling distribution's version.
        level: the root level (default INFO; env ``AIND_LOG_LEVEL``).
        console: True/"auto" (text on a terminal, JSON otherwise), "json",
            "text" or False (env ``AIND_LOG_CONSOLE``).
        console_stream: the console's stream (default ``sys.stdout``).
        log_file: a path; True for the platform's user log dir; False for none;
            None: ``/results/logs/<name>.jsonl`` inside Code Ocean, none elsewhere
            (env ``AIND_LOG_FILE``).
        secrets: values masked wherever they appear.
        fields: extra static fields added to every record.
        config: a TOML or YAML file of these options (env ``AIND_LOG_CONFIG``).
        handle_sigterm: flush and write the stop line on SIGTERM (default True;
            only where SIGTERM still has its default action, main thread only).
        flush_timeout_s: the bound on flushing at exit (default 10 s).
        sinks: more sinks (objects with ``handle_event``/``flush``/``close``).
        loki_url: send every record to Grafana Loki (base or push URL; env
            ``AIND_LOKI_URL``). Records are batched, retried, spooled on disk while
            Loki is away, and flushed within ``flush_timeout_s`` at exit.
        loki_labels: static stream labels (env ``AIND_LOKI_LABELS=a=1,b=2``).
        loki_tenant_id: ``X-Scope-OrgID`` (env ``AIND_LOKI_TENANT_ID``).
        loki_username: basic-auth user (env ``AIND_LOKI_USERNAME``).
        loki_password: basic-auth password (env ``AIND_LOKI_PASSWORD``); never logged.
        loki_bearer_token: bearer token (env ``AIND_LOKI_BEARER_TOKEN``); never logged.
        loki_verify: TLS verification, True/False or a CA bundle path (env
            ``AIND_LOKI_VERIFY``).
        loki_options: delivery options (``batch_wait_s``, ``max_batch_bytes``,
            ``retry_start_s``, ``retry_factor``, ``retry_max_s``, ``timeout_s``,
            ``max_queue_bytes``, ``max_spool_bytes``, ``spool_dir``, ...).
        sipe_url: send records to the legacy SIPE log server (``http://host:port``,
            ``tcp://host:port`` or ``host:port``; port 9000 by default; env
            ``AIND_SIPE_URL``). Records above INFO always go; INFO and below only
            with ``extra={"weblog": True}``.
        sipe_level: records at or above this level always go to SIPE (default
            WARNING; env ``AIND_SIPE_LEVEL``).
        sipe_options: delivery options for the SIPE sink (as ``loki_options``).
        cloudwatch: send records to CloudWatch Logs (needs the ``cloudwatch``
            extra). None: on inside Code Ocean when boto3 is installed, as 0.2.x;
            False: off (env ``AIND_LOG_CLOUDWATCH``).
        cloudwatch_log_group: default ``aind/internal_logs`` (env
            ``AIND_CLOUDWATCH_LOG_GROUP``).
        cloudwatch_log_stream: default ``CO_CAPSULE_ID`` (env
            ``AIND_CLOUDWATCH_LOG_STREAM``).
        cloudwatch_region: the AWS region (env ``AIND_CLOUDWATCH_REGION``; default:
            boto3's configuration).
        cloudwatch_options: delivery options for the CloudWatch sink.
        **kwargs: 0.2.x's deprecated aliases ``mouse_id`` and ``session_name``;
            anything else is warned about and ignored.

    Returns:
        The :class:`LoggingSession` handle.

    Raises:
        ValueError: a bad option or field (the message names it), e.g. an
            ``acquisition_name`` not of the standard form, a ``specimen_id``
            without the subject_id, an unknown level, an unwritable log path.
        TypeError: an option of the wrong type (the message names it).
    """
    from ._fields import (
        FIELD_NAMES,
        derive_from_asset_name,
        discover_fields,
        new_log_session,
        program_name,
        validate_fields,
    )

    # 0.2.x aliases and unknown keywords: warn, never crash a capsule.
    for old, new in _DEPRECATED.items():
        if old in kwargs:
            value = kwargs.pop(old)
            warnings.warn(
                f"setup_logging: {old!r} is deprecated, use {new!r}", FutureWarning, stacklevel=2
            )
            if new == "subject_id" and subject_id is None:
                subject_id = value
            elif new == "asset_name" and asset_name is None:
                asset_name = value
    network = {
        "loki_url": loki_url, "loki_labels": loki_labels, "loki_tenant_id": loki_tenant_id,
        "loki_username": loki_username, "loki_password": loki_password,
        "loki_bearer_token": loki_bearer_token, "loki_verify": loki_verify, "loki_options": loki_options,
        "sipe_url": sipe_url, "sipe_level": sipe_level, "sipe_options": sipe_options,
        "cloudwatch": cloudwatch, "cloudwatch_log_group": cloudwatch_log_group,
        "cloudwatch_log_stream": cloudwatch_log_stream, "cloudwatch_region": cloudwatch_region,
        "cloudwatch_options": cloudwatch_options,
    }  # fmt: skip
    if kwargs:
        warnings.warn(
            f"setup_logging: unknown keyword argument(s) ignored: {', '.join(sorted(kwargs))}",
            UserWarning,
            stacklevel=2,
        )

    explicit: dict[str, Any] = {
        "process_name": process_name,
        "subject_id": subject_id,
        "asset_name": asset_name,
        "acquisition_name": acquisition_name,
        "instrument_id": instrument_id,
        "rig_id": rig_id,
        "specimen_id": specimen_id,
        "pipeline_name": pipeline_name,
        "user_id": user_id,
        "software_name": software_name,
        "software_version": software_version,
        "level": level,
        "console": console,
        "log_file": log_file,
        "fields": fields,
        "handle_sigterm": handle_sigterm,
        "flush_timeout_s": flush_timeout_s,
        **network,
    }
    explicit = {k: v for k, v in explicit.items() if v is not None}

    from_env = env_values(FIELD_NAMES, NETWORK_OPTIONS)
    config_path = config if config is not None else from_env.pop("config", None)
    from_env.pop("config", None)
    from_file: dict[str, Any] = {}
    if config_path is not None:
        from_file = load_config_file(config_path)
        allowed = _CONFIG_OPTIONS | set(FIELD_NAMES) | set(NETWORK_OPTIONS)
        for key in from_file:
            if key not in allowed:
                raise ValueError(f"config: unknown option {key!r} in {os.fspath(config_path)!r}")

    discovered = discover_fields(_caller_module())
    merged: dict[str, Any] = {**discovered, **from_file, **from_env, **explicit}

    # Fields: the standard ones, with subject/acquisition derived from the asset name.
    raw_fields = {name: merged.get(name) for name in FIELD_NAMES}
    if raw_fields.get("asset_name"):
        for key, value in derive_from_asset_name(str(raw_fields["asset_name"])).items():
            if raw_fields.get(key) is None:
                raw_fields[key] = value
    raw_fields["log_session"] = raw_fields.get("log_session") or new_log_session()
    std_fields = validate_fields(raw_fields)
    extra_static = merged.get("fields") or {}
    if not isinstance(extra_static, Mapping):
        raise TypeError(f"fields: expected a mapping, got {type(extra_static).__name__}")
    for key in extra_static:
        if key in FIELD_NAMES:
            raise ValueError(f"fields: {key!r} is a standard field; pass it as {key}=...")
    static = {**std_fields, **{str(k): v for k, v in extra_static.items()}}
    program = program_name(std_fields.get("process_name"), std_fields.get("software_name"))

    level_no = parse_level(merged.get("level", logging.INFO))
    console_mode = parse_console(merged.get("console"))
    timeout = merged.get("flush_timeout_s", 10.0)
    try:
        timeout = float(timeout)
    except (TypeError, ValueError):
        raise ValueError(
            f"flush_timeout_s: expected a number of seconds, got {timeout!r}"
        ) from None
    if not timeout >= 0:
        raise ValueError(f"flush_timeout_s: must be >= 0, got {timeout!r}")
    sigterm = merged.get("handle_sigterm", True)
    if isinstance(sigterm, str):
        sigterm = parse_bool("handle_sigterm", sigterm)
    if secrets is not None:
        if isinstance(secrets, (str, bytes)) or not isinstance(secrets, Iterable):
            raise TypeError(f"secrets: expected a list of values, got {type(secrets).__name__}")
        _redact.register_secret(*secrets)

    extra_sinks = check_sinks(sinks)  # before any sink (or sender process) is started
    built: list[Sink] = []
    try:
        if console_mode is not None:
            built.append(ConsoleSink(console_mode, console_stream))  # type: ignore[arg-type]
        path = resolve_log_file(merged.get("log_file"), program)
        if path is not None:
            built.append(JsonlFileSink(path))
        net_options = {k: merged[k] for k in NETWORK_OPTIONS if merged.get(k) is not None}
        built.extend(build_network_sinks(net_options, program=program, fields=static))
        built.extend(extra_sinks)
    except BaseException:
        for sink in built:
            sink.close(0)
        raise

    renderer = Renderer(static)
    handler = DispatchHandler(renderer, built)
    session = LoggingSession(
        handler=handler,
        program=program,
        fields=renderer.static_fields,
        level=level_no,
        log_file=path,
        send_start_log=send_start_log,
        flush_timeout_s=timeout,
    )
    _replace_active(session)
    root = logging.getLogger()
    if disable_existing_loggers:
        for name, existing in list(logging.Logger.manager.loggerDict.items()):
            if isinstance(existing, logging.Logger) and not name.startswith("aind_log_utils"):
                existing.disabled = True
    root.addHandler(handler)
    root.setLevel(level_no)
    # warnings.warn() output lands in the file too (restored when the session ends)
    logging.captureWarnings(True)
    session._restore.append(lambda: logging.captureWarnings(False))
    session.start(handle_sigterm=bool(sigterm))
    return session
