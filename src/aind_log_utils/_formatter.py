"""The JSON formatter: python-json-logger's configuration surface, an orjson hot path."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pythonjsonlogger.core import BaseJsonFormatter

from ._render import RECORD_ATTRS, Renderer

__all__ = ["JsonFormatter"]


class JsonFormatter(BaseJsonFormatter):
    """Format records as one AIND-standard JSON object per line.

    Usable wherever python-json-logger's formatter is, including ``dictConfig``
    (``"()": "aind_log_utils.JsonFormatter"``). Every record carries
    ``timestamp`` (ISO 8601 UTC, microseconds, ``Z``), ``level``, ``message``,
    ``logger``, ``lineno``, ``process``/``thread`` (as strings), ``processName``,
    ``threadName``, the static fields, the bound context and the call's
    ``extra=`` fields; exceptions become ``error_type`` and ``stack_trace``.
    Every value is redacted. The record is never modified, and formatting
    never raises.

    Args:
        fmt: python-json-logger's ``fmt``: record attributes named in it (for
            example ``"%(funcName)s %(pathname)s"``) are added to every line.
        datefmt: accepted for compatibility; ``timestamp`` is always ISO 8601 UTC.
        style: ``%``, ``{``, ``$`` or ``,``, as python-json-logger.
        validate: validate ``fmt`` against ``style``.
        prefix: text put before each JSON object.
        rename_fields: output key renames, e.g. ``{"message": "msg"}``.
        rename_fields_keep_missing: accepted for compatibility.
        static_fields: fields added to every record (redacted).
        reserved_attrs: record attributes never written as extras.
        timestamp: accepted for compatibility; the timestamp is always written.
        defaults: fields added to every record, lower precedence than anything else.
        exc_info_as_array: accepted for compatibility (``stack_trace`` stays a string).
        stack_info_as_array: accepted for compatibility.
    """

    def __init__(
        self,
        fmt: str | Sequence[str] | None = None,
        datefmt: str | None = None,
        style: str = "%",
        validate: bool = True,
        *,
        prefix: str = "",
        rename_fields: dict[str, str] | None = None,
        rename_fields_keep_missing: bool = False,
        static_fields: dict[str, Any] | None = None,
        reserved_attrs: Sequence[str] | None = None,
        timestamp: bool | str = True,
        defaults: dict[str, Any] | None = None,
        exc_info_as_array: bool = False,
        stack_info_as_array: bool = False,
    ) -> None:
        super().__init__(
            fmt,
            datefmt,
            style,
            validate,
            prefix=prefix,
            rename_fields=rename_fields,
            rename_fields_keep_missing=rename_fields_keep_missing,
            static_fields=static_fields,
            reserved_attrs=reserved_attrs,
            timestamp=timestamp,
            defaults=defaults,
            exc_info_as_array=exc_info_as_array,
            stack_info_as_array=stack_info_as_array,
        )
        static: dict[str, Any] = dict(defaults or {})
        static.update(static_fields or {})
        extra_reserved = set(reserved_attrs or ()) - RECORD_ATTRS
        self.renderer = Renderer(
            static,
            include_attrs=[f for f in self._required_fields if f in RECORD_ATTRS],
            exclude_attrs=extra_reserved,
            rename_fields=rename_fields,
            prefix=prefix,
        )

    @classmethod
    def from_renderer(cls, renderer: Renderer) -> JsonFormatter:
        """Build a formatter around an already configured renderer."""
        formatter = cls()
        formatter.renderer = renderer
        return formatter

    def format(self, record: logging.LogRecord) -> str:
        """Format one record as a JSON string without the trailing newline.

        Args:
            record: the record; it is not modified.

        Returns:
            One line of strict JSON.
        """
        return self.renderer.render(record)[1].rstrip(b"\n").decode("utf-8")

    def render(self, record: logging.LogRecord) -> tuple[dict[str, Any], bytes]:
        """Render one record to its redacted event dict and UTF-8 line (with newline)."""
        return self.renderer.render(record)

    def jsonify_log_record(self, log_data: Mapping[str, Any]) -> str:
        """Serialise a field dict the way :meth:`format` does (python-json-logger hook)."""
        return self.renderer.serialize(log_data).rstrip(b"\n").decode("utf-8")
