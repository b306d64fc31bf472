"""`plm embeddings train` through the API (plmkit.embeddings.train): Word2Vec and GloVe on the tiny corpus write
vectors that gensim loads; the config loader; the word vocabulary; neighbours; and the errors a user can hit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from plmkit import api
from plmkit.embeddings import is_embeddings_config, load_embeddings_config
from plmkit.embeddings.config import EmbeddingsConfig
from plmkit.errors import ConfigError, DataError, PlmError, TrainingError
from plmkit.tokenization.vocab import WordVocab, build_vocab, split_words

ROOT = Path(__file__).resolve().parents[3]
DEBUG = {m: ROOT / "configs" / "embeddings" / f"debug-{m}.yaml" for m in ("word2vec", "glove")}
SHIPPED = sorted(ROOT.glob("configs/embeddings/*.yaml"))


def _cfg(method: str, out: Path, *overrides: str) -> EmbeddingsConfig:
    return load_embeddings_config(DEBUG[method], [f"run.output_dir={out}",
                                                  f"data.paths=[{ROOT / 'tests/fixtures/tiny.txt'}]", *overrides])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """method -> the folder of a finished debug run."""
    out = {}
    for method in DEBUG:
        folder = tmp_path_factory.mktemp(method) / "run"
        api.train_embeddings(_cfg(method, folder), show_progress=False)
        out[method] = folder
    return out


@pytest.mark.parametrize("method", list(DEBUG))
def test_vectors_load_with_gensim_and_match_the_vocabulary(trained, method):
    from gensim.models import KeyedVectors

    folder = trained[method]
    kv = KeyedVectors.load_word2vec_format(str(folder / "vectors.txt"), binary=False)
    vocab = WordVocab.load(folder / "vocab.json")
    assert kv.index_to_key == vocab.words and kv.vector_size == 16 and len(kv) == len(vocab) > 100
    assert vocab.lowercase and min(vocab.counts) >= 2
    assert np.isfinite(kv.vectors).all() and np.abs(kv.vectors).max() > 0
    results = json.loads((folder / "results.json").read_text())
    assert results["method"] == method and results["vocab_size"] == len(vocab) and results["dim"] == 16
    assert results["train_words_in_vocab"] == sum(vocab.counts) <= results["train_words"]
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, results["epochs"] + 1))
    assert (folder / "loss.png").stat().st_size > 1000
    assert load_embeddings_config(folder / "config.yaml") == _cfg(method, folder)  # the resolved config


def test_word2vec_is_reproducible_with_one_worker(trained, tmp_path):
    api.train_embeddings(_cfg("word2vec", tmp_path / "again"), show_progress=False)
    assert (tmp_path / "again" / "vectors.txt").read_text() == (trained["word2vec"] / "vectors.txt").read_text()


def test_glove_loss_falls_over_the_epochs(trained):
    rows = [json.loads(line) for line in (trained["glove"] / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] < rows[0]["loss"]
    results = json.loads((trained["glove"] / "results.json").read_text())
    assert results["cooccurrence_nonzeros"] > 1000 and results["final_loss"] == rows[-1]["loss"]


def test_both_methods_see_the_same_corpus_as_pretrain(trained):
    from plmkit.config import load_config
    from plmkit.data import load_corpus

    run_cfg = load_config(ROOT / "configs/debug/mlm.yaml")  # the same data section as configs/embeddings/debug-glove.yaml
    docs = load_corpus(run_cfg.data, run_cfg.run.seed).train
    words = [w for d in docs for w in split_words(d)]
    for method in DEBUG:
        results = json.loads((trained[method] / "results.json").read_text())
        assert results["train_words"] == len(words) and results["train_documents"] == len(docs)
    assert (trained["word2vec"] / "vocab.json").read_text() == (trained["glove"] / "vocab.json").read_text()


def test_neighbors(trained):
    result = api.embedding_neighbors(trained["glove"], "Text", k=3)  # queries are lower-cased like the vocabulary
    assert result["word"] == "text" and len(result["neighbors"]) == 3
    assert all(isinstance(w, str) and -1 <= s <= 1 for w, s in result["neighbors"])
    assert "text" not in [w for w, _ in result["neighbors"]]
    with pytest.raises(PlmError, match=r"'zyzzyva' is not in the vocabulary of .*words seen at least 2 times"):
        api.embedding_neighbors(trained["glove"], "zyzzyva")
    with pytest.raises(DataError, match="no vectors.txt here"):
        api.embedding_neighbors(trained["glove"].parent, "text")


def test_an_existing_run_is_not_overwritten_silently(trained):
    with pytest.raises(PlmError, match="already holds vectors.txt; pass --overwrite"):
        api.train_embeddings(_cfg("glove", trained["glove"]), show_progress=False)


def test_a_failed_overwrite_keeps_the_earlier_vectors(trained, tmp_path, monkeypatch):
    """--overwrite replaces the files only once the new vectors exist: a run that fails (or is stopped) while it
    trains leaves the earlier ones as they were."""
    out = tmp_path / "copy"
    shutil.copytree(trained["glove"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    from plmkit.embeddings import train as training

    def fail(*args, **kwargs):
        raise PlmError("stopped while training")

    monkeypatch.setattr(training, "_train_glove", fail)
    with pytest.raises(PlmError, match="stopped while training"):
        api.train_embeddings(_cfg("glove", out), overwrite=True, show_progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_glove_fit_worse_than_zero_vectors_is_an_error(tmp_path):
    """A learning rate far too high gives finite but exploding losses: no nan to stop on, vectors of noise."""
    with pytest.raises(TrainingError, match=r"the GloVe loss ended at .*, above the .* of all-zero vectors.*lower "
                                            r"glove\.lr \(now 1e\+?0?9"):
        api.train_embeddings(_cfg("glove", tmp_path / "hot", "glove.lr=1e9"), show_progress=False)
    assert not (tmp_path / "hot" / "vectors.txt").exists()


def test_an_output_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(PlmError, match=r"afile is a file; give --out \(run\.output_dir\) a folder"):
        api.train_embeddings(_cfg("word2vec", tmp_path / "afile"), show_progress=False)


def test_empty_corpus_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no documents left"):
        api.train_embeddings(_cfg("glove", tmp_path / "out", f"data.paths=[{empty}]"), show_progress=False)
    with pytest.raises(DataError, match="no word occurs at least vocab.min_count=100000 times"):
        api.train_embeddings(_cfg("word2vec", tmp_path / "out", "vocab.min_count=100000"), show_progress=False)
    assert not (tmp_path / "out" / "vectors.txt").exists()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_embedding_configs_load(path):
    assert is_embeddings_config(path)
    cfg = load_embeddings_config(path)
    assert cfg.embeddings.method in ("word2vec", "glove") and cfg.data.paths
    assert path.stem.removeprefix("debug-").split("-")[0] == cfg.embeddings.method  # the name says the method


def test_run_configs_are_not_embedding_configs():
    assert not is_embeddings_config(ROOT / "configs/debug/mlm.yaml")


def test_unknown_keys_and_bad_values_fail_naming_them(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("embeddings: {method: glove, dimm: 50}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"unknown config key 'embeddings.dimm' \({bad}\)"):
        load_embeddings_config(bad)
    with pytest.raises(ConfigError, match=r"unknown config key 'glove.xmax' \(--set, on top of"):
        load_embeddings_config(DEBUG["glove"], ["glove.xmax=10"])
    with pytest.raises(ConfigError, match="embeddings.method must be one of word2vec, glove; got 'fasttext'"):
        load_embeddings_config(DEBUG["glove"], ["embeddings.method=fasttext"])
    with pytest.raises(ConfigError, match=r"embeddings.dim must be > 0; got 0"):
        load_embeddings_config(None, ["embeddings.dim=0"])
    with pytest.raises(ConfigError, match=r"word2vec.negative must be > 0; got 0"):
        load_embeddings_config(None, ["word2vec.negative=0"])  # no hierarchical softmax: nothing would train
    with pytest.raises(ConfigError, match="embeddings.epochs"):
        load_embeddings_config(None, ["embeddings.epochs=two"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_embeddings_config(tmp_path / "missing.yaml")


def test_split_words_and_vocab():
    assert split_words("The bank's @-@ river, 1 @,@ 000!") == ["the", "bank's", "river", "1", "000"]
    assert split_words("New York", lowercase=False) == ["New", "York"]
    vocab = build_vocab([["b", "a", "b"], ["c", "a", "d"]], lowercase=True, min_count=2)
    assert vocab.words == ["a", "b"] and vocab.counts == [2, 2]
    assert list(vocab.encode("A c B")) == [0, 1]
    assert build_vocab([["b", "a", "b", "c"]], lowercase=True, min_count=1, max_vocab=2).words == ["b", "a"]


def test_every_setting_is_documented():
    from plmkit.config import field_docs

    text = (ROOT / "docs" / "embeddings.md").read_text(encoding="utf-8")
    keys = [key for key, *_ in field_docs(EmbeddingsConfig) if key.split(".")[0] not in ("run", "data")]
    assert len(keys) >= 15
    missing = [key for key in keys if f"| `{key}` |" not in text]
    assert not missing, f"docs/embeddings.md lacks {missing}"
