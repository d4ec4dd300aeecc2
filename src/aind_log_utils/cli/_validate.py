"""``aind-log validate``: check every line of JSONL files against the AIND standard."""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from ._checks import check_record
from ._common import EXIT_OK, EXIT_PROBLEMS, LineReader, escape, expand_inputs, stops_on_broken_pipe
from ._output import dumps_json

__all__ = ["validate"]


def _line_problems(
    raw: bytes, complete: bool, require_acquisition: bool
) -> list[tuple[str | None, str]]:
    """The problems of one line, as ``(field or None, sentence)`` pairs."""
    if not raw.strip():
        return [(None, "empty line (JSON Lines holds one record per line)")]
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not complete:
            return [(None, "truncated last line (no newline, not JSON)")]
        return [(None, f"not JSON ({exc})")]
    if not isinstance(value, dict):
        kind = "an array" if isinstance(value, list) else type(value).__name__
        return [(None, f"not a JSON object (got {kind})")]
    found: list[tuple[str | None, str]] = []
    for problem in check_record(value, require_acquisition=require_acquisition):
        field, _, text = problem.partition(": ")
        found.append((field, problem) if text else (None, problem))
    return found


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, metavar="FILE...")
@click.option(
    "--acquisition", is_flag=True,
    help="Require acquisition_name on every record (for the logs of an acquisition).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report for machines.")
@stops_on_broken_pipe
def validate(paths: tuple[str, ...], acquisition: bool, as_json: bool) -> int:
    """Check every line against the AIND logging standard.

    Each record must be a JSON object with timestamp (ISO 8601 UTC), level (DEBUG,
    INFO, WARNING, ERROR or CRITICAL) and message; the standard fields present
    must have the standard's types and forms (acquisition_name is
    <subject_id>_<YYYY-MM-DD>_<HH-MM-SS>, specimen_id contains the subject_id,
    lineno is an integer, the ids are strings). Each problem is printed as
    FILE:LINE: PROBLEM; a count follows on stderr.

    \b
    Examples:
      aind-log validate /results/logs/my-capsule.jsonl
      aind-log validate --acquisition run_dir/log.jsonl
      aind-log validate logs/*.jsonl.gz --json | jq '.problems[].problem'

    \b
    Exit codes: 0 every line is valid; 1 problems were found (or a file is
    damaged); 2 a bad option or a missing file.
    """  # noqa: D301 - click needs the \b (backspace) paragraph marks
    files = expand_inputs(paths)
    readers = [LineReader(path) for path in files]
    problems: list[dict[str, Any]] = []
    summaries: list[dict[str, Any]] = []
    bad_lines = 0
    out = sys.stdout
    for path, reader in zip(files, readers, strict=True):
        lines = records = file_problems = 0
        with reader:
            for line in reader:
                lines += 1
                found = _line_problems(line.raw, line.complete, acquisition)
                if not found:
                    records += 1
                    continue
                bad_lines += 1
                file_problems += len(found)
                for field, text in found:
                    if as_json:
                        problems.append(
                            {"file": path, "line": line.lineno, "field": field, "problem": text}
                        )
                    else:
                        out.write(f"{escape(path)}:{line.lineno}: {escape(text)}\n")
        if reader.error:
            file_problems += 1
            if as_json:
                problems.append(
                    {"file": path, "line": None, "field": None, "problem": reader.error}
                )
            else:
                out.write(f"{escape(path)}: {reader.error}\n")
        summaries.append(
            {"file": path, "lines": lines, "valid_lines": records, "problems": file_problems}
        )
    total_lines = sum(s["lines"] for s in summaries)
    valid = not problems and all(s["problems"] == 0 for s in summaries)
    if as_json:
        out.write(
            dumps_json(
                {"valid": valid, "lines": total_lines, "files": summaries, "problems": problems}
            )
            + "\n"
        )
    else:
        out.flush()
        count = sum(s["problems"] for s in summaries)
        where = f"{total_lines:,} line(s) in {len(files)} file(s)"
        if valid:
            click.echo(f"valid: {where}", err=True)
        else:
            click.echo(f"{count:,} problem(s) in {bad_lines:,} of {where}", err=True)
    return EXIT_OK if valid else EXIT_PROBLEMS
