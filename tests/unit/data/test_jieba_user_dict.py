"""data.segmenter_dict: a jieba user dictionary whose domain terms whole-word masking keeps whole; the shards' cache
key follows its contents; a missing, empty or non-UTF-8 dictionary, or one without the jieba segmenter, is a clear
error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from plmkit.config import DataConfig, TokenizerConfig, TokenizerTrainConfig, load_config
from plmkit.data import prepare_shards
from plmkit.data.pack import WORDS_SUFFIX, cache_key
from plmkit.data.segment import check_segmenter, word_starts
from plmkit.errors import ConfigError, DataError
from plmkit.tokenization import train_tokenizer

TINY_ZH = Path(__file__).parents[2] / "fixtures" / "tiny_zh.txt"
TEXT = "机器学习是人工智能的一个分支。"


@pytest.fixture(scope="module")
def zh_tokenizer(tmp_path_factory):
    docs = [p.strip() for p in TINY_ZH.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    cfg = TokenizerConfig(train=TokenizerTrainConfig(algorithm="wordpiece", vocab_size=1000, min_frequency=2))
    return train_tokenizer(docs, cfg, "bert", tmp_path_factory.mktemp("tok-zh"), show_progress=False)


def _words(tokenizer, text: str, user_dict: str | None) -> list[str]:
    encoded = tokenizer([text], add_special_tokens=False)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    words: list[str] = []
    for token, start in zip(tokens, word_starts([text], encoded.encodings, "jieba", user_dict)[0], strict=True):
        words.append(token) if start else words.__setitem__(-1, words[-1] + token)
    return words


def test_user_dictionary_terms_become_one_word(zh_tokenizer, tmp_path):
    assert _words(zh_tokenizer, TEXT, None)[:2] == ["机器", "学习"]  # jieba alone splits the term
    terms = tmp_path / "terms.txt"
    terms.write_text("机器学习 50 n\n人工智能的一个分支\n", encoding="utf-8")
    words = _words(zh_tokenizer, TEXT, str(terms))
    assert words[0] == "机器学习" and "人工智能的一个分支" in words
    assert "".join(words) == TEXT


def test_shards_and_their_cache_key_follow_the_dictionary(zh_tokenizer, tmp_path):
    terms = tmp_path / "terms.txt"
    terms.write_text("机器学习\n", encoding="utf-8")
    base = DataConfig(paths=[str(TINY_ZH)], validation_fraction=0.0, cache_dir=str(tmp_path / "cache"),
                      segmenter="jieba")
    with_dict = DataConfig(**{**base.__dict__, "segmenter_dict": str(terms)})
    key = cache_key(with_dict, zh_tokenizer, 13, segmenter="jieba")
    assert key != cache_key(base, zh_tokenizer, 13, segmenter="jieba")
    plain = prepare_shards(base, zh_tokenizer, 13, show_progress=False)
    custom = prepare_shards(with_dict, zh_tokenizer, 13, show_progress=False)
    flags = [np.fromfile(d.path / f"train-00000{WORDS_SUFFIX}", dtype=np.uint8) for d in (plain, custom)]
    assert flags[1].sum() < flags[0].sum()  # 机器学习 is one word now, not two
    terms.write_text("机器学习\n人工智能\n", encoding="utf-8")  # edited: the shards are made again
    assert cache_key(with_dict, zh_tokenizer, 13, segmenter="jieba") != key


def test_bad_dictionaries_are_clear_errors(zh_tokenizer, tmp_path):
    with pytest.raises(DataError, match=r"data.segmenter_dict .*missing.txt: cannot read it"):
        check_segmenter("jieba", zh_tokenizer, str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="is empty"):
        check_segmenter("jieba", zh_tokenizer, str(empty))
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("机器学习\n".encode("gbk"))
    with pytest.raises(DataError, match="save it as UTF-8"):
        check_segmenter("jieba", zh_tokenizer, str(gbk))


def test_a_dictionary_needs_the_jieba_segmenter():
    with pytest.raises(ConfigError, match="data.segmenter_dict is a jieba user dictionary, but data.segmenter is auto"):
        load_config(None, ["data.segmenter_dict=terms.txt"])
    assert load_config(None, ["data.segmenter=jieba", "data.segmenter_dict=terms.txt"]).data.segmenter_dict == \
        "terms.txt"
