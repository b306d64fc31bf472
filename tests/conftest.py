"""Shared fixtures: a tiny English corpus, a tiny tokenizer trained once per session, and seeded RNGs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def tiny_corpus() -> Path:
    """About 13 KB of English prose (standard-library docstrings), paragraphs separated by blank lines."""
    return FIXTURES / "tiny.txt"


@pytest.fixture
def tiny_docs(tiny_corpus) -> list[str]:
    return [p.strip() for p in tiny_corpus.read_text(encoding="utf-8").split("\n\n") if p.strip()]


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return tmp_path / "run"
