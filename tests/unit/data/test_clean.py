"""clean_documents: Unicode normalisation, stripping, min_chars and exact de-duplication counts."""

from __future__ import annotations

from plmkit.config import DataConfig
from plmkit.data.clean import clean_documents


def clean(docs, **kw):
    return clean_documents(docs, DataConfig(**{"min_chars": 0, **kw}))


def test_nfkc_folds_fullwidth_and_nfc_composes():
    assert clean(["\uff21\uff22\uff43 1"], normalization="NFKC")[0] == ["ABc 1"]
    assert clean(["cafe\u0301"], normalization="NFC")[0] == ["caf\u00e9"]
    assert clean(["cafe\u0301"], normalization="none")[0] == ["cafe\u0301"]


def test_strip_and_min_chars():
    docs, stats = clean(["  12345  ", "1234", "\n\t", "abcdef"], min_chars=5)
    assert docs == ["12345", "abcdef"]
    assert (stats.read, stats.kept, stats.too_short, stats.duplicates) == (4, 2, 2, 0)


def test_dedup_keeps_first_and_counts_after_normalisation():
    docs, stats = clean(["b doc", "a doc", " b doc ", "caf\u00e9", "cafe\u0301", "a doc"])
    assert docs == ["b doc", "a doc", "caf\u00e9"]
    assert (stats.read, stats.kept, stats.duplicates) == (6, 3, 3)
    docs, stats = clean(["x", "x"], dedup=False)
    assert docs == ["x", "x"] and stats.duplicates == 0
