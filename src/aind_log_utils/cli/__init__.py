"""``aind-log``: read, check, push and summarise the logs and runs this library writes.

Commands: ``view``, ``validate``, ``push``, ``summary``, ``runs`` and
``grafana-dashboard``; ``aind-log COMMAND --help`` shows each one's options and
examples. Built on click, with rich for what a person reads; both are imported only
when the command line runs, never by ``import aind_log_utils``.

Every error is one line on stderr and a non-zero exit code, never a traceback:

====  =======================================================================
code  meaning
====  =======================================================================
0     done (``view`` exits 0 even when some lines are not JSON)
1     the answer is no: ``validate`` found problems, ``push`` did not deliver
      every record, an input file is damaged (``summary``, ``validate``)
2     a usage error: a bad option or value, a missing or unreadable file, a
      bad URL
70    a bug in ``aind-log`` itself (``AIND_LOG_DEBUG=1`` shows the traceback)
130   interrupted (Ctrl-C), except ``view -f``, which stops that way with 0
====  =======================================================================
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import click

from ._common import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    quiet_stdout,
)
from ._dashboard import grafana_dashboard
from ._push import push
from ._runs import runs
from ._summary import summary
from ._validate import validate
from ._view import view

__all__ = [
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_USAGE",
    "cli",
    "main",
    "run",
]

_CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _version() -> str:
    from .. import __version__

    return __version__


@click.group(context_settings=_CONTEXT)
@click.version_option(_version(), "--version", prog_name="aind-log", message="%(prog)s %(version)s")
def cli() -> None:
    """Read, check, push and summarise the logs and runs aind-log-utils writes.

    \b
    Examples:
      aind-log view /results/logs/my-capsule.jsonl --level WARNING
      aind-log validate log.jsonl
      aind-log push log.jsonl --loki-url http://eng-logtools:3100
      aind-log summary runs/log_20260209_211924
      aind-log runs runs/
      aind-log grafana-dashboard > aind-logs.json

    \b
    Exit codes: 0 done; 1 the answer is no (validate found problems, push did
    not deliver everything, a file is damaged); 2 a bad option, file or URL;
    70 a bug in aind-log; 130 interrupted.
    """  # noqa: D301 - click needs the \b (backspace) paragraph marks


for _command in (view, validate, push, summary, runs, grafana_dashboard):
    cli.add_command(_command)


def _command_path(args: Sequence[str]) -> str:
    for arg in args:
        if arg in cli.commands:
            return f"aind-log {arg}"
    return "aind-log"


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def run(argv: Sequence[str] | None = None) -> int:
    """Run ``aind-log`` with these arguments and return its exit code; never raises.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code (see the module's table).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    where = _command_path(args)
    try:
        result = cli.main(args=args, prog_name="aind-log", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()
        return EXIT_USAGE
    except click.UsageError as exc:
        if exc.ctx is not None:
            where = exc.ctx.command_path
        hint = f" (see '{where} --help')"
        click.echo(f"{where}: error: {_one_line(exc.format_message())}{hint}", err=True)
        return EXIT_USAGE
    except click.ClickException as exc:
        click.echo(f"{where}: error: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(f"{where}: interrupted", err=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader (head, less) is gone: stop quietly
        quiet_stdout()
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("AIND_LOG_DEBUG"):
            raise
        click.echo(
            f"{where}: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
            "(a bug: please report it; AIND_LOG_DEBUG=1 shows the traceback)",
            err=True,
        )
        return EXIT_INTERNAL
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
    return result if isinstance(result, int) else EXIT_OK


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``aind-log`` console script: run and exit with the command's code.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).
    """
    sys.exit(run(argv))
