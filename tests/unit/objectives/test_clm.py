"""Causal LM: labels are the inputs shifted left (-100 last), per-document causal masks, and the loss is the model's
own next-token loss; plus the shared helpers in objectives/base.py."""

from __future__ import annotations

import math

import torch

from plmkit.config import ModelConfig
from plmkit.models import build_model
from plmkit.objectives.base import block_attention_mask, example_generator, summed_cross_entropy
from plmkit.objectives.clm import CausalLM, CLMConfig


def _examples(ids: torch.Tensor, segments: torch.Tensor | None = None) -> list[dict]:
    out = [{"input_ids": row, "index": i} for i, row in enumerate(ids)]
    if segments is not None:
        for example, seg in zip(out, segments, strict=True):
            example["segment_ids"] = seg
    return out


def test_labels_are_inputs_shifted_left_with_ignore_last(gpt2_tokenizer):
    ids = torch.randint(2, len(gpt2_tokenizer), (3, 16))
    batch = CausalLM(CLMConfig(), gpt2_tokenizer, seed=13).collate(_examples(ids))
    assert set(batch) == {"input_ids", "labels"}
    assert torch.equal(batch["input_ids"], ids)  # inputs are never altered
    assert torch.equal(batch["labels"][:, :-1], ids[:, 1:])
    assert (batch["labels"][:, -1] == -100).all()
    assert batch["labels"].dtype == torch.long


def test_accepts_lists_and_numpy_like_rows(gpt2_tokenizer):
    rows = [[5, 6, 7, 8], [9, 10, 11, 12]]
    batch = CausalLM(CLMConfig(), gpt2_tokenizer, seed=13).collate([{"input_ids": r, "index": i}
                                                                    for i, r in enumerate(rows)])
    assert batch["input_ids"].dtype == torch.long
    assert batch["labels"].tolist() == [[6, 7, 8, -100], [10, 11, 12, -100]]


def test_segment_ids_give_lower_triangular_block_diagonal_mask(gpt2_tokenizer):
    ids = torch.randint(2, len(gpt2_tokenizer), (2, 7))
    segments = torch.tensor([[0, 0, 0, 1, 1, 2, 2], [0] * 7])
    mask = CausalLM(CLMConfig(), gpt2_tokenizer, seed=13).collate(_examples(ids, segments))["attention_mask"]
    assert mask.shape == (2, 1, 7, 7) and mask.dtype == torch.bool
    expected = torch.block_diag(torch.ones(3, 3), torch.ones(2, 2), torch.ones(2, 2)).tril().bool()
    assert torch.equal(mask[0, 0], expected)
    assert torch.equal(mask[1, 0], torch.ones(7, 7).tril().bool())  # one document: plain causal mask
    assert mask[0, 0].diagonal().all()  # every token sees itself (no fully masked rows)


def test_block_attention_mask_bidirectional():
    segments = torch.tensor([[4, 4, 9, 9, 9]])  # ids need not start at 0
    mask = block_attention_mask(segments, causal=False)
    assert torch.equal(mask[0, 0], torch.block_diag(torch.ones(2, 2), torch.ones(3, 3)).bool())
    assert torch.equal(mask, mask.transpose(-1, -2))


def test_loss_is_the_models_own_next_token_loss(gpt2_tokenizer):
    """Labels are shifted once, in collate: the summed loss / targets equals transformers' loss with labels=inputs
    (which shifts inside the model). A second shift, or none, gives a different value."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="gpt2", hidden_size=32, num_layers=2, num_heads=2,
                                    max_position_embeddings=64, dropout=0.0), gpt2_tokenizer, "causal_lm")
    ids = torch.randint(2, len(gpt2_tokenizer), (4, 32))
    obj = CausalLM(CLMConfig(), gpt2_tokenizer, seed=13)
    out = obj.loss(obj.wrap(model), obj.collate(_examples(ids)))
    assert out.num_targets.item() == 4 * 31
    reference = model(input_ids=ids, labels=ids).loss
    assert math.isclose((out.loss_sum / out.num_targets).item(), reference.item(), rel_tol=1e-5)


def test_summed_cross_entropy_matches_torch():
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[1, -100, 3, 4, -100], [-100, -100, 10, 0, 2]])
    loss, count = summed_cross_entropy(logits.to(torch.bfloat16), labels)
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(logits.to(torch.bfloat16).float()[keep], labels[keep],
                                                 reduction="sum")
    assert count.item() == 6
    assert loss.dtype == torch.float32  # computed in float32 even for bf16 logits
    assert torch.allclose(loss, expected)


def test_example_generator_is_keyed_by_seed_and_index():
    def draw(seed, index):
        return torch.rand(8, generator=example_generator(seed, index))

    assert torch.equal(draw(13, 5), draw(13, 5))
    assert not torch.equal(draw(13, 5), draw(13, 6))
    assert not torch.equal(draw(13, 5), draw(14, 5))
    assert not torch.equal(draw(1, 23), draw(12, 3))  # "1:23" vs "12:3" do not collide


def test_wrap_keeps_the_model_under_hf_model_and_the_loss_in_one_graph(gpt2_tokenizer):
    """The loop compiles what wrap returns: the causal LM and its loss trace as one graph (no break), so inductor
    fuses the float32 loss into it; the parameters keep the names export strips (hf_model.*)."""
    model = build_model(ModelConfig(arch="gpt2", hidden_size=32, num_layers=2, num_heads=2,
                                    max_position_embeddings=64, dropout=0.0), gpt2_tokenizer, "causal_lm")
    obj = CausalLM(CLMConfig(), gpt2_tokenizer, seed=13)
    module = obj.wrap(model)
    assert module.hf_model is model
    assert {f"hf_model.{k}" for k in model.state_dict()} == set(module.state_dict())
    batch = obj.collate(_examples(torch.randint(2, len(gpt2_tokenizer), (2, 16))))
    torch._dynamo.reset()
    explained = torch._dynamo.explain(module)(**batch)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
