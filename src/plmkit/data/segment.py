"""Word boundaries for whole-word masking: which tokens start a new word, computed once at `plm data prepare` time.

    starts = word_starts(docs, tokenizer(docs, add_special_tokens=False).encodings, "jieba")

Segmenters (`data.segmenter`):
    none          no boundaries are stored (the shards are exactly those of a run without whole-word masking).
    pretokenizer  the words of the fast tokenizer's own pre-tokenizer (`Encoding.word_ids`): whitespace and
                  punctuation splits for WordPiece (BertPreTokenizer, which also makes every CJK character a word),
                  space-prefixed words for byte-level BPE and Metaspace (Unigram).
    jieba         Chinese words from jieba: consecutive tokens whose first characters fall in the same jieba word
                  form one word (BERT-wwm / ERNIE style, over character-level tokens); a run of Latin letters or
                  digits is one jieba word, so English sub-tokens inside Chinese text are grouped too. With a
                  user dictionary (data.segmenter_dict) its words are kept whole as well.
    auto          pretokenizer when the objective masks whole words (objective.whole_word), else none; the caller
                  (api.pretrain, api.prepare_data) says which by `whole_words`.
A document's first token always starts a word, and so does the separator appended after it.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from plmkit.errors import ConfigError, DataError

SEGMENTERS = ("auto", "none", "pretokenizer", "jieba")


def resolve_segmenter(name: str, whole_words: bool) -> str:
    """The segmenter that runs: `name`, with auto resolved to pretokenizer (whole words wanted) or none."""
    if name not in SEGMENTERS:
        raise ConfigError(f"data.segmenter must be one of {', '.join(SEGMENTERS)}; got {name!r}")
    if name == "auto":
        return "pretokenizer" if whole_words else "none"
    return name


def check_segmenter(name: str, tokenizer, user_dict: str | None = None) -> None:
    """Fail before tokenizing when the segmenter cannot work with this tokenizer, is not installed, or its user
    dictionary cannot be read."""
    if name == "pretokenizer" and tokenizer.backend_tokenizer.pre_tokenizer is None:
        raise DataError("data.segmenter pretokenizer: the tokenizer has no pre-tokenizer, so it has no words to "
                        "group tokens by; set data.segmenter=jieba (Chinese) or use a tokenizer with a "
                        "pre-tokenizer (every tokenizer `plm tokenizer train` makes has one)")
    if name == "jieba":
        _jieba(user_dict)


def word_starts(docs: Sequence[str], encodings: Sequence, segmenter: str,
                user_dict: str | None = None) -> list[np.ndarray]:
    """Per document, a bool array with one flag per token: True where the token starts a new word.

    Args:
        docs: the documents, as they were given to the tokenizer.
        encodings: the `tokenizers.Encoding` of each document (`BatchEncoding.encodings`), without special tokens.
        segmenter: pretokenizer or jieba (resolved, not auto or none).
        user_dict: a jieba user dictionary (data.segmenter_dict) for the jieba segmenter.

    Returns:
        One (n_tokens,) bool array per document; the first flag is always True.
    """
    if segmenter == "pretokenizer":
        return [_pretokenizer_starts(e.word_ids) for e in encodings]
    if segmenter == "jieba":
        jieba = _jieba(user_dict)
        return [_jieba_starts(doc, e.offsets, jieba) for doc, e in zip(docs, encodings, strict=True)]
    raise ValueError(f"no word starts for segmenter {segmenter!r}")


def _pretokenizer_starts(word_ids: list[int | None]) -> np.ndarray:
    """A token starts a word when its pre-tokenizer word differs from the previous token's. Tokens outside any
    word (word id None: added tokens) are words of their own."""
    words = np.array([-1 if w is None else w for w in word_ids], dtype=np.int64)  # (n,)
    starts = np.ones(len(words), dtype=bool)
    starts[1:] = (words[1:] != words[:-1]) | (words[1:] < 0) | (words[:-1] < 0)
    return starts


def _jieba_starts(doc: str, offsets: list[tuple[int, int]], jieba) -> np.ndarray:
    """A token starts a word when its first character lies in another jieba word than the previous token's."""
    if not offsets:
        return np.ones(0, dtype=bool)
    words = jieba.lcut(doc)
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    if lengths.sum() != len(doc):  # jieba returns the text cut into pieces; guard against a future change
        raise DataError(f"jieba's words do not add up to the document ({lengths.sum()} of {len(doc)} characters); "
                        "set data.segmenter=pretokenizer or report the text")
    word_of_char = np.repeat(np.arange(len(words)), lengths)  # (len(doc),)
    begins = np.fromiter((b for b, _ in offsets), dtype=np.int64, count=len(offsets))  # (n,)
    word = word_of_char[np.clip(begins, 0, len(doc) - 1)]
    starts = np.ones(len(word), dtype=bool)
    starts[1:] = word[1:] != word[:-1]
    return starts


def _jieba(user_dict: str | None = None):
    """The jieba module, or with `user_dict` a jieba.Tokenizer that has loaded it (both have lcut)."""
    try:
        import jieba
    except ImportError:
        raise ConfigError("data.segmenter jieba needs the jieba package: pip install 'jieba>=0.42'") from None
    jieba.setLogLevel(logging.WARNING)  # no "Building prefix dict ..." lines on every run
    if user_dict is None:
        return jieba
    path = Path(os.path.expanduser(user_dict))
    try:
        stat = path.stat()
    except OSError as e:
        raise DataError(f"data.segmenter_dict {user_dict}: cannot read it ({e.strerror}); give a jieba user "
                        "dictionary, one word per line (optionally followed by a frequency and a tag)") from None
    return _jieba_with(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _jieba_with(path: str, mtime_ns: int, size: int):
    """A jieba.Tokenizer with the user dictionary at `path` loaded (cached while the file is unchanged)."""
    import jieba

    if size == 0:
        raise DataError(f"data.segmenter_dict {path} is empty; list one word per line, or unset it")
    cutter = jieba.Tokenizer()
    try:
        cutter.load_userdict(path)
    except ValueError as e:  # jieba: "dictionary file ... must be utf-8"
        raise DataError(f"data.segmenter_dict {path}: {e}; save it as UTF-8") from None
    return cutter


def user_dict_fingerprint(user_dict: str | None) -> str | None:
    """A digest of the user dictionary's bytes (None without one): prepared shards depend on its words."""
    if user_dict is None:
        return None
    import hashlib

    path = Path(os.path.expanduser(user_dict))
    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    except OSError as e:
        raise DataError(f"data.segmenter_dict {user_dict}: cannot read it ({e.strerror})") from None
