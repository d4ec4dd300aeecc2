"""``aind-log push``: backfill JSONL files into Loki, or replay the Loki sink's spool.

A file is pushed through the same :class:`~aind_log_utils._loki.LokiSink` the live
sink uses, so every line gets the same stream labels, structured metadata and
timestamp, and the delivery engine's batching and retries. Pushing a file twice
stores nothing twice: Loki drops an entry identical to one it has (same stream,
timestamp and line).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from ._common import EXIT_OK, EXIT_PROBLEMS, CliError, expand_inputs
from ._pushing import Progress, SinkOptions, count_spool, drain, make_sink, push_file, totals

__all__ = ["push"]


def _check_url(url: str | None) -> str:
    if not url:
        raise CliError("--loki-url is required (or set AIND_LOKI_URL)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"--loki-url: {url!r} is not an http(s) URL (e.g. http://eng-logtools:3100)")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise CliError(f"--loki-url: {url!r} has a bad port") from None
    return url


def _labels(items: tuple[str, ...]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        for pair in item.split(","):
            if not pair.strip():
                continue
            name, sep, value = pair.partition("=")
            if not sep or not name.strip():
                raise CliError(f"--label: expected name=value, got {pair!r}")
            labels[name.strip()] = value.strip()
    return labels


def default_spool_dir(url: str, tenant_id: str | None) -> Path:
    """The live Loki sink's spool directory for this Loki URL and tenant."""
    from .._loki import loki_spool_dir, normalize_push_url

    return loki_spool_dir(normalize_push_url(url)[0], tenant_id)


def service_name_for(path: str) -> str:
    """The ``service_name`` for a file's records that name no program themselves.

    The live sink names a program without ``process_name`` or ``software_name``
    after its script, and ``setup_logging`` names the log file after the program,
    so the file's name (without ``.jsonl`` / ``.gz``) is the same name.
    """
    if path == "-":
        return "unknown_service"  # what Loki itself calls a stream without a name
    name = Path(path).name
    for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".log"):
        name = name.removesuffix(suffix)
    return name or "unknown_service"


@click.command("push")
@click.argument("paths", nargs=-1, metavar="FILE...")
@click.option(
    "--loki-url", envvar="AIND_LOKI_URL", metavar="URL",
    help="Loki's base URL, e.g. http://eng-logtools:3100 (env AIND_LOKI_URL).",
)  # fmt: skip
@click.option(
    "--spool", "from_spool", is_flag=True,
    help="Replay what the Loki sink's spool holds (records a program could not send).",
)  # fmt: skip
@click.option(
    "--spool-dir", type=click.Path(file_okay=False, path_type=Path),
    help="The spool directory (default: the live Loki sink's for this URL and tenant).",
)  # fmt: skip
@click.option(
    "--service-name", metavar="NAME",
    help="service_name for records without process_name or software_name (default: the "
    "file's name without .jsonl, as the live sink names the program).",
)  # fmt: skip
@click.option(
    "--label", "label_items", multiple=True, metavar="NAME=VALUE", envvar="AIND_LOKI_LABELS",
    help="A static stream label, as the live sink's loki_labels (repeat; env AIND_LOKI_LABELS "
    "as name=value,name=value).",
)  # fmt: skip
@click.option(
    "--tenant-id", envvar="AIND_LOKI_TENANT_ID", help="X-Scope-OrgID (env AIND_LOKI_TENANT_ID)."
)
@click.option(
    "--username", envvar="AIND_LOKI_USERNAME", help="Basic auth user (env AIND_LOKI_USERNAME)."
)
@click.option(
    "--password", envvar="AIND_LOKI_PASSWORD",
    help="Basic auth password; prefer the env AIND_LOKI_PASSWORD to the command line.",
)  # fmt: skip
@click.option(
    "--bearer-token", envvar="AIND_LOKI_BEARER_TOKEN",
    help="Bearer token; prefer the env AIND_LOKI_BEARER_TOKEN to the command line.",
)  # fmt: skip
@click.option("--no-verify", is_flag=True, help="Do not verify the server's TLS certificate.")
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False),
    help="Verify TLS with this CA bundle.",
)
@click.option(
    "--timeout", "timeout_s", default=120.0, show_default=True, type=click.FloatRange(min=0.1),
    help="Give up after this many seconds in which Loki took nothing (the engine retries "
    "with backoff until then).",
)  # fmt: skip
@click.option(
    "--progress/--no-progress", default=None,
    help="Show a progress bar (default: when stderr is a terminal).",
)  # fmt: skip
def push(  # noqa: PLR0917 - click passes every option
    paths: tuple[str, ...],
    loki_url: str | None,
    from_spool: bool,
    spool_dir: Path | None,
    service_name: str | None,
    label_items: tuple[str, ...],
    tenant_id: str | None,
    username: str | None,
    password: str | None,
    bearer_token: str | None,
    no_verify: bool,
    ca_bundle: str | None,
    timeout_s: float,
    progress: bool | None,
) -> int:
    """Push JSONL log files into Loki, as the live Loki sink would have.

    Each record gets the live sink's stream labels (service_name, level,
    hostname, rig_id, ...) and structured metadata (subject_id, acquisition_name,
    ...); its timestamp is the record's. Batches are retried with backoff while
    Loki is away or answers 429. Pushing a file twice stores nothing twice (Loki
    drops identical entries), so a push that gave up can simply be run again.
    Lines that are not JSON are skipped and counted. With --spool, the records
    that programs could not send (the Loki sink's spool) are sent instead.

    \b
    Examples:
      aind-log push /results/logs/my-capsule.jsonl --loki-url http://eng-logtools:3100
      AIND_LOKI_URL=http://eng-logtools:3100 aind-log push logs/*.jsonl.gz
      aind-log push run_dir/ --loki-url http://localhost:3100 --label team=ephys
      aind-log push --spool --loki-url http://eng-logtools:3100

    \b
    Exit codes: 0 every record was delivered; 1 some were not (refused by Loki,
    or Loki took nothing for --timeout seconds); 2 a bad option, file or URL.
    """  # noqa: D301 - click needs the \b (backspace) paragraph marks
    url = _check_url(loki_url)
    if from_spool and paths:
        raise CliError("--spool replays the spool: give no FILE with it")
    if not from_spool and not paths:
        raise CliError("give a FILE to push, or --spool")
    verify: bool | str = ca_bundle if ca_bundle else not no_verify
    options = SinkOptions(
        url=url,
        labels=_labels(label_items),
        tenant_id=tenant_id or None,
        username=username or None,
        password=password or None,
        bearer_token=bearer_token or None,
        verify=verify,
    )
    bar = Progress(progress)
    if from_spool:
        return _replay_spool(
            options, spool_dir or default_spool_dir(url, tenant_id or None), timeout_s, bar
        )
    files = expand_inputs(paths)
    results: list[Mapping[str, Any]] = []
    for path in files:
        program = service_name or service_name_for(path)
        results.append(push_file(path, options, program=program, timeout_s=timeout_s, bar=bar))
    bar.stop()
    ok = True
    for result in results:
        click.echo(_describe(result))
        ok = ok and result["delivered"] == result["records"] and not result["gave_up"]
    return EXIT_OK if ok else EXIT_PROBLEMS


