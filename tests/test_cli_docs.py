"""The docs site: generated pages are current, the CLI page covers every option.

``mkdocs build --strict`` is also run here when mkdocs is installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_the_fields_page_is_what_the_field_model_generates() -> None:
    result = subprocess.run(
        [sys.executable, str(DOCS / "gen_fields.py"), "--check"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_fields_page_lists_every_standard_field_with_its_loki_role() -> None:
    from aind_log_utils._fields import FIELD_NAMES
    from aind_log_utils._loki import LABEL_FIELDS, METADATA_FIELDS

    page = (DOCS / "fields.md").read_text(encoding="utf-8")
    for name in FIELD_NAMES:
        row = next(line for line in page.splitlines() if line.startswith(f"| `{name}` |"))
        role = row.rstrip(" |").rsplit("| ", 1)[1]
        expected = (
            "label" if name in LABEL_FIELDS
            else "structured metadata" if name in METADATA_FIELDS
            else "line only"
        )  # fmt: skip
        assert role == expected, name
        assert f"`AIND_{name.upper()}`" in row


def test_the_cli_page_documents_every_command_and_option() -> None:
    from aind_log_utils.cli import cli

    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## (\S+)[^\n]*\n(.*?)(?=^## |\Z)", page, flags=re.M | re.S))
    for name, command in cli.commands.items():
        assert name in sections, f"no section for {name}"
        for param in command.params:
            if isinstance(param, click.Option):
                for flag in param.opts + param.secondary_opts:
                    if flag.startswith("--") and flag != "--help":
                        assert f"`{flag}" in sections[name] or f" {flag}" in sections[name], (
                            f"{name} {flag}"
                        )
    for code in ("0", "1", "2", "70", "130"):
        assert f"| {code} |" in sections["Exit"]


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed")
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
         "-d", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert 'id="aind_log_utils.setup_logging"' in api  # the reference came from the docstrings
