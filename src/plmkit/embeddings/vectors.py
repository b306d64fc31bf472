"""Static vectors on disk: DIR/vectors.txt in word2vec text format (a `count dim` header, then `word v1 ... vd`
per line; gensim's KeyedVectors.load_word2vec_format reads it) and DIR/vocab.json (counts, tokenisation).

    kv, vocab = load_vectors("runs/glove"); neighbors("runs/glove", "river", k=5)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plmkit.errors import DataError, PlmError
from plmkit.tokenization.vocab import WordVocab

VECTORS = "vectors.txt"
VOCAB = "vocab.json"


def write_vectors(path: str | Path, words: list[str], vectors: np.ndarray) -> Path:
    """Write `vectors` (one row per word) in word2vec text format, 6 significant digits."""
    if len(words) != len(vectors):
        raise ValueError(f"{len(words)} words but {len(vectors)} vectors")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(f"{len(words)} {vectors.shape[1]}\n")
        for word, row in zip(words, vectors):
            f.write(word + " " + " ".join(f"{v:.6g}" for v in row.tolist()) + "\n")
    tmp.replace(path)
    return path


def _vectors_file(where: str | Path) -> Path:
    where = Path(where)
    path = where / VECTORS if where.is_dir() else where
    if not path.is_file():
        raise DataError(f"{where}: no {VECTORS} here; give the --out folder of `plm embeddings train` "
                        "(or a word2vec text file)")
    return path


def load_vectors(where: str | Path, limit: int | None = None):
    """(gensim KeyedVectors, WordVocab or None) from a `plm embeddings train` folder or a word2vec text file; with
    `limit`, only its first `limit` vectors (a cheap check that the file reads)."""
    from gensim.models import KeyedVectors

    path = _vectors_file(where)
    try:
        kv = KeyedVectors.load_word2vec_format(str(path), binary=False, limit=limit)
    except (ValueError, UnicodeDecodeError, EOFError) as e:
        raise DataError(f"{path}: not a word2vec text file ({e})") from None
    vocab_file = path.parent / VOCAB
    return kv, WordVocab.load(vocab_file) if vocab_file.is_file() else None


def lookup(kv, vocab: WordVocab | None, word: str, where: str | Path) -> str:
    """The key under which `word` is stored (lower-cased when the vocabulary is); a clear error when absent."""
    key = vocab.normalize(word) if vocab is not None else word
    if key not in kv.key_to_index:
        how = (f"words seen at least {vocab.min_count} times{', lower-cased' if vocab.lowercase else ''}"
               if vocab is not None else "words")
        raise PlmError(f"{word!r} is not in the vocabulary of {where} ({len(kv):,} {how}); try another word")
    return key


def neighbors(where: str | Path, word: str, k: int = 10) -> dict:
    """`plm embeddings neighbors`: the k words whose vectors have the highest cosine similarity to `word`'s."""
    if k < 1:
        raise PlmError(f"--k must be >= 1; got {k}")
    kv, vocab = load_vectors(where)
    key = lookup(kv, vocab, word, where)
    return {"word": key, "vectors": str(_vectors_file(where)), "vocab_size": len(kv),
            "neighbors": [[w, round(float(s), 4)] for w, s in kv.most_similar(key, topn=k)]}
