"""``aind-log grafana-dashboard``: a provisionable dashboard whose queries fit the sink.

The queries are parsed here by a small LogQL reader (the subset the dashboard uses,
with Loki's rules: fully anchored regexes, at least one matcher that cannot match
the empty string) and run against what the Loki sink really stored in the test
receiver. With node and Grafana's own LogQL grammar (``@grafana/lezer-logql``)
installed where ``LEZER_LOGQL_DIR`` points, they are also parsed by that grammar.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from aind_log_utils._grafana import (
    METADATA_FIELDS,
    STREAM_LABELS,
    build_dashboard,
    dashboard_queries,
)
from test_cli_common import assert_one_line_error, record, run_cli, stamp, write_jsonl

#: What Grafana substitutes for "All" in each variable, and a time range.
ALL = {
    "$service_name": ".+",
    "$rig_id": ".*",
    "$subject_id": ".*",
    "$__interval": "1m",
    "$__range": "1h",
}
_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>=~|!~|!=|=)|(?P<punct>[{}()\[\],|])'
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*|\d+[smhd]))"
)
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass
class Query:
    """A parsed query of the dashboard's shape."""

    selector: list[tuple[str, str, str]] = field(default_factory=list)
    filters: list[tuple[str, str, str]] = field(default_factory=list)
    by: list[str] = field(default_factory=list)
    metric: str | None = None
    range: str | None = None


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text.rstrip()):
            match = _TOKEN.match(text, pos)
            assert match is not None and match.end() > pos, f"bad token at {pos}: {text[pos:]!r}"
            kind = match.lastgroup
            assert kind is not None
            self.tokens.append((kind, match.group(kind)))
            pos = match.end()
        self.i = 0

    def take(self, expected: str | None = None) -> str:
        assert self.i < len(self.tokens), f"unexpected end, wanted {expected}"
        value = self.tokens[self.i][1]
        assert expected is None or value == expected, f"wanted {expected!r}, got {value!r}"
        self.i += 1
        return value

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def matcher(self) -> tuple[str, str, str]:
        name = self.take()
        assert _LABEL_NAME.match(name), name
        op = self.take()
        assert op in ("=", "!=", "=~", "!~"), op
        raw = self.take()
        assert raw.startswith('"'), raw
        value = json.loads(raw)
        if "~" in op:
            re.compile(value)
        return name, op, value

    def log_query(self, query: Query) -> None:
        self.take("{")
        query.selector.append(self.matcher())
        while self.peek() == ",":
            self.take(",")
            query.selector.append(self.matcher())
        self.take("}")
        while self.peek() == "|":
            self.take("|")
            query.filters.append(self.matcher())

    def parse(self) -> Query:
        query = Query()
        if self.peek() == "{":
            self.log_query(query)
        else:
            self.take("sum")
            if self.peek() == "by":
                self.take("by")
                self.take("(")
                query.by.append(self.take())
                while self.peek() == ",":
                    self.take(",")
                    query.by.append(self.take())
                self.take(")")
            self.take("(")
            query.metric = self.take("count_over_time")
            self.take("(")
            self.log_query(query)
            self.take("[")
            query.range = self.take()
            assert re.fullmatch(r"\d+[smhd]", query.range)
            self.take("]")
            self.take(")")
            self.take(")")
        assert self.i == len(self.tokens), f"left over: {self.tokens[self.i :]}"
        return query


def parse(expr: str, values: dict[str, str] = ALL) -> Query:
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    query = _Parser(expr).parse()
    # Loki: "queries require at least one regexp or equality matcher that does not
    # have an empty-compatible value"
    assert any(not _matches(op, value, "") for _, op, value in query.selector), expr
    return query


def _matches(op: str, wanted: str, actual: str) -> bool:
    if op == "=":
        return actual == wanted
    if op == "!=":
        return actual != wanted
    found = re.fullmatch(wanted, actual) is not None  # Loki anchors its regexes
    return found if op == "=~" else not found


