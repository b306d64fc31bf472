"""prepare_shards and PackedDataset: token stream, shard layout, blocks, cls prefix, segments, cache."""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from transformers import PreTrainedTokenizerFast

from plmkit.config import DataConfig
from plmkit.data import PreparedData, load_corpus, pack, prepare_shards
from plmkit.data.pack import cache_key, pack_shards, separator_id, token_dtype
from plmkit.errors import DataError

SEED = 13


def prepare(cfg, tokenizer) -> PreparedData:
    return prepare_shards(cfg, tokenizer, SEED, show_progress=False)


def expected_stream(tokenizer, docs) -> list[int]:
    """Each document's ids followed by one separator, end to end."""
    sep = tokenizer.sep_token_id
    return [t for d in docs for t in tokenizer(d, add_special_tokens=False)["input_ids"] + [sep]]


def shards(data: PreparedData, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(tokens, doc starts) of every shard of a split, read straight from the files."""
    names = [data.path / f"{split}-{k:05d}" for k in range(data.meta["shards"][split])]
    return [(np.fromfile(f"{n}.bin", dtype=data.meta["dtype"]), np.load(f"{n}.idx.npy")) for n in names]


def test_shards_hold_the_token_stream(data_cfg, tokenizer):
    data = prepare(data_cfg, tokenizer)
    corpus = load_corpus(data_cfg, SEED)
    for split, docs in [("train", corpus.train), ("validation", corpus.validation)]:
        stream = expected_stream(tokenizer, docs)
        assert np.concatenate([t for t, _ in shards(data, split)]).tolist() == stream
        assert data.meta["tokens"][split] == len(stream)
    meta = data.meta
    assert (meta["dtype"], meta["vocab_size"], meta["sep_id"], meta["cls_id"]) == ("uint16", 300, 3, 2)
    assert (data.path / "train-00000.bin").stat().st_size == 2 * meta["tokens"]["train"]
    assert data.report.train_tokens == meta["tokens"]["train"] and data.report.validation_documents >= 1
    assert meta["report"] == data.report.to_dict()


def test_doc_offsets_mark_whole_documents(data_cfg, tokenizer):
    data = prepare(data_cfg, tokenizer)
    docs = iter(load_corpus(data_cfg, SEED).train)
    for tokens, starts in shards(data, "train"):
        assert starts.dtype == np.int64 and starts[0] == 0 and np.all(np.diff(starts) > 0)
        for a, b in zip(starts, [*starts[1:], len(tokens)], strict=True):
            assert tokens[a:b].tolist() == expected_stream(tokenizer, [next(docs)])
    assert next(docs, None) is None


def test_shard_tokens_splits_into_several_shards(data_cfg, tokenizer):
    corpus = load_corpus(data_cfg, SEED)
    limit = max(len(expected_stream(tokenizer, [d])) for d in corpus.train) + 20  # every document fits
    data = prepare(dataclasses.replace(data_cfg, shard_tokens=limit), tokenizer)
    parts = shards(data, "train")
    assert len(parts) == data.meta["shards"]["train"] > 5
    assert all(len(t) <= limit and t[-1] == tokenizer.sep_token_id for t, _ in parts)  # no document split
    assert sum(len(s) for _, s in parts) == data.report.train_documents
    assert np.concatenate([t for t, _ in parts]).tolist() == expected_stream(tokenizer, corpus.train)


def test_shard_size_is_part_of_the_key_and_tails_are_counted(data_cfg, tokenizer):
    """Another data.shard_tokens gives other shards (it used to return the cached ones); the tokens left out at each
    shard's end are counted (`dropped`), for the run's warning."""
    default = prepare(data_cfg, tokenizer)
    small = prepare(dataclasses.replace(data_cfg, shard_tokens=200), tokenizer)
    assert small.path != default.path and small.meta["shards"]["train"] > default.meta["shards"]["train"] == 1
    for data in (default, small):
        ds = data.dataset("train", block_size=32)
        assert ds.dropped + len(ds) * 32 == data.meta["tokens"]["train"]
    assert small.dataset("train", block_size=32).dropped > default.dataset("train", block_size=32).dropped


def test_document_longer_than_a_shard_is_split():
    docs = [np.arange(3), np.arange(10, 20), np.arange(30, 32)]
    out = list(pack_shards(docs, shard_tokens=4))
    assert [t.tolist() for t, _ in out] == [[0, 1, 2], [10, 11, 12, 13], [14, 15, 16, 17], [18, 19, 30, 31]]
    assert [s.tolist() for _, s in out] == [[0], [0], [0], [0, 2]]


def test_token_dtype():
    assert token_dtype(300) == np.uint16 and token_dtype(65535) == np.uint16
    assert token_dtype(65536) == np.uint32


def test_blocks_concatenate_to_the_stream(data_cfg, tokenizer):
    data = prepare(data_cfg, tokenizer)
    stream = shards(data, "train")[0][0]
    ds = data.dataset("train", block_size=32)
    assert len(ds) == len(stream) // 32
    items = [ds[i] for i in range(len(ds))]
    assert all(it["index"] == i and it["input_ids"].shape == (32,) for i, it in enumerate(items))
    joined = np.concatenate([it["input_ids"].numpy() for it in items])
    assert joined.tolist() == stream[: len(ds) * 32].tolist()
    assert items[0]["input_ids"].dtype == torch.int64
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_cls_prefix(data_cfg, tokenizer):
    data = prepare(data_cfg, tokenizer)
    stream = shards(data, "train")[0][0]
    ds = data.dataset("train", block_size=32, cls_id=tokenizer.cls_token_id)
    assert len(ds) == len(stream) // 31
    blocks = [ds[i]["input_ids"] for i in range(len(ds))]
    assert all(b.shape == (32,) and b[0] == tokenizer.cls_token_id for b in blocks)
    assert np.concatenate([b[1:].numpy() for b in blocks]).tolist() == stream[: len(ds) * 31].tolist()


@pytest.mark.parametrize("cls", [False, True])
def test_segment_ids_count_documents_within_a_block(data_cfg, tokenizer, cls):
    data = prepare(dataclasses.replace(data_cfg, shard_tokens=500), tokenizer)
    cls_id = tokenizer.cls_token_id if cls else None
    ds = data.dataset("train", block_size=64, cls_id=cls_id, with_segments=True)
    crossed = 0
    for i in range(len(ds)):
        ids, seg = ds[i]["input_ids"].tolist(), ds[i]["segment_ids"].tolist()
        body = ids[1:] if cls else ids
        is_sep = [t == tokenizer.sep_token_id for t in body]
        # a document's closing separator still belongs to it: the segment grows right after each separator
        want = [sum(is_sep[:j]) for j in range(len(body))]
        assert seg == ([0, *want] if cls else want)
        crossed += seg[-1] > 0
    assert crossed > 0  # some blocks do hold a document boundary


def test_segment_ids_hand_example(tmp_path, tokenizer):
    f = tmp_path / "c.txt"
    f.write_text("the\n\nthe the the\n\nthe the\n", encoding="utf-8")
    cfg = DataConfig(paths=[str(f)], min_chars=0, dedup=False, validation_fraction=0,
                     cache_dir=str(tmp_path / "c"))
    the, sep, cls = tokenizer.convert_tokens_to_ids("the"), tokenizer.sep_token_id, tokenizer.cls_token_id
    ds = prepare(cfg, tokenizer).dataset("train", block_size=4, cls_id=cls, with_segments=True)
    # stream: the SEP | the the the SEP | the the SEP  ->  blocks of 3 stream tokens after CLS
    assert [ds[i]["input_ids"].tolist() for i in range(3)] == [[cls, the, sep, the], [cls, the, the, sep],
                                                                [cls, the, the, sep]]
    assert [ds[i]["segment_ids"].tolist() for i in range(3)] == [[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_cache_is_reused_without_reading_and_block_size_is_not_in_the_key(data_cfg, tokenizer, monkeypatch):
    first = prepare(data_cfg, tokenizer)

    def fail(*args, **kwargs):
        raise AssertionError("the corpus was read again")

    monkeypatch.setattr(pack, "load_corpus", fail)
    changed = dataclasses.replace(data_cfg, block_size=16, doc_attention=True)
    second = prepare(changed, tokenizer)
    assert second.path == first.path and second.meta == first.meta and second.report == first.report
    assert len(second.dataset("train", 16)) > len(second.dataset("train", 64)) > 0


def test_cache_key_changes_with_file_settings_seed_and_tokenizer(tmp_path, tiny_corpus, tokenizer):
    f = tmp_path / "corpus.txt"
    shutil.copy(tiny_corpus, f)
    cfg = DataConfig(paths=[str(tmp_path / "*.txt")], validation_fraction=0.1,
                     cache_dir=str(tmp_path / "cache"))
    first = prepare(cfg, tokenizer)
    key = cache_key(cfg, tokenizer, SEED)
    assert first.path.name == key
    assert cache_key(cfg, tokenizer, SEED + 1) != key
    assert cache_key(dataclasses.replace(cfg, min_chars=5), tokenizer, SEED) != key
    other = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer, unk_token="[UNK]",
                                    sep_token="[CLS]", cls_token="[CLS]")
    assert cache_key(cfg, other, SEED) != key
    with f.open("a", encoding="utf-8") as fh:
        fh.write("\n\nA brand new paragraph that was not in the corpus before this edit.\n")
    second = prepare(cfg, tokenizer)
    assert second.path != first.path and (first.path / "meta.json").is_file()
    assert second.report.documents_read == first.report.documents_read + 1


def test_leftover_tmp_and_incomplete_folders(data_cfg, tokenizer):
    root = os.path.expanduser(data_cfg.cache_dir)
    key = cache_key(data_cfg, tokenizer, SEED)
    dead = 99_999_999  # above any pid_max, so no such process
    stale, fresh, partial = (os.path.join(root, n) for n in (f"{key}.tmp-{dead}", f"x.tmp-{dead}", key))
    for folder in (stale, fresh, partial):
        os.makedirs(folder)
        open(os.path.join(folder, "train-00000.bin"), "wb").close()
    os.utime(stale, (0, 0))  # untouched for decades: a killed run
    data = prepare(data_cfg, tokenizer)
    assert str(data.path) == partial and (data.path / "meta.json").is_file()
    assert os.path.getsize(data.path / "train-00000.bin") > 0  # rebuilt, not trusted
    assert not os.path.exists(stale) and os.path.exists(fresh)  # a recent one may still be in progress
    assert sorted(os.listdir(root)) == sorted([key, os.path.basename(fresh)])


def test_too_few_tokens_for_a_block(data_cfg, tokenizer):
    data = prepare(data_cfg, tokenizer)
    too_few = r"validation split has \d+ tokens .*one block of 10000; lower data.block_size"
    with pytest.raises(DataError, match=too_few):
        data.dataset("validation", 10_000)
    none = prepare(dataclasses.replace(data_cfg, validation_fraction=0.0), tokenizer)
    with pytest.raises(DataError, match="validation split has 0 tokens in 0 shard"):
        none.dataset("validation", 8)
    with pytest.raises(DataError, match="no split 'test'"):
        none.dataset("test", 8)


def test_separator_is_sep_else_eos(tokenizer):
    backend = tokenizer.backend_tokenizer
    assert separator_id(tokenizer) == tokenizer.sep_token_id
    eos_only = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="[PAD]")
    assert separator_id(eos_only) == eos_only.eos_token_id
    with pytest.raises(DataError, match="neither a sep nor an eos token"):
        separator_id(PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]"))


def test_dataset_pickles_for_workers(data_cfg, tokenizer):
    ds = prepare(data_cfg, tokenizer).dataset("train", 16, with_segments=True)
    before = ds[3]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._tokens is None
    after = clone[3]
    assert after["input_ids"].equal(before["input_ids"]) and after["segment_ids"].equal(before["segment_ids"])


def test_progress_bar_goes_to_stderr(data_cfg, tokenizer, capsys):
    prepare_shards(data_cfg, tokenizer, SEED, show_progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "tokenizing train" in err


def test_hf_folder_shards_and_fingerprint(tmp_path, tokenizer):
    datasets = pytest.importorskip("datasets")
    texts = [f"Paragraph {i} about the text wrapper and its width." for i in range(20)]
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(tmp_path / "ds"))
    cfg = DataConfig(source="hf", paths=[str(tmp_path / "ds")], cache_dir=str(tmp_path / "cache"))
    first = prepare(cfg, tokenizer)
    assert first.report.documents_kept == 20 and first.meta["tokens"]["validation"] > 0
    datasets.Dataset.from_dict({"text": texts[:10]}).save_to_disk(str(tmp_path / "ds2"))
    shutil.rmtree(tmp_path / "ds")
    (tmp_path / "ds2").rename(tmp_path / "ds")
    assert prepare(cfg, tokenizer).report.documents_kept == 10
    hub = DataConfig(source="hf", hf_dataset="wikitext", hf_config="wikitext-2-raw-v1")
    assert pack.input_fingerprint(hub) == ["hub", "wikitext", "wikitext-2-raw-v1", "train"]  # no download
