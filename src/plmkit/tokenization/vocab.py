"""Word-level tokenisation and vocabulary for static embeddings (word2vec, GloVe): words are runs of letters and
digits (inner apostrophes kept: don't, o'clock), optionally lower-cased; punctuation is dropped.

    vocab = build_vocab(docs, lowercase=True, min_count=5); ids = vocab.encode("The bank of the river")
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from plmkit.errors import DataError

WORD_PATTERN = r"\w+(?:['’]\w+)*"
_WORD = re.compile(WORD_PATTERN)


def split_words(text: str, lowercase: bool = True) -> list[str]:
    """The words of `text`, in order: `split_words("Bank's @-@ river!")` -> ["bank's", "river"]."""
    return _WORD.findall(text.lower() if lowercase else text)


@dataclass
class WordVocab:
    """Words by descending count (ties alphabetical), their corpus counts and the tokenisation they came from."""

    words: list[str]
    counts: list[int]
    lowercase: bool = True
    min_count: int = 1
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def normalize(self, word: str) -> str:
        """A query word as it is stored: lower-cased when the vocabulary is."""
        return word.lower() if self.lowercase else word

    def ids(self, words: Iterable[str]) -> np.ndarray:
        """int32 ids of the words that are in the vocabulary; the others are dropped (not replaced by UNK)."""
        index = self.index
        return np.fromiter((index[w] for w in words if w in index), dtype=np.int32)

    def encode(self, text: str) -> np.ndarray:
        return self.ids(split_words(text, self.lowercase))

    def to_dict(self) -> dict:
        return {"token_pattern": WORD_PATTERN, "lowercase": self.lowercase, "min_count": self.min_count,
                "size": len(self.words), "words": self.words, "counts": self.counts}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> WordVocab:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(words=data["words"], counts=data["counts"], lowercase=data["lowercase"],
                       min_count=data.get("min_count", 1))
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{path}: not a vocabulary written by `plm embeddings train` ({e})") from None


def build_vocab(tokenized: Iterable[list[str]], *, lowercase: bool, min_count: int = 5,
                max_vocab: int | None = None) -> WordVocab:
    """Count the words of already split documents and keep those seen at least `min_count` times (at most
    `max_vocab` of them, the most frequent).

    Raises:
        DataError: no word is frequent enough.
    """
    counter: Counter[str] = Counter()
    for words in tokenized:
        counter.update(words)
    kept = sorted(((w, c) for w, c in counter.items() if c >= min_count), key=lambda wc: (-wc[1], wc[0]))
    if max_vocab is not None:
        kept = kept[:max_vocab]
    if not kept:
        raise DataError(f"no word occurs at least vocab.min_count={min_count} times in the {sum(counter.values())} "
                        "words of the corpus; lower vocab.min_count or add data (data.paths)")
    return WordVocab(words=[w for w, _ in kept], counts=[c for _, c in kept], lowercase=lowercase,
                     min_count=min_count)
