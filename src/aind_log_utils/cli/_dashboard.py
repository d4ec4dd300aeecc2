"""``aind-log grafana-dashboard``: print the Grafana dashboard for the Loki sink's logs."""

from __future__ import annotations

from pathlib import Path

import click

from .._grafana import build_dashboard
from ._common import EXIT_OK, CliError, stops_on_broken_pipe
from ._output import dumps_json

__all__ = ["grafana_dashboard"]


@click.command("grafana-dashboard")
@click.option("--title", default="AIND logs", show_default=True, help="The dashboard's title.")
@click.option(
    "--uid", default="aind-logs", show_default=True,
    help="The dashboard's uid (provisioning the same uid again updates it).",
)  # fmt: skip
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of standard output.",
)  # fmt: skip
@stops_on_broken_pipe
def grafana_dashboard(title: str, uid: str, output: Path | None) -> int:
    """Print a Grafana dashboard (JSON) for the logs the Loki sink sends.

    Panels: log volume by level, errors (a count and the lines), the canonical
    lines as a table, every line. Variables: the Loki data source, service_name,
    rig_id and subject_id, each with an All option. Grafana provisions the file
    as it is: put it in a folder a dashboard provider reads.

    \b
    Examples:
      aind-log grafana-dashboard > /etc/grafana/dashboards/aind-logs.json
      aind-log grafana-dashboard --title "Ephys rigs" --uid ephys-logs -o ephys.json

    \b
    Exit codes: 0 written; 2 a bad option or an unwritable file.
    """  # noqa: D301 - click needs the \b (backspace) paragraph marks
    try:
        text = dumps_json(build_dashboard(title=title, uid=uid)) + "\n"
    except ValueError as exc:
        raise CliError(f"--{exc}") from None
    if output is None:
        click.echo(text, nl=False)
        return EXIT_OK
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{output}: cannot write: {exc.strerror or exc}") from None
    return EXIT_OK
