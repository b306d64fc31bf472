"""The quickstart's corpus: standard-library docstrings and pydoc topics, found on every Python install."""

import pytest

from plmkit.quickstart import stdlib_paragraphs, write_stdlib_corpus


@pytest.mark.slow  # builds the corpus twice (about 40 s); the quickstart in .ci/run builds it too
def test_stdlib_corpus_is_large_clean_and_deterministic(tmp_path):
    paragraphs = stdlib_paragraphs()
    assert len(paragraphs) > 5000
    assert all(len(p) >= 40 and "\n" not in p and p == p.strip() for p in paragraphs)
    assert any("iterable" in p for p in paragraphs)
    path, count = write_stdlib_corpus(tmp_path / "corpus.txt")
    assert count == len(paragraphs)
    assert path.read_text(encoding="utf-8").split("\n\n")[0] == paragraphs[0]
    assert stdlib_paragraphs()[:100] == paragraphs[:100]


def test_stdlib_labeled_task_is_deterministic_and_has_three_kinds():
    from plmkit.quickstart import stdlib_labeled

    rows = stdlib_labeled(per_label=200)
    assert {label for _, label in rows} == {"module", "class", "function"}
    assert all(sum(1 for _, label in rows if label == kind) <= 200 for kind in ("module", "class", "function"))
    assert len({text for text, _ in rows}) == len(rows)  # no text twice
    assert stdlib_labeled(per_label=200) == rows
