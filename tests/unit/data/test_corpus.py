"""load_corpus: read -> clean -> split, the CorpusReport, and the empty-corpus error."""

from __future__ import annotations

import pytest

from plmkit.config import DataConfig
from plmkit.data import load_corpus
from plmkit.errors import DataError


def test_tiny_corpus_report(tiny_corpus, tiny_docs):
    corpus = load_corpus(DataConfig(paths=[str(tiny_corpus)], validation_fraction=0.1), seed=13)
    r = corpus.report
    assert r.documents_read == len(tiny_docs)
    assert r.documents_kept == r.documents_read - r.too_short - r.duplicates_removed
    assert (r.train_documents, r.validation_documents) == (len(corpus.train), len(corpus.validation))
    assert r.train_documents + r.validation_documents == r.documents_kept and r.validation_documents >= 1
    assert r.characters == sum(map(len, corpus.train + corpus.validation))
    assert r.to_dict()["train_tokens"] is None


def test_empty_corpus_says_what_was_dropped(tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("tiny\n\ntiny\n\nshort one\n", encoding="utf-8")
    cfg = DataConfig(paths=[str(f)], min_chars=50)
    dropped = r"read 3, dropped 3 shorter than data.min_chars=50 and 0 duplicates; lower data.min_chars"
    with pytest.raises(DataError, match=dropped):
        load_corpus(cfg, seed=0)
    f.write_text("\n\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"read 0, .*check data.paths"):
        load_corpus(cfg, seed=0)
