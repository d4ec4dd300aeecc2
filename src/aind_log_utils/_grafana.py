"""A Grafana dashboard for the logs the Loki sink sends; importable without click.

:func:`build_dashboard` returns the dashboard as a dict that Grafana provisions as
it is (``aind-log grafana-dashboard > aind-logs.json``, then a dashboard provider
pointing at the folder). It has:

- variables: ``datasource`` (any Loki data source), ``service_name`` and ``rig_id``
  (stream labels, listed from Loki), ``subject_id`` (structured metadata: Grafana
  cannot list metadata values, so it is a free-text choice with an All option);
- panels: log volume by level, errors (a count and the lines), the canonical lines
  as a table, and every log line of the selection.

Every query selects streams by the labels the sink sends (:data:`STREAM_LABELS`) and
filters by the structured metadata it sends (:data:`METADATA_FIELDS`); nothing
else, so every query works against any Loki 3 the sink pushes to.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "METADATA_FIELDS",
    "STREAM_LABELS",
    "build_dashboard",
    "dashboard_queries",
]

#: The stream labels the Loki sink sends (when known).
STREAM_LABELS = ("service_name", "level", "hostname", "rig_id", "instrument_id", "pipeline_name")
#: The structured metadata the Loki sink sends with each line (when known).
METADATA_FIELDS = (
    "subject_id",
    "acquisition_name",
    "asset_name",
    "log_session",
    "specimen_id",
    "user_id",
    "process_name",
    "capsule_id",
    "computation_id",
    "software_version",
    "logger",
    "event_type",
)

_DS = {"type": "loki", "uid": "${datasource}"}
#: The stream selector of every panel. ``service_name`` "All" is ``.+`` (Loki wants
#: one matcher that cannot match the empty string; every stream of the sink has a
#: service_name); ``rig_id`` "All" is ``.*`` so streams without a rig stay in.
_SELECTOR = '{service_name=~"$service_name", rig_id=~"$rig_id"%s}'
#: Structured metadata is filtered after the selector; "All" (``.*``) also keeps
#: lines without a subject_id.
_SUBJECT = ' | subject_id=~"$subject_id"'
_ERROR_LEVELS = 'level=~"ERROR|CRITICAL"'
_CANONICAL = ' | event_type=~"stage_complete|stage_failure"'
_LEVEL_COLOURS = {
    "DEBUG": "text",
    "INFO": "green",
    "WARNING": "yellow",
    "ERROR": "red",
    "CRITICAL": "dark-red",
}
#: The columns of the canonical-lines table, in order (missing ones are left out).
CANONICAL_COLUMNS = (
    "timestamp",
    "level",
    "message",
    "status",
    "duration_s",
    "service_name",
    "process_name",
    "subject_id",
    "acquisition_name",
    "rig_id",
    "error_type",
    "error_message",
    "failure_reason",
)


def _logs(extra_labels: str = "", pipeline: str = "") -> str:
    return (_SELECTOR % extra_labels) + _SUBJECT + pipeline


def _target(expr: str, *, legend: str = "", query_type: str = "range") -> dict[str, Any]:
    target: dict[str, Any] = {
        "datasource": dict(_DS),
        "editorMode": "code",
        "expr": expr,
        "queryType": query_type,
        "refId": "A",
    }
    if legend:
        target["legendFormat"] = legend
    return target


def _label_variable(name: str, stream: str, all_value: str) -> dict[str, Any]:
    definition = f"label_values({stream}, {name})" if stream else f"label_values({name})"
    return {
        "type": "query",
        "name": name,
        "label": name,
        "datasource": dict(_DS),
        "query": {
            "label": name,
            "refId": "LokiVariableQueryEditor-VariableQuery",
            "stream": stream,
            "type": 1,  # label values
        },
        "definition": definition,
        "refresh": 2,  # on time range change
        "includeAll": True,
        "allValue": all_value,
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
        "regex": "",
        "options": [],
    }


def _variables() -> list[dict[str, Any]]:
    return [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Loki",
            "query": "loki",
            "refresh": 1,
            "hide": 0,
            "regex": "",
            "current": {},
            "options": [],
        },
        _label_variable("service_name", "", ".+"),
        _label_variable("rig_id", '{service_name=~"$service_name"}', ".*"),
        {
            # Loki lists label values, not structured metadata values, so Grafana cannot
            # fill this list (grafana/grafana#84909): type a subject id, or keep All.
            "type": "custom",
            "name": "subject_id",
            "label": "subject_id",
            "description": "Structured metadata: type a subject id (Loki cannot list them).",
            "query": "",
            "includeAll": True,
            "allValue": ".*",
            "allowCustomValue": True,
            "multi": False,
            "current": {"selected": True, "text": "All", "value": "$__all"},
            "options": [{"selected": True, "text": "All", "value": "$__all"}],
            "hide": 0,
        },
    ]


def _grid(x: int, y: int, w: int, h: int) -> dict[str, int]:
    return {"x": x, "y": y, "w": w, "h": h}


def _panels() -> list[dict[str, Any]]:
    volume_expr = f"sum by (level) (count_over_time({_logs()} [$__interval]))"
    error_count_expr = f"sum(count_over_time({_logs(', ' + _ERROR_LEVELS)} [$__range]))"
    level_overrides = [
        {
            "matcher": {"id": "byName", "options": level},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": colour}}],
        }
        for level, colour in _LEVEL_COLOURS.items()
    ]
    return [
        {
            "id": 1,
            "type": "timeseries",
            "title": "Log volume by level",
            "datasource": dict(_DS),
            "gridPos": _grid(0, 0, 18, 8),
            "targets": [_target(volume_expr, legend="{{level}}")],
            "fieldConfig": {
                "defaults": {
                    "custom": {"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal"}},
                    "unit": "short",
                },
                "overrides": level_overrides,
            },
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        },
        {
            "id": 2,
            "type": "stat",
            "title": "Errors",
            "description": "ERROR and CRITICAL records in the time range.",
            "datasource": dict(_DS),
            "gridPos": _grid(18, 0, 6, 8),
            "targets": [_target(error_count_expr, query_type="instant")],
            "fieldConfig": {
                "defaults": {
                    "unit": "short",
                    "noValue": "0",
                    "thresholds": {
                        "mode": "absolute",
                        "steps": [{"color": "green", "value": None}, {"color": "red", "value": 1}],
                    },
                },
                "overrides": [],
            },
            "options": {"colorMode": "background", "reduceOptions": {"calcs": ["lastNotNull"]}},
        },
        {
            "id": 3,
            "type": "table",
            "title": "Canonical lines",
            "description": "One line per unit of work and per run (event_type stage_complete "
            "or stage_failure).",
            "datasource": dict(_DS),
            "gridPos": _grid(0, 8, 24, 9),
            "targets": [_target(_logs(pipeline=_CANONICAL))],
            "transformations": [
                {
                    "id": "extractFields",
                    "options": {"source": "Line", "format": "json", "replace": True, "keepTime": False},
                },
                {
                    "id": "filterFieldsByName",
                    "options": {"include": {"names": list(CANONICAL_COLUMNS)}},
                },
                {
                    "id": "organize",
                    "options": {"indexByName": {n: i for i, n in enumerate(CANONICAL_COLUMNS)}},
                },
            ],
            "fieldConfig": {
                "defaults": {"custom": {"filterable": True}},
                "overrides": [
                    {
                        "matcher": {"id": "byName", "options": "status"},
                        "properties": [
                            {
                                "id": "mappings",
                                "value": [
                                    {
                                        "type": "value",
                                        "options": {
                                            "success": {"color": "green", "index": 0},
                                            "fail": {"color": "red", "index": 1},
                                        },
                                    }
                                ],
                            },
                            {"id": "custom.cellOptions", "value": {"type": "color-text"}},
                        ],
                    }
                ],
            },
            "options": {"showHeader": True, "sortBy": [{"displayName": "timestamp", "desc": True}]},
        },
        {
            "id": 4,
            "type": "logs",
            "title": "Errors (lines)",
            "datasource": dict(_DS),
            "gridPos": _grid(0, 17, 24, 8),
            "targets": [_target(_logs(", " + _ERROR_LEVELS))],
            "options": {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending",
                        "enableLogDetails": True, "prettifyLogMessage": False},
        },
        {
            "id": 5,
            "type": "logs",
            "title": "All lines",
            "datasource": dict(_DS),
            "gridPos": _grid(0, 25, 24, 10),
            "targets": [_target(_logs())],
            "options": {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending",
                        "enableLogDetails": True, "prettifyLogMessage": False},
        },
    ]  # fmt: skip


def build_dashboard(*, title: str = "AIND logs", uid: str = "aind-logs") -> dict[str, Any]:
    """Build the dashboard.

    Args:
        title: the dashboard's title.
        uid: its uid (1 to 40 letters, digits, ``-`` or ``_``); provisioning the same
            uid again updates the dashboard instead of adding a copy.

    Returns:
        The dashboard JSON model, ready for ``json.dumps`` and Grafana provisioning
        (no ``id``, no ``__inputs``: the data source is the ``datasource`` variable).

    Raises:
        ValueError: an empty title or a uid Grafana would refuse.
    """
    if not isinstance(title, str) or not title.strip():
        raise ValueError("title: expected a non-empty string")
    if not (
        isinstance(uid, str)
        and 0 < len(uid) <= 40
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in uid)
    ):
        raise ValueError(f"uid: expected 1-40 letters, digits, '-' or '_', got {uid!r}")
    return {
        "uid": uid,
        "title": title,
        "description": "Logs sent by aind-log-utils' Loki sink.",
        "tags": ["aind", "logs", "loki"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "refresh": "",
        "liveNow": False,
        "fiscalYearStartMonth": 0,
        "links": [],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": _variables()},
        "panels": _panels(),
    }


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every LogQL query of a dashboard: the panels' and the variables' streams.

    Args:
        dashboard: a dashboard from :func:`build_dashboard`.

    Returns:
        The queries, panels first, with Grafana's variables left in.
    """
    queries = [t["expr"] for p in dashboard.get("panels", []) for t in p.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict) and query.get("stream"):
            queries.append(str(query["stream"]))
    return queries
