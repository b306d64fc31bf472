"""Masked language modelling (Devlin et al., 2019): dynamic masking, 15% of tokens by default, 80/10/10.

Each token is selected independently, so every document keeps the configured rate wherever it falls in a block;
special, separator and padding tokens are never selected.  Try it:  plm pretrain configs/debug/mlm.yaml
With `whole_word: true` whole words are selected instead (BERT-wwm; Chinese with jieba words as in Cui et al.,
2021), from the word boundaries stored with the shards (data.segmenter; docs/whole-word-masking.md).
  Try it:  plm pretrain configs/debug/mlm_wwm.yaml   (Chinese: configs/debug/mlm_wwm_zh.yaml)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from plmkit.errors import ConfigError
from plmkit.models import masked_lm_head
from plmkit.objectives.base import (
    LossOutput,
    block_attention_mask,
    example_generator,
    fused_cross_entropy,
    objectives,
)


@dataclass
class MLMConfig:
    mask_prob: float = 0.15
    """Probability that a (non-special) token is selected for prediction."""
    replace_with_mask: float = 0.8
    """Share of the selected tokens replaced by the mask token."""
    replace_with_random: float = 0.1
    """Share of the selected tokens replaced by a random token; the rest stay unchanged."""
    whole_word: bool = False
    """Select whole words, not tokens: each word with probability mask_prob, all its sub-tokens together (so the
    expected share of predicted tokens stays mask_prob); the 80/10/10 replacement is then drawn per token. Word
    boundaries come from data.segmenter and are stored with the shards."""
    sparse_head: bool = True
    """Run the LM head only at the predicted positions (same loss as the full head, a fraction of its compute);
    false: transformers' head on every position (for comparison)."""
    fused_loss: bool = True
    """Cross-entropy that writes its gradient during the forward pass, a chunk of rows at a time, in float32 (same
    loss within 1e-6 relative; no float32 copy of the logits or log-probabilities kept for the backward pass). On a
    CPU only; on a GPU and under train.compile the plain loss runs."""

    def validate(self) -> None:
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1); got {self.mask_prob}")
        for key in ("replace_with_mask", "replace_with_random"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"{key} must be in [0, 1]; got {getattr(self, key)}")
        if self.replace_with_mask + self.replace_with_random > 1:
            raise ValueError("replace_with_mask + replace_with_random must be <= 1; got "
                             f"{self.replace_with_mask} + {self.replace_with_random}")


@objectives.register("mlm", config=MLMConfig)
class MaskedLM:
    """Masked LM: predict randomly selected tokens from both sides (BERT, RoBERTa)."""

    model_kind = "masked_lm"
    needs = ("mask",)

    def __init__(self, cfg: MLMConfig, tokenizer, seed: int):
        self.cfg, self.seed = cfg, seed
        self.mask_id = tokenizer.mask_token_id
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        vocab = torch.arange(len(tokenizer))
        self.random_pool = vocab[~torch.isin(vocab, self.special_ids)]  # random replacements are never special

    @property
    def head_fraction(self) -> float:
        """Share of the positions the LM head runs at (the FLOP count of MFU)."""
        return self.cfg.mask_prob if self.cfg.sparse_head else 1.0

    def wrap(self, model: nn.Module) -> nn.Module:
        return SparseMaskedLM(model, sparse=self.cfg.sparse_head, fused_loss=self.cfg.fused_loss)

    def collate(self, examples: list[dict]) -> dict[str, Tensor]:
        ids = torch.stack([torch.as_tensor(e["input_ids"], dtype=torch.long) for e in examples])  # (B, T)
        inputs, labels = ids.clone(), torch.full_like(ids, -100)
        if self.cfg.whole_word:
            starts = _word_starts(examples)  # (B, T)
        for row, example in enumerate(examples):
            gen = example_generator(self.seed, int(example["index"]))
            if self.cfg.whole_word:
                inputs[row], labels[row] = mask_whole_words(ids[row], starts[row], self.cfg, self.special_ids,
                                                            self.mask_id, self.random_pool, gen)
            else:
                inputs[row], labels[row] = mask_tokens(ids[row], self.cfg, self.special_ids, self.mask_id,
                                                       self.random_pool, gen)
        batch = {"input_ids": inputs, "labels": labels}
        if "segment_ids" in examples[0]:
            segments = torch.stack([torch.as_tensor(e["segment_ids"]) for e in examples])  # (B, T)
            batch["attention_mask"] = block_attention_mask(segments, causal=False)
        return batch

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> LossOutput:
        loss_sum, count = module(**batch)  # a SparseMaskedLM from wrap()
        return LossOutput(loss_sum=loss_sum, num_targets=count)


