"""split_validation: deterministic, order independent, seed dependent, never an empty side."""

from __future__ import annotations

import random

import pytest

from plmkit.data.split import split_validation
from plmkit.errors import DataError

DOCS = [f"document number {i}" for i in range(1000)]


def test_deterministic_and_order_independent():
    train, val = split_validation(DOCS, 0.1, seed=13)
    assert 50 < len(val) < 150 and len(train) + len(val) == len(DOCS)
    assert [d for d in DOCS if d in set(val)] == val  # original order kept
    shuffled = random.Random(1).sample(DOCS, len(DOCS))
    train2, val2 = split_validation(shuffled, 0.1, seed=13)
    assert set(val2) == set(val) and set(train2) == set(train)
    assert set(split_validation(DOCS[:500], 0.1, seed=13)[1]) == set(val) & set(DOCS[:500])
    assert set(split_validation(DOCS, 0.1, seed=14)[1]) != set(val)


def test_small_corpus_gets_one_validation_doc_and_keeps_train():
    train, val = split_validation(["a", "b", "c"], 0.001, seed=0)
    assert len(val) == 1 and len(train) == 2
    train, val = split_validation(["a", "b"], 0.999, seed=0)
    assert len(val) == 1 and len(train) == 1


def test_zero_fraction_and_too_few_docs():
    assert split_validation(["only"], 0.0, seed=0) == (["only"], [])
    with pytest.raises(DataError, match=r"at least 2.*data\.validation_fraction=0"):
        split_validation(["only"], 0.1, seed=0)
