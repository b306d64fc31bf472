"""Segmenters (plmkit.data.segment) and the word-start flags stored with the shards: pre-tokenizer words for
WordPiece, byte-level BPE and Unigram, jieba words over character-level Chinese tokens, alignment through packing,
shard splits and block edges, and the cache key."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from plmkit.config import TokenizerConfig, TokenizerTrainConfig
from plmkit.data import prepare_shards
from plmkit.data.pack import WORDS_SUFFIX, cache_key
from plmkit.data.segment import check_segmenter, resolve_segmenter, word_starts
from plmkit.errors import ConfigError, DataError
from plmkit.tokenization import train_tokenizer

SEED = 13
TINY_ZH = Path(__file__).parents[2] / "fixtures" / "tiny_zh.txt"


def zh_docs() -> list[str]:
    return [p.strip() for p in TINY_ZH.read_text(encoding="utf-8").split("\n\n") if p.strip()]


@pytest.fixture(scope="module")
def zh_tokenizer(tmp_path_factory):
    """WordPiece trained by plmkit on the tiny Chinese corpus: one token per Chinese character."""
    cfg = TokenizerConfig(train=TokenizerTrainConfig(algorithm="wordpiece", vocab_size=1000, min_frequency=2))
    return train_tokenizer(zh_docs(), cfg, "bert", tmp_path_factory.mktemp("tok-zh"), show_progress=False)


@pytest.fixture(scope="module")
def unigram_tokenizer(tmp_path_factory):
    text = (Path(__file__).parents[2] / "fixtures" / "tiny.txt").read_text(encoding="utf-8")
    cfg = TokenizerConfig(train=TokenizerTrainConfig(algorithm="unigram", vocab_size=300))
    return train_tokenizer(text.split("\n\n"), cfg, "bert", tmp_path_factory.mktemp("tok-uni"), show_progress=False)


def groups(tokenizer, text: str, segmenter: str) -> list[list[str]]:
    """The tokens of `text`, grouped into the words the segmenter finds."""
    encoded = tokenizer([text], add_special_tokens=False)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    starts = word_starts([text], encoded.encodings, segmenter)[0]
    assert starts.dtype == bool and len(starts) == len(tokens) and starts[0]
    out: list[list[str]] = []
    for token, start in zip(tokens, starts, strict=True):
        if start:
            out.append([])
        out[-1].append(token)
    return out


def test_resolve_segmenter():
    assert resolve_segmenter("auto", whole_words=True) == "pretokenizer"
    assert resolve_segmenter("auto", whole_words=False) == "none"
    assert resolve_segmenter("jieba", whole_words=False) == "jieba"
    with pytest.raises(ConfigError, match="data.segmenter must be one of"):
        resolve_segmenter("spaces", whole_words=True)


def test_wordpiece_words_are_pre_tokenizer_words(tokenizer, tiny_docs):
    """WordPiece: a token starts a word exactly when it is not a `##` continuation."""
    encoded = tokenizer(tiny_docs, add_special_tokens=False)
    starts = word_starts(tiny_docs, encoded.encodings, "pretokenizer")
    multi = 0
    for ids, flags in zip(encoded["input_ids"], starts, strict=True):
        tokens = tokenizer.convert_ids_to_tokens(ids)
        assert flags.tolist() == [not t.startswith("##") for t in tokens]
        multi += len(tokens) - int(flags.sum())
    assert multi > 100  # the tiny vocabulary splits many words, so grouping matters
    words = groups(tokenizer, "documentation, please!", "pretokenizer")
    assert [tokenizer.convert_tokens_to_string(g) for g in words] == ["documentation", ",", "please", "!"]
    assert len(words[0]) > 1


def test_byte_level_bpe_words(gpt2_tokenizer):
    """Byte-level BPE: words are the pre-tokenizer's pieces (a leading space belongs to the word)."""
    text = "Unbelievably, the documentation was incomprehensible."
    words = ["".join(g).replace("Ġ", " ") for g in groups(gpt2_tokenizer, text, "pretokenizer")]
    pieces = [w for w, _ in gpt2_tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)]
    assert words == [p.replace("Ġ", " ") for p in pieces]
    assert len(words) < len(gpt2_tokenizer(text, add_special_tokens=False)["input_ids"])


