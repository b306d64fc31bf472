"""Masked LM: ~15% of non-special tokens selected per token, 80/10/10 split, specials never touched, seeded masks,
per-document attention; checked against transformers' DataCollatorForLanguageModeling on the same inputs."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import DataCollatorForLanguageModeling

from plmkit.config import ModelConfig
from plmkit.models import build_model
from plmkit.objectives.mlm import MaskedLM, MLMConfig

BLOCKS, T = 128, 128


def _blocks(tok, n=BLOCKS, t=T, seed=0) -> torch.Tensor:
    """(n, t) random non-special ids, with [CLS] first, a [SEP] mid-block and at the end, an [UNK], and padding."""
    specials = torch.tensor(tok.all_special_ids)
    pool = torch.arange(len(tok))
    pool = pool[~torch.isin(pool, specials)]
    g = torch.Generator().manual_seed(seed)
    ids = pool[torch.randint(len(pool), (n, t), generator=g)]  # (n, t)
    ids[:, 0] = tok.cls_token_id
    ids[:, t // 2] = tok.sep_token_id
    ids[:, min(10, t - 2)] = tok.unk_token_id
    ids[:, -1] = tok.sep_token_id
    ids[::4, -9:] = tok.pad_token_id  # every 4th block ends in padding
    ids[::4, -10] = tok.sep_token_id
    return ids


def _examples(ids: torch.Tensor, first_index: int = 0) -> list[dict]:
    return [{"input_ids": row, "index": first_index + i} for i, row in enumerate(ids)]


def _stats(ids, inputs, labels, tok) -> dict[str, float]:
    specials = torch.isin(ids, torch.tensor(tok.all_special_ids))
    selected = labels != -100
    chosen_in, chosen_orig = inputs[selected], ids[selected]
    is_mask = chosen_in == tok.mask_token_id
    return {
        "rate": selected[~specials].float().mean().item(),
        "mask": is_mask.float().mean().item(),
        "random": ((chosen_in != chosen_orig) & ~is_mask).float().mean().item(),
        "same": (chosen_in == chosen_orig).float().mean().item(),
    }


@pytest.fixture(scope="module")
def masked(bert_tokenizer):
    ids = _blocks(bert_tokenizer)
    batch = MaskedLM(MLMConfig(), bert_tokenizer, seed=13).collate(_examples(ids))
    return ids, batch["input_ids"], batch["labels"]


def test_about_15_percent_selected_and_80_10_10(masked, bert_tokenizer):
    s = _stats(*masked, bert_tokenizer)
    assert abs(s["rate"] - 0.15) <= 0.015, s
    assert abs(s["mask"] - 0.80) <= 0.03, s
    assert abs(s["random"] - 0.10) <= 0.03, s
    assert abs(s["same"] - 0.10) <= 0.03, s


def test_config_shares_are_followed(bert_tokenizer):
    ids = _blocks(bert_tokenizer, n=32)
    cfg = MLMConfig(mask_prob=0.4, replace_with_mask=1.0, replace_with_random=0.0)
    batch = MaskedLM(cfg, bert_tokenizer, seed=13).collate(_examples(ids))
    s = _stats(ids, batch["input_ids"], batch["labels"], bert_tokenizer)
    assert abs(s["rate"] - 0.40) <= 0.02 and s["mask"] == 1.0, s
    cfg = MLMConfig(mask_prob=0.15, replace_with_mask=0.0, replace_with_random=0.0)
    batch = MaskedLM(cfg, bert_tokenizer, seed=13).collate(_examples(ids))
    assert torch.equal(batch["input_ids"], ids)  # selected but all left unchanged
    assert (batch["labels"] != -100).any()


def test_special_tokens_never_selected_nor_inserted(masked, bert_tokenizer):
    ids, inputs, labels = masked
    special_ids = torch.tensor(bert_tokenizer.all_special_ids)
    specials = torch.isin(ids, special_ids)
    assert specials.sum() > 4 * BLOCKS  # the fixture really holds cls/sep/unk/pad positions
    assert (labels[specials] == -100).all()
    assert torch.equal(inputs[specials], ids[specials])
    replaced = (inputs != ids) & (inputs != bert_tokenizer.mask_token_id)
    assert replaced.sum() > 50
    assert not torch.isin(inputs[replaced], special_ids).any()  # random replacements are never special
    assert (inputs < len(bert_tokenizer)).all() and (inputs >= 0).all()


def test_labels_are_originals_exactly_where_selected(masked):
    ids, inputs, labels = masked
    selected = labels != -100
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])  # nothing changes outside the selection
    assert labels.dtype == torch.long and inputs.dtype == torch.long


def test_same_seed_and_index_give_the_same_batch(bert_tokenizer):
    ids = _blocks(bert_tokenizer, n=8)
    a = MaskedLM(MLMConfig(), bert_tokenizer, seed=13).collate(_examples(ids))
    b = MaskedLM(MLMConfig(), bert_tokenizer, seed=13).collate(_examples(ids))
    assert all(torch.equal(a[k], b[k]) for k in a)
    other_index = MaskedLM(MLMConfig(), bert_tokenizer, seed=13).collate(_examples(ids, first_index=100))
    assert not torch.equal(a["labels"], other_index["labels"])
    other_seed = MaskedLM(MLMConfig(), bert_tokenizer, seed=14).collate(_examples(ids))
    assert not torch.equal(a["labels"], other_seed["labels"])


def test_mask_of_an_example_does_not_depend_on_its_batch(bert_tokenizer):
    ids = _blocks(bert_tokenizer, n=4)
    obj = MaskedLM(MLMConfig(), bert_tokenizer, seed=13)
    together = obj.collate(_examples(ids))
    for i in range(4):
        alone = obj.collate([{"input_ids": ids[i], "index": i}])
        assert torch.equal(alone["input_ids"][0], together["input_ids"][i])
        assert torch.equal(alone["labels"][0], together["labels"][i])
    assert not torch.equal(together["labels"][0], together["labels"][1])  # rows differ from each other


def test_rate_is_per_token_for_many_short_documents(bert_tokenizer):
    """Blocks of 7-token documents separated by [SEP]: every document position keeps ~15%, and the share of
    documents with nothing selected is 0.85^7, as it is when each token is drawn on its own."""
    doc_len, n = 7, 128
    ids = _blocks(bert_tokenizer, n=n)
    ids[:, doc_len::doc_len + 1] = bert_tokenizer.sep_token_id
    ids = ids[:, : (T // (doc_len + 1)) * (doc_len + 1)]  # (n, 16 * 8) -> whole documents only
    labels = MaskedLM(MLMConfig(), bert_tokenizer, seed=13).collate(_examples(ids))["labels"]
    docs_ids = ids.reshape(n, -1, doc_len + 1)[..., :doc_len]  # (n, docs, 7)
    docs_sel = (labels != -100).reshape(n, -1, doc_len + 1)[..., :doc_len]
    assert (labels.reshape(n, -1, doc_len + 1)[..., doc_len] == -100).all()  # separators never selected
    ordinary = ~torch.isin(docs_ids, torch.tensor(bert_tokenizer.all_special_ids))
    per_position = (docs_sel & ordinary).sum((0, 1)) / ordinary.sum((0, 1))  # (7,)
    assert ((per_position - 0.15).abs() <= 0.04).all(), per_position
    no_selection = (~docs_sel).all(-1)[ordinary.all(-1)].float().mean().item()
    assert abs(no_selection - 0.85**doc_len) <= 0.05


def test_matches_transformers_collator(masked, bert_tokenizer):
    ids = masked[0]
    hf = DataCollatorForLanguageModeling(bert_tokenizer, mlm_probability=0.15, seed=0)
    out = hf([{"input_ids": row.tolist()} for row in ids])
    theirs = _stats(ids, out["input_ids"], out["labels"], bert_tokenizer)
    ours = _stats(*masked, bert_tokenizer)
    for key, expected in (("rate", 0.15), ("mask", 0.8), ("random", 0.1), ("same", 0.1)):
        tol = 0.015 if key == "rate" else 0.03
        assert abs(theirs[key] - expected) <= tol, (key, theirs)
        assert abs(ours[key] - theirs[key]) <= tol, (key, ours, theirs)
    specials = torch.isin(ids, torch.tensor(bert_tokenizer.all_special_ids))
    assert (out["labels"][specials] == -100).all()  # both exclude the same positions


def test_doc_attention_gives_block_diagonal_mask(bert_tokenizer):
    ids = _blocks(bert_tokenizer, n=2, t=10)
    segments = [torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 2]), torch.tensor([0] * 10)]
    batch = MaskedLM(MLMConfig(), bert_tokenizer, seed=13).collate(
        [{"input_ids": ids[i], "index": i, "segment_ids": segments[i]} for i in range(2)])
    mask = batch["attention_mask"]
    assert mask.shape == (2, 1, 10, 10) and mask.dtype == torch.bool
    expected = torch.block_diag(torch.ones(3, 3), torch.ones(2, 2), torch.ones(5, 5)).bool()
    assert torch.equal(mask[0, 0], expected)  # bidirectional within a document, nothing across
    assert mask[1].all()
    assert "attention_mask" not in MaskedLM(MLMConfig(), bert_tokenizer, seed=13).collate(_examples(ids))


def test_loss_is_the_models_own_masked_lm_loss(bert_tokenizer):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="bert", hidden_size=32, num_layers=2, num_heads=2,
                                    max_position_embeddings=64, dropout=0.0), bert_tokenizer, "masked_lm")
    obj = MaskedLM(MLMConfig(), bert_tokenizer, seed=13)
    batch = obj.collate(_examples(_blocks(bert_tokenizer, n=4, t=32)))
    out = obj.loss(obj.wrap(model), batch)
    assert out.num_targets == (batch["labels"] != -100).sum()
    reference = model(**batch).loss  # transformers' mean cross-entropy over labels != -100
    assert math.isclose((out.loss_sum / out.num_targets).item(), reference.item(), rel_tol=1e-5)
    # the sparse head (only predicted positions) gives the full head's gradients too
    out.loss_sum.backward()
    sparse_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    (model(**batch).loss * out.num_targets).backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(sparse_grads[name], param.grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"mask_prob": 0.0}, "mask_prob"),
    ({"mask_prob": 1.0}, "mask_prob"),
    ({"mask_prob": 1.5}, "mask_prob"),
    ({"replace_with_mask": -0.1}, "replace_with_mask"),
    ({"replace_with_random": 1.2}, "replace_with_random"),
    ({"replace_with_mask": 0.8, "replace_with_random": 0.3}, "replace_with_mask + replace_with_random"),
])
def test_config_validate_errors(kwargs, key):
    with pytest.raises(ValueError, match=key.replace("+", r"\+")):
        MLMConfig(**kwargs).validate()


def test_config_validate_accepts_edges():
    MLMConfig().validate()
    MLMConfig(mask_prob=0.5, replace_with_mask=1.0, replace_with_random=0.0).validate()
    MLMConfig(replace_with_mask=0.0, replace_with_random=1.0).validate()