class SparseMaskedLM(nn.Module):
    """Runs the encoder on every token but the LM head only where a token is predicted (about 15% of positions),
    as in cramming (Geiping & Goldstein, 2023): the same loss as the full head, for a fraction of its compute.
    With `sparse=False` the head runs on every position and the logits are then selected (the plain path)."""

    def __init__(self, hf_model: nn.Module, sparse: bool = True, fused_loss: bool = True):
        super().__init__()
        self.hf_model = hf_model  # parameters stay hf_model.* (registered once): export strips the prefix
        self.sparse, self.fused_loss = sparse, fused_loss
        masked_lm_head(hf_model)  # fail now, not at the first step, if there is no head

    def forward(self, input_ids: Tensor, labels: Tensor, attention_mask: Tensor | None = None,
                **kwargs) -> tuple[Tensor, Tensor]:
        keep = labels != -100  # (B, T)
        if self.sparse:
            hidden = self.hf_model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                              **kwargs).last_hidden_state  # (B, T, H)
            logits = masked_lm_head(self.hf_model)(hidden[keep])  # (N, V)
        else:
            logits = self.hf_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits[keep]  # (N, V)
        if self.fused_loss:
            return fused_cross_entropy(logits, labels[keep]), keep.sum()
        return nn.functional.cross_entropy(logits.float(), labels[keep], reduction="sum"), keep.sum()


def mask_tokens(ids: Tensor, cfg: MLMConfig, special_ids: Tensor, mask_id: int, random_pool: Tensor,
                gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Select each non-special token with probability mask_prob; of those, replace replace_with_mask by the mask
    token, replace_with_random by a random non-special token, and leave the rest. Returns (inputs, labels) with
    labels -100 where nothing is predicted."""
    probs = torch.full(ids.shape, cfg.mask_prob)
    probs[torch.isin(ids, special_ids)] = 0.0
    selected = torch.bernoulli(probs, generator=gen).bool()
    return replace_selected(ids, selected, cfg, mask_id, random_pool, gen)


def mask_whole_words(ids: Tensor, word_starts: Tensor, cfg: MLMConfig, special_ids: Tensor, mask_id: int,
                     random_pool: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Whole-word masking: select each word with probability mask_prob and predict all its non-special tokens.

    A word is a token with `word_starts` set and the tokens after it up to the next start (the first token always
    starts one). Since every token belongs to exactly one word, each token is predicted with probability mask_prob,
    as with mask_tokens, so the expected masking rate is mask_prob in every document wherever it falls in a block;
    special tokens are words of their own and never predicted. The 80/10/10 replacement is drawn per token (as in
    Google's BERT-wwm and transformers' DataCollatorForWholeWordMask). Returns (inputs, labels)."""
    starts = word_starts.bool().clone()  # (T,)
    starts[0] = True
    word = torch.cumsum(starts, 0) - 1  # (T,) index of each token's word
    picked = torch.bernoulli(torch.full((int(word[-1]) + 1,), cfg.mask_prob), generator=gen).bool()  # (W,)
    selected = picked[word] & ~torch.isin(ids, special_ids)
    return replace_selected(ids, selected, cfg, mask_id, random_pool, gen)


def replace_selected(ids: Tensor, selected: Tensor, cfg: MLMConfig, mask_id: int, random_pool: Tensor,
                     gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Of the selected tokens, replace replace_with_mask by the mask token and replace_with_random by a random
    non-special token (drawn per token); the rest stay. Returns (inputs, labels), labels -100 where not selected."""
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    draw = torch.rand(ids.shape, generator=gen)
    to_mask = selected & (draw < cfg.replace_with_mask)
    to_random = selected & (draw >= cfg.replace_with_mask) & (draw < cfg.replace_with_mask + cfg.replace_with_random)
    picks = random_pool[torch.randint(len(random_pool), ids.shape, generator=gen)]
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(to_random, picks, inputs)
    return inputs, labels


def _word_starts(examples: list[dict]) -> Tensor:
    """(B, T) bool word-start flags of a batch; a clear error when the blocks carry none."""
    if "word_starts" not in examples[0]:
        raise ConfigError("objective.whole_word is true but the blocks carry no word boundaries: the shards were "
                          "prepared without a segmenter; set data.segmenter to auto or pretokenizer (English) or "
                          "jieba (Chinese), not none, and prepare the data again (plm data prepare / plm pretrain)")
    return torch.stack([torch.as_tensor(e["word_starts"], dtype=torch.bool) for e in examples])