def selects(query: Query, labels: dict[str, str], metadata: dict[str, str]) -> bool:
    return all(_matches(op, v, labels.get(n, "")) for n, op, v in query.selector) and all(
        _matches(op, v, metadata.get(n, "")) for n, op, v in query.filters
    )


# -- the dashboard itself ------------------------------------------------------------


def _dashboard_from_cli(*args: str) -> dict[str, Any]:
    result = run_cli("grafana-dashboard", *args)
    assert result.returncode == 0, result.stderr
    data = orjson.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def test_the_dashboard_is_provisionable_json_with_the_variables_asked_for() -> None:
    dash = _dashboard_from_cli()
    assert dash == orjson.loads(orjson.dumps(build_dashboard()))
    assert "id" not in dash and "__inputs" not in dash  # provisioning takes it as is
    assert dash["uid"] == "aind-logs" and dash["title"] == "AIND logs"
    assert isinstance(dash["schemaVersion"], int)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "loki"
    for name in ("service_name", "rig_id", "subject_id"):
        assert variables[name]["includeAll"] is True, name
        assert variables[name]["current"]["value"] in ("$__all", ["$__all"])
    assert variables["service_name"]["query"]["label"] == "service_name"
    assert variables["rig_id"]["query"]["label"] == "rig_id"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = {p["title"]: p for p in dash["panels"]}
    assert {"Log volume by level", "Errors", "Canonical lines"} <= set(titles)
    assert titles["Canonical lines"]["type"] == "table"
    for panel in dash["panels"]:
        assert panel["datasource"] == {"type": "loki", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "loki", "uid": "${datasource}"}
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24


def test_title_uid_and_output_file(tmp_path: Path) -> None:
    out = tmp_path / "dash.json"
    result = run_cli("grafana-dashboard", "--title", "Ephys", "--uid", "ephys-logs", "-o", out)
    assert result.returncode == 0 and result.stdout == ""
    dash = orjson.loads(out.read_bytes())
    assert (dash["title"], dash["uid"]) == ("Ephys", "ephys-logs")
    assert "--uid" in assert_one_line_error(run_cli("grafana-dashboard", "--uid", "no spaces"))
    assert "--title" in assert_one_line_error(run_cli("grafana-dashboard", "--title", " "))


def test_every_query_parses_and_uses_only_what_the_sink_sends() -> None:
    queries = dashboard_queries(build_dashboard())
    assert len(queries) >= 5
    for expr in queries:
        query = parse(expr)
        assert {n for n, _, _ in query.selector} <= set(STREAM_LABELS), expr
        assert {n for n, _, _ in query.filters} <= set(METADATA_FIELDS), expr
        assert set(query.by) <= set(STREAM_LABELS), expr
        # a chosen value works too (Grafana puts a regex-escaped value or (a|b))
        parse(expr, {**ALL, "$service_name": "(capsule|rig)", "$subject_id": "123456"})


def test_the_module_lists_match_the_loki_sink() -> None:
    from aind_log_utils import _loki as loki

    event = record(
        "m",
        hostname="vm",
        rig_id="frg_1_a",
        instrument_id="MESO1",
        pipeline_name="p",
        process_name="capsule",
        software_name="sw",
        software_version="1.0",
        subject_id="123456",
        acquisition_name="123456_2026-01-01_23-00-00",
        asset_name="ecephys_123456_2026-01-01_23-00-00",
        log_session="abcdef0",
        specimen_id="123456_001",
        user_id="me",
        capsule_id="c",
        computation_id="k",
        event_type="stage_complete",
    )
    assert set(loki.loki_labels(event, "capsule", {})) == set(STREAM_LABELS)
    assert set(loki.loki_metadata(event)) == set(METADATA_FIELDS)


