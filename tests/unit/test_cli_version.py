"""plm --version: what a bug report needs, without running a command."""

from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

import plmkit
from plmkit.cli import app


def test_version_names_plmkit_and_the_libraries_that_decide_its_results():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    line = result.stdout.strip()
    assert line.startswith(f"plmkit {plmkit.__version__} (") and "\n" not in line
    for name in ("torch", "transformers", "tokenizers", "accelerate", "peft"):
        assert f"{name} {version(name)}" in line


def test_version_needs_no_command():
    assert CliRunner().invoke(app, ["--version", "pretrain"]).exit_code == 0  # eager: it answers before the command