def _describe(result: Mapping[str, Any]) -> str:
    text = (
        f"{result['path']}: {result['delivered']:,} of {result['records']:,} record(s) "
        f"delivered to Loki"
    )
    extras = []
    if result["retried"]:
        extras.append(f"{result['retried']} attempt(s) retried")
    if result["skipped"]:
        extras.append(f"{result['skipped']:,} line(s) not JSON skipped")
    if result["no_timestamp"]:
        extras.append(f"{result['no_timestamp']:,} record(s) without a readable timestamp skipped")
    for reason, count in result["rejected"].items():
        extras.append(f"{count:,} refused by Loki ({reason})")
    for reason, count in result["dropped"].items():
        extras.append(f"{count:,} not sent ({reason})")
    if result["damaged"]:
        extras.append(result["damaged"])
    if extras:
        text += "; " + "; ".join(extras)
    if result["gave_up"]:
        text += (
            f". Loki took nothing for {result['timeout_s']:g}s: gave up after line "
            f"{result['lines']:,}; push the file again later (nothing is stored twice)"
        )
    return text


def _replay_spool(options: SinkOptions, spool_dir: Path, timeout_s: float, bar: Progress) -> int:
    if not spool_dir.is_dir():
        click.echo(f"the spool is empty ({spool_dir} does not exist)")
        return EXIT_OK
    claimed, items = count_spool(spool_dir)
    if not claimed:
        click.echo(f"the spool is empty ({spool_dir})")
        return EXIT_OK
    bar.start(items, f"spool ({len(claimed)} file(s))")
    sink = make_sink(options, program="aind-log", spool_dir=spool_dir, replay=True)
    mark = f".claimed-{claimed[0].name.split('.claimed-', 1)[1].rsplit('-', 1)[0]}-"

    def replayed() -> bool:
        # A claimed file is deleted once every record in it was taken (or refused).
        time.sleep(0.1)
        return not any(mark in name for name in os.listdir(spool_dir))

    def position() -> float:
        counts = totals(sink.counters())
        return float(counts["replayed"] + sum(counts["rejected"].values()))

    try:
        gave_up = not drain(sink, bar, timeout_s, done=replayed, completed=position)
    finally:
        sink.close(0.0)
        bar.stop()
    counts = totals(sink.counters())
    text = (
        f"{counts['replayed']:,} of {items:,} spooled record(s) delivered to Loki from {spool_dir}"
    )
    for reason, count in counts["rejected"].items():
        text += f"; {count:,} refused by Loki ({reason})"
    if gave_up:
        text += f". Loki took nothing for {timeout_s:g}s: the rest stays in the spool"
    click.echo(text)
    return EXIT_OK if not gave_up and not counts["rejected"] else EXIT_PROBLEMS
