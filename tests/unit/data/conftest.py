"""Data-test fixtures: a small WordPiece tokenizer (built here, not by plmkit.tokenization) and a config."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from plmkit.config import DataConfig

TINY = Path(__file__).parents[2] / "fixtures" / "tiny.txt"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    """WordPiece, vocab 300, trained once per session on the tiny corpus."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=SPECIALS)
    tok.train_from_iterator(TINY.read_text(encoding="utf-8").split("\n\n"), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]",
                                   cls_token="[CLS]", pad_token="[PAD]", mask_token="[MASK]")


@pytest.fixture
def data_cfg(tiny_corpus, tmp_path) -> DataConfig:
    """The tiny corpus with 10% held out and shards cached under tmp_path."""
    return DataConfig(paths=[str(tiny_corpus)], validation_fraction=0.1, cache_dir=str(tmp_path / "cache"))