def test_unigram_words_start_at_metaspace(unigram_tokenizer, tiny_docs):
    encoded = unigram_tokenizer(tiny_docs[:20], add_special_tokens=False)
    starts = word_starts(tiny_docs[:20], encoded.encodings, "pretokenizer")
    for ids, flags in zip(encoded["input_ids"], starts, strict=True):
        tokens = unigram_tokenizer.convert_ids_to_tokens(ids)
        assert flags.tolist() == [t.startswith("▁") for t in tokens]


def test_chinese_tokens_are_characters_and_jieba_groups_them(zh_tokenizer):
    import jieba

    text = "机器学习是人工智能的一个重要分支。"
    by_jieba = groups(zh_tokenizer, text, "jieba")
    assert all(len(t) == 1 for g in by_jieba for t in g)  # character-level tokens
    assert ["".join(g) for g in by_jieba] == jieba.lcut(text)
    assert ["".join(g) for g in by_jieba][:4] == ["机器", "学习", "是", "人工智能"]
    # the pre-tokenizer (BertPreTokenizer) makes every Chinese character a word of its own
    assert [len(g) for g in groups(zh_tokenizer, text, "pretokenizer")] == [1] * len(text)


def test_jieba_never_splits_a_word_across_the_corpus(zh_tokenizer):
    import jieba

    docs = zh_docs()
    encoded = zh_tokenizer(docs, add_special_tokens=False)
    for doc, encoding, flags in zip(docs, encoded.encodings, word_starts(docs, encoded.encodings, "jieba"),
                                    strict=True):
        words = jieba.lcut(doc)
        bounds = np.cumsum([0] + [len(w) for w in words])[:-1]
        begins = [b for b, _ in encoding.offsets]
        assert flags.tolist() == [b in set(bounds) for b in begins]  # a token starts a word iff jieba starts one
        assert flags.sum() < len(flags)  # and multi-character words exist


def test_jieba_groups_english_sub_tokens_in_chinese_text(zh_tokenizer, tokenizer):
    """A Latin word inside Chinese text is one jieba word: its sub-tokens stay together."""
    text = "我们用documentation训练模型"
    by_jieba = groups(tokenizer, text, "jieba")  # the English WordPiece splits `documentation`
    english = [g for g in by_jieba if any(t.startswith("##") for t in g)]
    assert len(english) == 1 and len(english[0]) > 1
    assert tokenizer.convert_tokens_to_string(english[0]) == "documentation"


def test_missing_pre_tokenizer_or_jieba_is_a_clear_error(tokenizer, monkeypatch):
    import copy

    bare = copy.deepcopy(tokenizer)
    bare.backend_tokenizer.pre_tokenizer = None
    with pytest.raises(DataError, match="has no pre-tokenizer"):
        check_segmenter("pretokenizer", bare)
    monkeypatch.setitem(sys.modules, "jieba", None)  # import jieba -> ImportError
    with pytest.raises(ConfigError, match="pip install 'jieba>=0.42'"):
        check_segmenter("jieba", tokenizer)


# --- shards --------------------------------------------------------------------------------------------------


def _flags(data, split: str) -> np.ndarray:
    return np.concatenate([np.fromfile(data.path / f"{split}-{k:05d}{WORDS_SUFFIX}", dtype=np.uint8)
                           for k in range(data.meta["shards"][split])])


def _tokens(data, split: str) -> np.ndarray:
    return np.concatenate([np.fromfile(data.path / f"{split}-{k:05d}.bin", dtype=data.meta["dtype"])
                           for k in range(data.meta["shards"][split])])


