"""Training-test fixtures: the debug configs on the tiny corpus, one shard and tokenizer cache per session.

Every run in this folder shares `shared_cache`, so the tokenizer of each debug config is trained once and two
runs of the same config always see the same vocabulary and shards (their losses compare exactly).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from plmkit import load_config
from plmkit.config import RunConfig
from plmkit.training.logging import read_metrics

ROOT = Path(__file__).resolve().parents[3]
DEBUG_CONFIGS = ROOT / "configs" / "debug"
TINY = ROOT / "tests" / "fixtures" / "tiny.txt"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """data.cache_dir for every run in this folder (never ~/.cache)."""
    return tmp_path_factory.mktemp("plm-cache")


@pytest.fixture(scope="session")
def debug_cfg(shared_cache) -> Callable[..., RunConfig]:
    """debug_cfg("mlm", out_dir, "train.max_steps=6", ...) -> configs/debug/mlm.yaml on the tiny corpus."""

    def make(objective: str, out: Path, *overrides: str, cache: Path | None = None) -> RunConfig:
        base = [f"run.output_dir={out}", f"data.cache_dir={cache or shared_cache}",
                f"data.paths={json.dumps([str(TINY)])}"]
        return load_config(DEBUG_CONFIGS / f"{objective}.yaml", [*base, *overrides])

    return make


@pytest.fixture(scope="session")
def metrics() -> Callable[[Path], list[dict]]:
    """metrics(run_dir) -> the rows of run_dir/metrics.jsonl."""
    return lambda run_dir: read_metrics(Path(run_dir) / "metrics.jsonl")

