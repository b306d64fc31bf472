"""Causal language modelling: predict every next token (GPT-2, Llama).

Labels are shifted in `collate` (label t is token t+1, the last is ignored), so the loop counts targets the same
way for every objective.  Try it:  plm pretrain configs/debug/clm.yaml
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from plmkit.objectives.base import LossOutput, block_attention_mask, objectives, summed_cross_entropy


@dataclass
class CLMConfig:
    """Causal LM has no settings of its own."""


@objectives.register("clm", config=CLMConfig)
class CausalLM:
    """Causal LM: next-token prediction over packed blocks (GPT-2, Llama)."""

    model_kind = "causal_lm"
    needs = ("eos",)

    def __init__(self, cfg: CLMConfig, tokenizer, seed: int):
        self.cfg, self.seed = cfg, seed

    def wrap(self, model: nn.Module) -> nn.Module:
        return CausalLMLoss(model)

    def collate(self, examples: list[dict]) -> dict[str, Tensor]:
        ids = torch.stack([torch.as_tensor(e["input_ids"], dtype=torch.long) for e in examples])  # (B, T)
        labels = torch.full_like(ids, -100)
        labels[:, :-1] = ids[:, 1:]  # (B, T): label t is token t+1
        batch = {"input_ids": ids, "labels": labels}
        if "segment_ids" in examples[0]:
            segments = torch.stack([torch.as_tensor(e["segment_ids"]) for e in examples])  # (B, T)
            batch["attention_mask"] = block_attention_mask(segments, causal=True)
        return batch

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> LossOutput:
        loss_sum, count = module(**batch)  # a CausalLMLoss from wrap()
        return LossOutput(loss_sum=loss_sum, num_targets=count)


class CausalLMLoss(nn.Module):
    """The causal LM and its loss in one forward, so that with train.compile the loss is in the compiled graph: on a
    GPU, inductor then fuses the float32 upcast, log-sum-exp and gradient of the (B, T, V) logits into a few passes
    instead of eager cross-entropy's float32 copies (GPT-2 124M: about 50,000 columns at every position)."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf_model = hf_model  # parameters stay hf_model.* (registered once): export strips the prefix

    def forward(self, input_ids: Tensor, labels: Tensor, **kwargs) -> tuple[Tensor, Tensor]:
        logits = self.hf_model(input_ids=input_ids, **kwargs).logits  # (B, T, V)
        return summed_cross_entropy(logits, labels)