def test_the_queries_select_the_right_lines_among_what_the_sink_stored(tmp_path: Path) -> None:
    from aind_log_utils.testing import LokiReceiver

    cache_env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    lines = [
            record("Starting", process_name="capsule", rig_id="frg_1_a", subject_id="1",
                   event_type="stage_start"),
            record("work", process_name="capsule", rig_id="frg_1_a", subject_id="1"),
            record("oops", "ERROR", process_name="capsule", rig_id="frg_1_a", subject_id="1"),
            record("Session recorded", process_name="capsule", rig_id="frg_1_a", subject_id="2",
                   status="success", event_type="stage_complete"),
            record("no rig, no subject", "CRITICAL", process_name="other"),
            record("Stopping", "ERROR", process_name="other", status="fail",
                   event_type="stage_failure"),
    ]  # fmt: skip
    for i, line in enumerate(lines):
        line["timestamp"] = stamp(-60 + i)  # the file's order is the time order
    path = write_jsonl(tmp_path / "capsule.jsonl", lines)
    with LokiReceiver() as loki:
        result = run_cli("push", path, "--loki-url", loki.url, "--no-progress", env=cache_env)
        assert result.returncode == 0, result.stderr
        entries = loki.entries()
    assert len(entries) == 6
    stored = [
        (e.labels, e.metadata or {}, orjson.loads(e.line)["message"])
        for e in sorted(entries, key=lambda e: e.ts_ns)
    ]

    def run(panel_title: str, **chosen: str) -> list[str]:
        values = {**ALL, **{f"${k}": v for k, v in chosen.items()}}
        panel = next(p for p in build_dashboard()["panels"] if p["title"] == panel_title)
        query = parse(panel["targets"][0]["expr"], values)
        for labels, _, _ in stored:
            assert set(query.by) <= set(labels)  # every stream has the grouping label
        return [m for labels, meta, m in stored if selects(query, labels, meta)]

    everything = [m for _, _, m in stored]
    assert run("All lines") == everything
    assert run("Log volume by level") == everything
    assert run("Errors") == ["oops", "no rig, no subject", "Stopping"]
    assert run("Errors (lines)") == ["oops", "no rig, no subject", "Stopping"]
    assert run("Canonical lines") == ["Session recorded", "Stopping"]
    assert run("All lines", rig_id="frg_1_a") == ["Starting", "work", "oops", "Session recorded"]
    assert run("All lines", subject_id="1") == ["Starting", "work", "oops"]
    assert run("Errors", service_name="other") == ["no rig, no subject", "Stopping"]
    # the rig_id variable's own query lists the rigs of the chosen services
    rig_stream = next(
        v["query"]["stream"]
        for v in build_dashboard()["templating"]["list"]
        if v["name"] == "rig_id"
    )
    rigs = {
        labels.get("rig_id")
        for labels, meta, _ in stored
        if selects(parse(rig_stream), labels, meta)
    }
    assert rigs == {"frg_1_a", None}


def test_grafanas_own_logql_grammar_accepts_every_query(tmp_path: Path) -> None:
    lezer = os.environ.get("LEZER_LOGQL_DIR", "")
    node = shutil.which("node")
    if (
        not node
        or not lezer
        or not (Path(lezer) / "node_modules" / "@grafana" / "lezer-logql").is_dir()
    ):
        pytest.skip("needs node and @grafana/lezer-logql under $LEZER_LOGQL_DIR/node_modules")
    script = tmp_path / "check.cjs"
    script.write_text(
        "const { parser } = require('@grafana/lezer-logql');\n"
        "const qs = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
        "console.log(JSON.stringify(qs.map((q) => { let bad = 0;\n"
        "  parser.parse(q).iterate({ enter: (n) => { if (n.type.isError) bad++; } });\n"
        "  return bad; })));\n"
    )
    queries = []
    for expr in dashboard_queries(build_dashboard()):
        for name in sorted(ALL, key=len, reverse=True):
            expr = expr.replace(name, ALL[name])
        queries.append(expr)
    queries.append('{a="b"} | c=~"d" [')  # a broken one, to show the check can fail
    result = subprocess.run(
        [node, str(script)], input=json.dumps(queries), capture_output=True, text=True,
        env={**os.environ, "NODE_PATH": str(Path(lezer) / "node_modules")}, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    errors = json.loads(result.stdout)
    assert errors[:-1] == [0] * (len(queries) - 1), list(zip(queries, errors, strict=True))
    assert errors[-1] > 0
