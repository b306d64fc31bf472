"""read_documents: text splitting, globs, JSONL, UTF-8 errors, missing paths, local Hugging Face datasets."""

from __future__ import annotations

import json

import pytest

from plmkit.config import DataConfig
from plmkit.data.sources import read_documents
from plmkit.errors import DataError


def read(*paths, **kw) -> list[str]:
    return list(read_documents(DataConfig(paths=[str(p) for p in paths], **kw)))


def test_blank_line_blocks_vs_lines(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"one a\r\none b\n\n\n  \ntwo\n\nthree a\nthree b")
    assert read(f) == ["one a\none b", "two", "three a\nthree b"]
    assert read(f, doc_split="line") == ["one a", "one b", "two", "three a", "three b"]


def test_glob_sorted_and_tilde(tmp_path, monkeypatch):
    for name, text in [("b.txt", "bee"), ("a.txt", "ay"), ("c.md", "sea")]:
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert read(tmp_path / "*.txt") == ["ay", "bee"]
    assert read(tmp_path / "*.txt", tmp_path / "a.txt") == ["ay", "bee"]  # a file listed twice is read once
    monkeypatch.setenv("HOME", str(tmp_path))
    assert read("~/c.md") == ["sea"]


def test_missing_path_glob_and_folder(tmp_path):
    with pytest.raises(DataError, match=r"nope\.txt' does not exist"):
        read(tmp_path / "nope.txt")
    with pytest.raises(DataError, match=r"\*.jsonl' matches no file"):
        read(tmp_path / "*.jsonl")
    with pytest.raises(DataError, match=r"is a folder; use a glob such as .*/\*\.txt"):
        read(tmp_path)
    with pytest.raises(DataError, match=r"data\.paths is empty"):
        read()


def test_non_utf8_names_file_line_and_byte(tmp_path):
    f = tmp_path / "latin.txt"
    f.write_bytes(b"fine\n\ncaf\xe9 au lait\n")
    with pytest.raises(DataError, match=rf"{f}:3: not valid UTF-8 at byte 9 .*iconv -f cp1252 -t utf-8"):
        read(f)


@pytest.mark.parametrize(("content", "advice"), [
    ("h\u00e9llo\nworld\n".encode("utf-16"), (r"it is UTF-16 text \(it starts with a UTF-16 byte-order mark\).*iconv "
                                               r"-f utf-16 -t utf-8")),
    ("h\u00e9llo\n".encode("utf-32"), r"it is UTF-32 text.*iconv -f utf-32"),
    (b"PK\x03\x04\x00\x00\xff\xd8binary", r"it holds NUL bytes: it looks like a binary file"),
    # a GBK file: latin1 would turn it into mojibake that trains without an error
    ("1\t这家酒店太差了，再也不来了！\n0\t房间很干净。\n".encode("gbk"),
     r"most of its bytes are non-ASCII.*iconv -f gb18030 -t utf-8.*-f big5 for Traditional Chinese"),
    ("1\t這家酒店太差了\n".encode("big5"), r"most of its bytes are non-ASCII"),
    # a UTF-8 file with one line of GBK far down: re-encoding the whole file as gb18030 would garble it
    (("中文句子一行。\n" * 2000).encode() + "坏的一行\n".encode("gbk"),
     r"the file starts as UTF-8 text with non-ASCII characters, so that line holds bytes of another encoding"),
    ("Ol\u00e9, caf\u00e9 cr\u00e8me, na\u00efve \u00e0 la carte\n".encode("cp1252"),
     r"re-encode .*iconv -f cp1252 -t utf-8 .* for Western European text"),
])
def test_non_utf8_advice_follows_what_the_file_holds(tmp_path, content, advice):
    """UTF-16 read as latin1 would be text with NULs; a binary file read so would be garbage to train on."""
    f = tmp_path / "odd.txt"
    f.write_bytes(content)
    with pytest.raises(DataError, match=rf"{f}:\d+: not valid UTF-8 at byte \d+ .*; {advice}"):
        read(f)


def test_jsonl_auto_by_extension_and_text_field(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "first", "id": 1}\n\n{"text": "second"}\n', encoding="utf-8")
    assert read(f) == ["first", "second"]
    g = tmp_path / "d.json"
    g.write_text('{"body": "x"}\n', encoding="utf-8")
    assert read(g, text_field="body") == ["x"]
    assert read(f, source="text", doc_split="line")[0] == '{"text": "first", "id": 1}'


def test_jsonl_errors_name_file_line_and_keys(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"body": "x", "id": 2}) + "\n")
    with pytest.raises(DataError, match=rf"{f}:2: record has no 'text' field \(keys: body, id\)"):
        read(f)
    f.write_text('{"text": "ok"}\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{f}:2: record has a int, not a string, in 'text' \(keys: text\)"):
        read(f)
    f.write_text('{"text": "ok"}\n\n{"text": "broken}\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{f}:3: not valid JSON"):
        read(f)
    f.write_text('["text"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{f}:1: expected a JSON object"):
        read(f)


def test_hf_local_saved_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": ["alpha doc", "beta doc"], "id": [1, 2]})
    ds.save_to_disk(str(tmp_path / "ds"))
    assert read(tmp_path / "ds", source="hf") == ["alpha doc", "beta doc"]
    cfg = DataConfig(source="hf", hf_dataset=str(tmp_path / "ds"))
    assert list(read_documents(cfg)) == ["alpha doc", "beta doc"]
    with pytest.raises(DataError, match=r"no column 'body' \(columns: text, id\)"):
        read(tmp_path / "ds", source="hf", text_field="body")


def test_hf_local_dataset_dict_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["t"]}),
                               "test": datasets.Dataset.from_dict({"text": ["u"]})})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert read(tmp_path / "dd", source="hf", hf_split="test") == ["u"]
    with pytest.raises(DataError, match=r"no split 'dev'; set data\.hf_split to one of train, test"):
        read(tmp_path / "dd", source="hf", hf_split="dev")


def test_hf_needs_a_target(tmp_path):
    with pytest.raises(DataError, match=r"data\.hf_dataset"):
        read(source="hf")
    (tmp_path / "f.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match="is not a folder"):
        read(tmp_path / "f.txt", source="hf")


def test_hf_local_folder_of_data_files(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")  # keep ~/.cache clean
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "train.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n', encoding="utf-8")
    assert read(tmp_path / "files", source="hf") == ["one", "two"]
