"""A WordPiece tokenizer trained by plmkit on Chinese text is character-level for Chinese (BertNormalizer's
handle_chinese_chars puts spaces around CJK ideographs, so no merge ever joins two of them), keeps Latin words as
sub-words, and knows every character of its training text."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from plmkit.config import TokenizerConfig, TokenizerTrainConfig
from plmkit.tokenization import train_tokenizer

TINY_ZH = Path(__file__).parents[2] / "fixtures" / "tiny_zh.txt"


def _docs() -> list[str]:
    return [p.strip() for p in TINY_ZH.read_text(encoding="utf-8").split("\n\n") if p.strip()]


@pytest.fixture(scope="module")
def zh_tokenizer(tmp_path_factory):
    docs = _docs() + ["We trained BERT with transformers; BERT learns words."] * 3
    cfg = TokenizerConfig(train=TokenizerTrainConfig(algorithm="wordpiece", vocab_size=1000, min_frequency=2))
    return train_tokenizer(docs, cfg, "bert", tmp_path_factory.mktemp("tok-zh"), show_progress=False)


def _is_cjk(ch: str) -> bool:
    return "CJK UNIFIED IDEOGRAPH" in unicodedata.name(ch, "")


def test_every_chinese_character_is_one_token(zh_tokenizer):
    for doc in _docs():
        tokens = zh_tokenizer.tokenize(doc)
        assert "[UNK]" not in tokens  # every character of the training text is in the vocabulary
        cjk_tokens = [t for t in tokens if any(_is_cjk(c) for c in t)]
        assert all(len(t) == 1 for t in cjk_tokens)
        assert "".join(cjk_tokens) == "".join(c for c in doc if _is_cjk(c))


def test_no_vocabulary_entry_joins_chinese_characters(zh_tokenizer):
    vocab = zh_tokenizer.get_vocab()
    assert not [t for t in vocab if sum(map(_is_cjk, t.removeprefix("##"))) > 1]
    assert not [t for t in vocab if t.startswith("##") and any(map(_is_cjk, t))]
    assert zh_tokenizer.tokenize("BERT模型")[0] == "BERT"  # Latin words still get word pieces


def test_unseen_characters_are_unknown_not_split(zh_tokenizer):
    assert zh_tokenizer.tokenize("龘") == ["[UNK]"]