def test_shards_store_word_starts_only_with_a_segmenter(data_cfg, tokenizer):
    plain = prepare_shards(data_cfg, tokenizer, SEED, show_progress=False)
    assert not list(plain.path.glob(f"*{WORDS_SUFFIX}")) and plain.meta["segmenter"] == "none"
    assert "word_starts" not in plain.dataset("train", 32)[0] and plain.report.train_words is None
    words = prepare_shards(data_cfg, tokenizer, SEED, whole_words=True, show_progress=False)  # auto
    assert words.path != plain.path and words.meta["segmenter"] == "pretokenizer"
    tokens, flags = _tokens(words, "train"), _flags(words, "train")
    assert tokens.tolist() == _tokens(plain, "train").tolist() and flags.shape == tokens.shape
    sep = tokenizer.sep_token_id
    assert np.all(flags[tokens == sep] == 1)  # the separator starts a word
    after_sep = np.flatnonzero(tokens[:-1] == sep) + 1
    assert np.all(flags[after_sep] == 1) and flags[0] == 1  # so does each document's first token
    pieces = np.array([t.startswith("##") for t in tokenizer.convert_ids_to_tokens(tokens.tolist())])
    assert np.array_equal(flags == 0, pieces)
    assert words.report.train_words == int(flags.sum()) < words.report.train_tokens


def test_cache_key_covers_the_segmenter(data_cfg, tokenizer):
    plain = cache_key(data_cfg, tokenizer, SEED)
    assert cache_key(data_cfg, tokenizer, SEED, segmenter="none") == plain  # old caches stay valid
    keys = {cache_key(data_cfg, tokenizer, SEED, segmenter=s) for s in ("none", "pretokenizer", "jieba")}
    assert len(keys) == 3
    explicit = dataclasses.replace(data_cfg, segmenter="pretokenizer")
    a = prepare_shards(explicit, tokenizer, SEED, show_progress=False)
    b = prepare_shards(data_cfg, tokenizer, SEED, whole_words=True, show_progress=False)
    assert a.path == b.path  # auto with whole words is the pre-tokenizer segmenter
    none = dataclasses.replace(data_cfg, segmenter="none")
    assert prepare_shards(none, tokenizer, SEED, whole_words=True, show_progress=False).meta["segmenter"] == "none"


def test_word_starts_survive_shard_splits_and_block_edges(data_cfg, tokenizer):
    """Tiny shards cut documents (and words) apart; the flags stay aligned with the tokens, and a block's first
    token (a word cut by the block edge) and the cls prefix start words."""
    whole = prepare_shards(data_cfg, tokenizer, SEED, whole_words=True, show_progress=False)
    small_cfg = dataclasses.replace(data_cfg, shard_tokens=97, cache_dir=data_cfg.cache_dir + "-small")
    small = prepare_shards(small_cfg, tokenizer, SEED, whole_words=True, show_progress=False)
    assert small.meta["shards"]["train"] > 10
    assert np.array_equal(_flags(small, "train"), _flags(whole, "train"))
    assert np.array_equal(_tokens(small, "train"), _tokens(whole, "train"))
    stream = _flags(whole, "train").astype(bool)
    cls = tokenizer.cls_token_id
    for block_size, cls_id in ((32, None), (32, cls), (7, cls)):
        ds = whole.dataset("train", block_size, cls_id=cls_id, with_segments=True)
        stride = block_size - (cls_id is not None)
        cut = 0
        for i in range(len(ds)):
            item = ds[i]
            starts = item["word_starts"]
            assert starts.dtype == torch.bool and starts.shape == item["input_ids"].shape
            body = starts[1:] if cls_id is not None else starts
            expected = stream[i * stride:(i + 1) * stride].copy()
            cut += not expected[0]
            expected[0] = True
            assert body.tolist() == expected.tolist()
            if cls_id is not None:
                assert bool(starts[0]) and item["input_ids"][0] == cls_id
        assert cut > 0  # some block edges do cut a word
