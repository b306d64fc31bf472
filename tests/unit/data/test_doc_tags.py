"""data.doc_split doc_tags: WikiExtractor's `<doc ...>` ... `</doc>` blocks, one document per article."""

from __future__ import annotations

import pytest

from plmkit.config import DataConfig
from plmkit.data.sources import read_documents
from plmkit.errors import DataError

WIKI = """<doc id="13" url="https://zh.wikipedia.org/wiki?curid=13" title="数学">
数学

数学是研究数量、结构以及空间等概念的一门学科。

它从计数和测量中产生。
</doc>
<doc id="14" url="https://zh.wikipedia.org/wiki?curid=14" title="哲学">
哲学

哲学是研究普遍的、基本问题的学科。
</doc>
"""


def read(tmp_path, text: str, doc_split: str = "doc_tags") -> list[str]:
    path = tmp_path / "wiki_00.txt"
    path.write_text(text, encoding="utf-8")
    return list(read_documents(DataConfig(paths=[str(path)], doc_split=doc_split)))


def test_one_document_per_article_without_the_tags(tmp_path):
    docs = read(tmp_path, WIKI)
    assert docs == ["数学\n数学是研究数量、结构以及空间等概念的一门学科。\n它从计数和测量中产生。",
                    "哲学\n哲学是研究普遍的、基本问题的学科。"]
    assert not any("<doc" in d or "</doc>" in d for d in docs)
    paragraphs = read(tmp_path, WIKI, doc_split="blank_line")  # what the default makes of it: tags in the text
    assert any(p.startswith("<doc") for p in paragraphs)


def test_an_empty_article_yields_nothing(tmp_path):
    assert read(tmp_path, '<doc id="1" title="x">\n\n</doc>\n' + WIKI)[0].startswith("数学")


@pytest.mark.parametrize(("text", "message"), [
    ("plain text\n\nmore text\n", "text outside a <doc"),
    ('<doc id="1">\ntext\n', "is never closed"),
    ('<doc id="1">\ntext\n<doc id="2">\n</doc>\n', "inside the <doc> opened at line 1"),
    ("</doc>\n", "without an opening"),
    ("\n\n", "no <doc ...> line"),
])
def test_malformed_files_name_the_problem(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read(tmp_path, text)
