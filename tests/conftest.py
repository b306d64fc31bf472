"""Shared fixtures: a tiny English corpus, tiny tokenizers trained once per session (one per architecture),
and seeded RNGs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from plmkit.config import TokenizerConfig, TokenizerTrainConfig
from plmkit.tokenization import train_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Test models are tiny: one intra-op thread is as fast, and does not crawl on a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _squash(text: str) -> str:
    return "".join(text.split())


@pytest.fixture
def squash():
    """Text without whitespace, to find a message in stderr that rich wrapped (it breaks long paths mid-word)."""
    return _squash


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

TINY = FIXTURES / "tiny.txt"
# arch -> (algorithm, vocab_size); byte-level bpe needs >= 256 + the special tokens
TOKENIZERS = {"bert": ("wordpiece", 300), "roberta": ("bpe", 300), "gpt2": ("bpe", 300), "t5": ("unigram", 300)}
TOKENIZER_OF = {"bert": "bert", "roberta": "roberta", "gpt2": "gpt2", "llama": "gpt2",  # llama shares gpt2's specials
                "electra": "bert",  # electra has bert's special tokens
                "t5": "t5"}  # span_corruption adds its sentinels to this one


def tiny_docs_text() -> list[str]:
    return [p.strip() for p in TINY.read_text(encoding="utf-8").split("\n\n") if p.strip()]


@pytest.fixture(scope="session")
def tokenizers_by_arch(tmp_path_factory):
    """arch -> tokenizer (vocab 300) for bert, roberta, gpt2 and llama."""
    docs = tiny_docs_text()
    trained = {}
    for arch, (algorithm, vocab) in TOKENIZERS.items():
        cfg = TokenizerConfig(train=TokenizerTrainConfig(algorithm=algorithm, vocab_size=vocab, min_frequency=2))
        trained[arch] = train_tokenizer(docs, cfg, arch, tmp_path_factory.mktemp(f"tok-{arch}"), show_progress=False)
    return {arch: trained[TOKENIZER_OF[arch]] for arch in TOKENIZER_OF}


@pytest.fixture(scope="session")
def bert_tokenizer(tokenizers_by_arch):
    return tokenizers_by_arch["bert"]


@pytest.fixture(scope="session")
def gpt2_tokenizer(tokenizers_by_arch):
    return tokenizers_by_arch["gpt2"]


@pytest.fixture(scope="session")
def tiny_encoder(tokenizers_by_arch, tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with the session's WordPiece tokenizer, as a folder: what
    init.from / --model takes."""
    from plmkit.config import ModelConfig
    from plmkit.models import build_model

    tokenizer = tokenizers_by_arch["bert"]
    torch.manual_seed(0)
    cfg = ModelConfig(arch="bert", hidden_size=32, num_layers=2, num_heads=2, max_position_embeddings=128,
                      dropout=0.0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    build_model(cfg, tokenizer, "masked_lm").save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
