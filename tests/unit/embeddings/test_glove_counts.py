"""GloVe (plmkit.embeddings.glove): co-occurrence counts against hand counts and a brute-force loop, and a fit
whose weighted least-squares loss falls."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from plmkit.embeddings import glove
from plmkit.embeddings.glove import cooccurrence, fit_glove
from plmkit.errors import DataError
from plmkit.tokenization.vocab import build_vocab, split_words


def _dense(docs, size, window, **kwargs) -> np.ndarray:
    rows, cols, values = cooccurrence(docs, size, window, **kwargs)
    matrix = np.zeros((size, size))
    matrix[rows, cols] = values
    return matrix


def _brute_force(docs, size, window, distance_weighting=True) -> np.ndarray:
    """The reference cooccur.c loop: each word against the `window` words before it, both directions."""
    matrix = np.zeros((size, size))
    for doc in docs:
        for pos, word in enumerate(doc):
            for d in range(1, window + 1):
                if pos - d < 0:
                    break
                weight = 1.0 / d if distance_weighting else 1.0
                matrix[doc[pos - d], word] += weight
                matrix[word, doc[pos - d]] += weight
    return matrix


def test_counts_equal_hand_counts_on_a_five_word_corpus():
    vocab = build_vocab([split_words("The cat saw the dog")], lowercase=True, min_count=1)
    assert vocab.words == ["the", "cat", "dog", "saw"]  # by count, then alphabetical
    the, cat, dog, saw = range(4)
    x = _dense([vocab.encode("The cat saw the dog")], len(vocab), window=2)
    # d=1: the-cat, cat-saw, saw-the, the-dog (1 each); d=2: the-saw, cat-the, saw-dog (1/2 each)
    expected = np.zeros((4, 4))
    for a, b, w in [(the, cat, 1.0), (cat, saw, 1.0), (saw, the, 1.0), (the, dog, 1.0),
                    (the, saw, 0.5), (cat, the, 0.5), (saw, dog, 0.5)]:
        expected[a, b] += w
        expected[b, a] += w
    np.testing.assert_allclose(x, expected)
    assert x[the, cat] == 1.5 and x[the, saw] == 1.5 and x[saw, dog] == 0.5 and x[the, the] == 0
    # a window of 3 reaches the second "the": a word paired with itself adds 1/3 twice, as in the reference
    x3 = _dense([vocab.encode("The cat saw the dog")], len(vocab), window=3)
    assert x3[the, the] == pytest.approx(2 / 3) and x3[cat, dog] == pytest.approx(1 / 3)
    np.testing.assert_allclose(x3, x3.T)
    flat = _dense([vocab.encode("The cat saw the dog")], len(vocab), window=2, distance_weighting=False)
    assert flat[the, cat] == 2.0 and flat[saw, dog] == 1.0


def test_out_of_vocabulary_words_are_skipped_and_documents_do_not_touch():
    vocab = build_vocab([["the", "cat", "saw", "the", "dog"]], lowercase=True, min_count=1)
    # "zebra" has no id: cat and saw become neighbours; the two documents never pair up
    docs = [vocab.encode("the cat zebra saw"), vocab.encode("dog the")]
    x = _dense(docs, len(vocab), window=1)
    the, cat, dog, saw = range(4)
    assert x[cat, saw] == 1.0 and x[saw, dog] == 0.0 and x[the, dog] == 1.0 and x.sum() == 2 * 3


@pytest.mark.parametrize("window", [1, 4])
def test_counts_match_a_brute_force_loop_across_chunks_and_merges(window, monkeypatch):
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 30, size=rng.integers(0, 40)) for _ in range(60)]
    expected = _brute_force(docs, 30, window)
    np.testing.assert_allclose(_dense(docs, 30, window), expected)
    monkeypatch.setattr(glove, "_MERGE_EVERY", 50)  # many small chunks, merged along the way
    np.testing.assert_allclose(_dense(docs, 30, window, chunk_tokens=37), expected)
    rows, cols, _ = cooccurrence(docs, 30, window)
    assert rows.dtype == np.int32 and list(zip(rows, cols)) == sorted(zip(rows, cols))


def test_a_window_past_the_longest_document_counts_what_the_documents_hold():
    """No pair lies further apart than a document is long: a window of a billion is the longest document's, at once
    (it looped a billion times)."""
    rng = np.random.default_rng(1)
    docs = [rng.integers(0, 30, size=rng.integers(2, 40)) for _ in range(20)]
    np.testing.assert_allclose(_dense(docs, 30, window=10**9), _brute_force(docs, 30, 40))


def test_nothing_co_occurs_is_a_clear_error():
    with pytest.raises(DataError, match="no document holds two in-vocabulary words"):
        cooccurrence([np.array([3]), np.array([], dtype=np.int32)], 5, 2)


def test_glove_loss_decreases(tiny_docs):
    tokenized = [split_words(d) for d in tiny_docs]
    vocab = build_vocab(tokenized, lowercase=True, min_count=2)
    rows, cols, values = cooccurrence([vocab.ids(t) for t in tokenized], len(vocab), 5)
    seen = []
    vectors, losses = fit_glove(rows, cols, values, len(vocab), dim=16, epochs=8, batch_size=256, seed=1,
                                on_epoch=lambda epoch, loss, secs: seen.append(epoch))
    assert vectors.shape == (len(vocab), 16) and vectors.dtype == np.float32
    assert seen == list(range(1, 9))
    assert all(b < a for a, b in itertools.pairwise(losses))  # every pass lowers it
    assert losses[-1] < 0.8 * losses[0]
    again, losses_again = fit_glove(rows, cols, values, len(vocab), dim=16, epochs=8, batch_size=256, seed=1)
    np.testing.assert_array_equal(vectors, again)  # the seed fixes the initial vectors and the order
    assert losses_again == losses
