"""Whole-word masking (objective.whole_word): a word's tokens are predicted together (English pre-tokenizer words and
jieba Chinese words, through the shards and block edges), the token masking rate stays mask_prob (overall and per
document), 80/10/10 per token, seeded batches, and clear errors when the word boundaries are missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from plmkit import load_config
from plmkit.config import DataConfig, TokenizerConfig, TokenizerTrainConfig
from plmkit.data import prepare_shards
from plmkit.errors import ConfigError
from plmkit.objectives.mlm import MaskedLM, MLMConfig, mask_whole_words
from plmkit.tokenization import train_tokenizer

FIXTURES = Path(__file__).parents[2] / "fixtures"
ROOT = Path(__file__).parents[3]
SEED = 13


def _objective(tok, **cfg) -> MaskedLM:
    return MaskedLM(MLMConfig(whole_word=True, **cfg), tok, seed=SEED)


def _blocks(tok, path: Path, segmenter: str, cache, block_size: int = 32):
    cfg = DataConfig(paths=[str(path)], validation_fraction=0.0, cache_dir=str(cache), segmenter=segmenter)
    data = prepare_shards(cfg, tok, SEED, whole_words=True, show_progress=False)
    return data.dataset("train", block_size, cls_id=tok.cls_token_id)


def _check_words_whole(obj: MaskedLM, tok, blocks, passes: int = 4) -> tuple[int, int]:
    """Collate every block `passes` times (other indices, other masks); each word must be predicted entirely or not
    at all. Returns (predicted multi-token words, predicted tokens)."""
    special = torch.tensor(tok.all_special_ids)
    multi = predicted = 0
    items = [blocks[i] for i in range(len(blocks))]
    for k in range(passes):
        examples = [{**e, "index": e["index"] + k * len(items)} for e in items]
        batch = obj.collate(examples)
        for row, example in enumerate(examples):
            word = torch.cumsum(example["word_starts"], 0)  # (T,)
            chosen = batch["labels"][row] != -100
            regular = ~torch.isin(example["input_ids"], special)
            size = torch.bincount(word, weights=regular.float())  # (W,) regular tokens per word
            hits = torch.bincount(word, weights=(chosen & regular).float())  # (W,) predicted tokens per word
            assert torch.all((hits == 0) | (hits == size)), (k, row)
            multi += int(((hits == size) & (size > 1)).sum())
            predicted += int(chosen.sum())
            assert not (chosen & ~regular).any()  # special tokens are never predicted
    return multi, predicted


def test_english_words_are_never_split(bert_tokenizer, tmp_path):
    blocks = _blocks(bert_tokenizer, FIXTURES / "tiny.txt", "pretokenizer", tmp_path)
    multi, predicted = _check_words_whole(_objective(bert_tokenizer), bert_tokenizer, blocks)
    assert multi > 50 and predicted > 1000


@pytest.fixture(scope="module")
def zh_tokenizer(tmp_path_factory):
    docs = [p.strip() for p in (FIXTURES / "tiny_zh.txt").read_text(encoding="utf-8").split("\n\n") if p.strip()]
    cfg = TokenizerConfig(train=TokenizerTrainConfig(algorithm="wordpiece", vocab_size=1000, min_frequency=2))
    return train_tokenizer(docs, cfg, "bert", tmp_path_factory.mktemp("tok-zh"), show_progress=False)


def test_jieba_words_are_never_split(zh_tokenizer, tmp_path):
    blocks = _blocks(zh_tokenizer, FIXTURES / "tiny_zh.txt", "jieba", tmp_path)
    multi, predicted = _check_words_whole(_objective(zh_tokenizer), zh_tokenizer, blocks)
    assert multi > 50 and predicted > 500


def _synthetic(tok, n: int = 512, t: int = 128, seed: int = 0):
    """(n, t) random non-special ids with [CLS] first and a [SEP] mid-block, and random word starts (words of 1-4
    tokens)."""
    g = torch.Generator().manual_seed(seed)
    pool = torch.arange(len(tok))
    pool = pool[~torch.isin(pool, torch.tensor(tok.all_special_ids))]
    ids = pool[torch.randint(len(pool), (n, t), generator=g)]
    ids[:, 0], ids[:, t // 2] = tok.cls_token_id, tok.sep_token_id
    starts = torch.rand(n, t, generator=g) < 0.4  # mean word length 2.5
    starts[:, 0] = starts[:, 1] = starts[:, t // 2] = starts[:, t // 2 + 1] = True
    return [{"input_ids": ids[i], "word_starts": starts[i], "index": i} for i in range(n)]


def test_masking_rate_and_replacements_within_tolerance(bert_tokenizer):
    examples = _synthetic(bert_tokenizer)
    batch = _objective(bert_tokenizer).collate(examples)
    ids = torch.stack([e["input_ids"] for e in examples])
    special = torch.isin(ids, torch.tensor(bert_tokenizer.all_special_ids))
    chosen = batch["labels"] != -100
    assert chosen[~special].float().mean().item() == pytest.approx(0.15, abs=0.01)
    inputs, original = batch["input_ids"][chosen], ids[chosen]
    is_mask = inputs == bert_tokenizer.mask_token_id
    assert is_mask.float().mean().item() == pytest.approx(0.8, abs=0.02)
    assert ((inputs != original) & ~is_mask).float().mean().item() == pytest.approx(0.1, abs=0.02)
    assert (batch["labels"][chosen] == original).all()
    words = sum(int(e["word_starts"].sum()) for e in examples)
    assert words < 0.5 * ids.numel()  # words are longer than one token, so grouping is exercised


def test_each_document_keeps_the_rate_whatever_its_word_lengths(bert_tokenizer):
    """Block = a document of one-token words, then a document of six-token words: both are masked at mask_prob."""
    examples = _synthetic(bert_tokenizer, n=400, t=128)
    for e in examples:
        e["word_starts"][:] = False
        e["word_starts"][:65] = True  # [CLS] + first document: every token a word; the [SEP] too
        e["word_starts"][65::6] = True  # second document: six-token words
    batch = _objective(bert_tokenizer, mask_prob=0.3).collate(examples)
    chosen = batch["labels"] != -100
    first, second = chosen[:, 1:64].float().mean().item(), chosen[:, 65:].float().mean().item()
    assert first == pytest.approx(0.3, abs=0.02) and second == pytest.approx(0.3, abs=0.03)


def test_same_seed_same_batch_and_keyed_by_index(bert_tokenizer):
    examples = _synthetic(bert_tokenizer, n=16)
    a = _objective(bert_tokenizer).collate(examples)
    b = _objective(bert_tokenizer).collate(examples)
    assert all(torch.equal(a[k], b[k]) for k in a)
    swapped = _objective(bert_tokenizer).collate([examples[1], examples[0]])
    assert torch.equal(swapped["labels"][0], a["labels"][1]) and torch.equal(swapped["labels"][1], a["labels"][0])
    other = MaskedLM(MLMConfig(whole_word=True), bert_tokenizer, seed=SEED + 1).collate(examples)
    assert not torch.equal(other["labels"], a["labels"])


def test_token_masking_ignores_word_starts(bert_tokenizer):
    """whole_word false: the default path, with or without word boundaries in the blocks, is unchanged."""
    examples = _synthetic(bert_tokenizer, n=8)
    plain = MaskedLM(MLMConfig(), bert_tokenizer, seed=SEED)
    with_words = plain.collate(examples)
    without = plain.collate([{k: v for k, v in e.items() if k != "word_starts"} for e in examples])
    assert all(torch.equal(with_words[k], without[k]) for k in with_words)
    assert not torch.equal(_objective(bert_tokenizer).collate(examples)["labels"], with_words["labels"])


def test_a_block_starting_mid_word_is_handled(bert_tokenizer):
    """word_starts[0] False (a word cut by the block edge, had nobody fixed it) still gives whole words."""
    ids = torch.arange(10, 22)
    starts = torch.tensor([0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0], dtype=torch.bool)
    obj = _objective(bert_tokenizer, mask_prob=0.5)
    for index in range(50):
        draws = torch.rand(3, len(ids), generator=torch.Generator().manual_seed(index))
        _, labels = mask_whole_words(ids, starts, obj.cfg, obj.special_ids, obj.mask_id, obj.random_pool, draws)
        chosen = (labels != -100).tolist()
        for a, b in ((0, 2), (2, 5), (5, 7), (8, 12)):
            assert len(set(chosen[a:b])) == 1


def test_missing_word_boundaries_are_a_clear_error(bert_tokenizer):
    examples = [{k: v for k, v in e.items() if k != "word_starts"} for e in _synthetic(bert_tokenizer, n=2)]
    with pytest.raises(ConfigError, match="no word boundaries.*data.segmenter"):
        _objective(bert_tokenizer).collate(examples)
    with pytest.raises(ConfigError, match="objective.whole_word needs word boundaries.*data.segmenter is none"):
        load_config(ROOT / "configs" / "debug" / "mlm_wwm.yaml", ["data.segmenter=none"])
    with pytest.raises(ConfigError, match="data.segmenter must be one of"):
        load_config(ROOT / "configs" / "debug" / "mlm_wwm.yaml", ["data.segmenter=spaces"])


@pytest.mark.parametrize("name", ["mlm_wwm", "mlm_wwm_zh"])
def test_debug_configs_load(name):
    cfg = load_config(ROOT / "configs" / "debug" / f"{name}.yaml")
    assert cfg.objective.whole_word and cfg.data.segmenter == ("jieba" if name.endswith("zh") else "pretokenizer")
