"""Configuration sources: the config file and the ``AIND_*`` environment variables.

Precedence, highest first: explicit ``setup_logging`` arguments > ``AIND_*``
environment variables > the config file > discovered values.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_OPTIONS",
    "FALSE_WORDS",
    "TRUE_WORDS",
    "env_values",
    "load_config_file",
    "parse_bool",
]

#: setup option -> environment variable.
ENV_OPTIONS: dict[str, str] = {
    "level": "AIND_LOG_LEVEL",
    "log_file": "AIND_LOG_FILE",
    "console": "AIND_LOG_CONSOLE",
    "config": "AIND_LOG_CONFIG",
    "handle_sigterm": "AIND_LOG_HANDLE_SIGTERM",
    "flush_timeout_s": "AIND_LOG_FLUSH_TIMEOUT_S",
}

#: The words of a true and of a false boolean, lower case.
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


def parse_bool(name: str, value: str) -> bool:
    """Read a boolean from an environment variable's text.

    Raises:
        ValueError: the text is not a boolean (the message names ``name``).
    """
    lowered = value.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise ValueError(f"{name}: expected true/false, got {value!r}")


def env_values(
    field_names: tuple[str, ...], extra_options: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Read the options and standard fields set in ``AIND_*`` variables.

    Args:
        field_names: the standard field names; ``AIND_<NAME>`` sets each.
        extra_options: more option -> variable pairs (network sinks).

    Returns:
        option or field name -> raw text, only for the variables that are set.
    """
    found: dict[str, Any] = {}
    for option, var in {**ENV_OPTIONS, **(extra_options or {})}.items():
        value = os.environ.get(var)
        if value is not None and value.strip() != "":
            found[option] = value.strip()
    for name in field_names:
        value = os.environ.get(f"AIND_{name.upper()}")
        if value is not None and value.strip() != "":
            found[name] = value.strip()
    return found


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML or YAML config file of ``setup_logging`` options.

    The options may sit at the top level or in an ``aind_log_utils`` table
    (``[tool.aind_log_utils]`` works too, for a ``pyproject.toml``).

    Args:
        path: a ``.toml``, ``.yaml`` or ``.yml`` file.

    Returns:
        option -> value.

    Raises:
        ValueError: the file is missing, unreadable, not TOML/YAML, or not a
            table of options (the message names ``config``).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"config: expected a path, got {type(path).__name__}")
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"config: cannot read {str(file)!r}: {exc.strerror or exc}") from None
    data: Any
    try:
        if file.suffix.lower() == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
        elif file.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ValueError(f"config: {str(file)!r} is neither .toml nor .yaml/.yml")
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"config: cannot parse {str(file)!r}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config: {str(file)!r} must hold a table of options")
    for key in ("aind_log_utils", "aind-log-utils"):
        if isinstance(data.get(key), dict):
            return dict(data[key])
    tool = data.get("tool")
    if isinstance(tool, dict):
        for key in ("aind_log_utils", "aind-log-utils"):
            if isinstance(tool.get(key), dict):
                return dict(tool[key])
    return dict(data)
