"""End-to-end fixtures: run the real `python -m plmkit` in a subprocess, from the repository root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **extra}
    env.pop("PLMKIT_DEBUG", None)
    return env


@pytest.fixture(scope="session")
def plm() -> Callable[..., subprocess.CompletedProcess]:
    """plm("pretrain", cfg, "-q", ..., env={...}) -> the finished `python -m plmkit ...` process.

    `launcher` replaces `python -m` (e.g. with torchrun's arguments); `env` is added to this process's."""

    def run(*args: str | Path, timeout: int = 300, env: dict[str, str] | None = None,
            launcher: list[str] | None = None) -> subprocess.CompletedProcess:
        cmd = [*(launcher or [sys.executable, "-m"]), "plmkit", *map(str, args)]
        return subprocess.run(cmd, check=False, cwd=ROOT, env=_env(**(env or {})), capture_output=True,
                              text=True, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def last_json() -> Callable[[str], dict]:
    """The command's result: its last stdout line, parsed as one JSON object."""

    def parse(stdout: str) -> dict:
        lines = stdout.strip().splitlines()
        assert lines, "no output on stdout"
        result = json.loads(lines[-1])
        assert isinstance(result, dict)
        return result

    return parse


@pytest.fixture(scope="session")
def e2e_cache(tmp_path_factory) -> Path:
    """data.cache_dir shared by the end-to-end runs of one session (never ~/.cache)."""
    return tmp_path_factory.mktemp("e2e-cache")
