"""Building the network sinks from ``setup_logging`` options.

Each option has an ``AIND_*`` environment variable, so a capsule can be pointed
at Loki without a code change (``AIND_LOKI_URL=http://eng-logtools:3100``).
Nothing here imports an HTTP or AWS client until a sink is actually built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._args import in_code_ocean
from ._config import parse_bool
from ._sink import Sink

__all__ = ["NETWORK_OPTIONS", "build_network_sinks"]

#: setup option -> environment variable.
NETWORK_OPTIONS: dict[str, str] = {
    "loki_url": "AIND_LOKI_URL",
    "loki_labels": "AIND_LOKI_LABELS",
    "loki_tenant_id": "AIND_LOKI_TENANT_ID",
    "loki_username": "AIND_LOKI_USERNAME",
    "loki_password": "AIND_LOKI_PASSWORD",
    "loki_bearer_token": "AIND_LOKI_BEARER_TOKEN",
    "loki_verify": "AIND_LOKI_VERIFY",
    "loki_options": "AIND_LOKI_OPTIONS",
    "sipe_url": "AIND_SIPE_URL",
    "sipe_level": "AIND_SIPE_LEVEL",
    "sipe_options": "AIND_SIPE_OPTIONS",
    "cloudwatch": "AIND_LOG_CLOUDWATCH",
    "cloudwatch_log_group": "AIND_CLOUDWATCH_LOG_GROUP",
    "cloudwatch_log_stream": "AIND_CLOUDWATCH_LOG_STREAM",
    "cloudwatch_region": "AIND_CLOUDWATCH_REGION",
    "cloudwatch_options": "AIND_CLOUDWATCH_OPTIONS",
}


def _labels(value: Any) -> Mapping[str, Any] | None:
    if value is None or isinstance(value, Mapping):
        return value
    if isinstance(value, str):  # "team=ephys,site=seattle" from the environment
        pairs = [p for p in value.split(",") if p.strip()]
        out: dict[str, str] = {}
        for pair in pairs:
            name, sep, val = pair.partition("=")
            if not sep:
                raise ValueError(f"loki_labels: expected name=value pairs, got {pair!r}")
            out[name.strip()] = val.strip()
        return out
    raise TypeError(f"loki_labels: expected a mapping, got {type(value).__name__}")


def _verify(value: Any) -> bool | str:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return parse_bool("loki_verify", value)
        except ValueError:
            return value  # a CA bundle path
    raise TypeError(f"loki_verify: expected a bool or a CA bundle path, got {type(value).__name__}")


def _options(value: Any, name: str = "loki_options") -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        import orjson

        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ValueError(f"{name}: expected a JSON object of delivery options") from None
    if not isinstance(value, Mapping):
        raise TypeError(f"{name}: expected a mapping, got {type(value).__name__}")
    return dict(value)


def _cloudwatch_wanted(value: Any) -> bool:
    """``cloudwatch``: True/False, or None for 0.2.x's default (on inside Code Ocean with boto3)."""
    if isinstance(value, str):
        value = parse_bool("cloudwatch", value)
    if value is None:
        if not in_code_ocean():
            return False
        import importlib.util

        return importlib.util.find_spec("boto3") is not None
    if not isinstance(value, bool):
        raise TypeError(f"cloudwatch: expected True, False or None, got {type(value).__name__}")
    return value


def build_network_sinks(
    options: Mapping[str, Any], *, program: str, fields: Mapping[str, Any]
) -> list[Sink]:
    """Build the network sinks the options ask for.

    Args:
        options: the network options given (arguments, environment, config file).
        program: the program's name (Loki's ``service_name``).
        fields: the session's static fields.

    Returns:
        The sinks, in a fixed order.

    Raises:
        ValueError: a bad option (the message names it).
        TypeError: an option of the wrong type.
    """
    sinks: list[Sink] = []
    unused = sorted(k for k in options if k.startswith("loki_") and k != "loki_url")
    if options.get("loki_url"):
        from ._loki import LokiSink

        sinks.append(
            LokiSink(
                str(options["loki_url"]),
                program=program,
                labels=_labels(options.get("loki_labels")),
                tenant_id=options.get("loki_tenant_id"),
                username=options.get("loki_username"),
                password=options.get("loki_password"),
                bearer_token=options.get("loki_bearer_token"),
                verify=_verify(options.get("loki_verify", True)),
                **_options(options.get("loki_options")),
            )
        )
    elif unused:
        import warnings

        warnings.warn(
            f"{', '.join(unused)} given without loki_url: no Loki sink", UserWarning, stacklevel=3
        )
    if options.get("sipe_url"):
        from ._sipe import SipeSink

        sipe_kwargs: dict[str, Any] = _options(options.get("sipe_options"), "sipe_options")
        if options.get("sipe_level") is not None:
            sipe_kwargs["level"] = options["sipe_level"]
        sinks.append(
            SipeSink(str(options["sipe_url"]), program=program, fields=fields, **sipe_kwargs)
        )
    if _cloudwatch_wanted(options.get("cloudwatch")):
        from ._cloudwatch import CloudWatchSink

        sinks.append(
            CloudWatchSink(
                program=program,
                log_group=options.get("cloudwatch_log_group"),
                log_stream=options.get("cloudwatch_log_stream"),
                region=options.get("cloudwatch_region"),
                **_options(options.get("cloudwatch_options"), "cloudwatch_options"),
            )
        )
    return sinks
