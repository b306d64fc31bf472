"""Word2Vec (Mikolov et al., 2013) with gensim: skip-gram or CBOW with negative sampling, on the documents of the
corpus split into words by plmkit.tokenization.vocab, over the vocabulary built there (so GloVe and Word2Vec see
the same words).

    kv, rows = train_word2vec(sentences, vocab, cfg)   # gensim KeyedVectors, one metrics row per epoch
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from plmkit.embeddings.config import EmbeddingsConfig
from plmkit.tokenization.vocab import WordVocab

MAX_SENTENCE = 10_000
"""gensim silently truncates longer sentences; longer documents are cut into pieces of this many words."""


def split_long(sentences: Sequence[list[str]], limit: int = MAX_SENTENCE) -> list[list[str]]:
    return [s[k:k + limit] for s in sentences for k in range(0, len(s), limit) if s[k:k + limit]]


def train_word2vec(sentences: Sequence[list[str]], vocab: WordVocab, cfg: EmbeddingsConfig,
                   on_epoch: Callable[[dict], None] | None = None):
    """Train gensim's Word2Vec on `sentences` (lists of in-vocabulary words) with the vocabulary and counts of
    `vocab`; returns (KeyedVectors, one row per epoch: epoch, seconds, loss as gensim reports it)."""
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    sentences = split_long(sentences)
    e, w = cfg.embeddings, cfg.word2vec
    model = Word2Vec(vector_size=e.dim, window=e.window, min_count=1, sg=int(w.sg), hs=0, negative=w.negative,
                     sample=w.sample, alpha=w.lr, min_alpha=w.min_lr, workers=e.workers, seed=cfg.run.seed,
                     epochs=e.epochs, compute_loss=True)
    model.build_vocab_from_freq(dict(zip(vocab.words, vocab.counts)), corpus_count=len(sentences))
    rows: list[dict] = []

    class _Epochs(CallbackAny2Vec):
        def __init__(self):
            self.started, self.loss_before = time.time(), 0.0

        def on_epoch_begin(self, model):
            self.started = time.time()

        def on_epoch_end(self, model):
            loss = model.get_latest_training_loss()  # a running sum over the epochs of this train() call
            row = {"epoch": len(rows) + 1, "seconds": round(time.time() - self.started, 2),
                   "loss": loss - self.loss_before}
            self.loss_before = loss
            rows.append(row)
            if on_epoch is not None:
                on_epoch(row)

    model.train(sentences, total_examples=len(sentences), epochs=e.epochs, compute_loss=True,
                callbacks=[_Epochs()])
    return model.wv, rows
