"""ELECTRA (Clark et al., 2020): a small masked-LM generator fills in 15% of the tokens with samples from its softmax,
and the discriminator learns to tell which tokens were replaced. Loss = generator MLM + disc_weight x discriminator.
Try it:  plm pretrain configs/debug/electra.yaml   (docs/electra.md)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import ElectraForMaskedLM

from plmkit import flops
from plmkit.errors import PlmError
from plmkit.models.electra import build_generator
from plmkit.objectives.base import LossOutput, fused_cross_entropy, objectives
from plmkit.objectives.mlm import MaskedLM, MLMConfig


@dataclass
class ElectraObjectiveConfig:
    mask_prob: float = 0.15
    """Probability that a (non-special) token is masked for the generator; every masked token becomes the mask
    token (the paper's setting), and the generator's sample then replaces it in the discriminator's input."""
    generator_size: float = 0.25
    """Generator width as a fraction of the discriminator's (hidden size and heads; same layers and embeddings)."""
    disc_weight: float = 50.0
    """lambda: weight of the discriminator's replaced-token-detection loss against the generator's MLM loss."""
    temperature: float = 1.0
    """Softmax temperature of the generator's samples (1: sample from its distribution as it is)."""

    def validate(self) -> None:
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1); got {self.mask_prob}")
        if not 0 < self.generator_size <= 1:
            raise ValueError(f"generator_size must be in (0, 1]; got {self.generator_size}")
        if self.disc_weight < 0:
            raise ValueError(f"disc_weight must be >= 0; got {self.disc_weight}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0; got {self.temperature}")


@objectives.register("electra", config=ElectraObjectiveConfig)
class Electra:
    """ELECTRA: a generator (masked LM) corrupts tokens, a discriminator detects the replaced ones."""

    model_kind = "electra"
    needs = ("mask",)
    head_fraction = 1.0
    """The discriminator's head scores every position (the generator's FLOPs are added by the wrapped module)."""
    perplexity = False  # the loss is generator CE + disc_weight x BCE: exp() of it is no perplexity

    def __init__(self, cfg: ElectraObjectiveConfig, tokenizer, seed: int):
        self.cfg, self.seed = cfg, seed
        # The generator's input is masked LM's, with every selected token replaced by the mask token (the paper's).
        self.masker = MaskedLM(MLMConfig(mask_prob=cfg.mask_prob, replace_with_mask=1.0, replace_with_random=0.0),
                               tokenizer, seed)
        self.masker.index_predictions = False  # ElectraPreTraining selects its positions itself
        self.special_ids = self.masker.special_ids
        self.module: ElectraPreTraining | None = None
        self.generator_from: Path | None = None

    def load_extra(self, source: str) -> None:
        """Continue from an ELECTRA run's final/ (init.from): its generator/ becomes the generator that wrap()
        uses, so continued pre-training keeps both halves. A source without generator/ (a hub id, or a discriminator
        alone) gets a new generator, as a run from scratch does."""
        folder = Path(source).expanduser() / "generator"
        self.generator_from = folder if (folder / "config.json").is_file() else None

    def wrap(self, model: nn.Module) -> nn.Module:
        """The discriminator `model` (kept as hf_model) with a generator that shares its embeddings (new, or the one
        load_extra found); wrapping the same model again returns the same module (and so the same generator)."""
        if self.module is None or self.module.hf_model is not model:
            generator = build_generator(model, self.cfg.generator_size, pretrained=self.generator_from)
            self.module = ElectraPreTraining(model, generator, self.cfg, self.special_ids)
        return self.module

    def collate(self, examples: list[dict]) -> dict[str, Tensor]:
        return self.masker.collate(examples)

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> LossOutput:
        """loss_sum / num_targets = mean generator cross-entropy + disc_weight x mean discriminator BCE, with
        num_targets the masked tokens (what the loop counts from `labels`)."""
        parts = module(**batch)  # an ElectraPreTraining from wrap()
        count = parts["masked"]
        loss_sum = parts["generator_loss_sum"] + self.cfg.disc_weight * parts["discriminator_loss"] * count
        with torch.no_grad():
            metrics = {"generator_loss": parts["generator_loss_sum"] / count.clamp(min=1),
                       "discriminator_loss": parts["discriminator_loss"],
                       "discriminator_accuracy": parts["discriminator_accuracy"],
                       "replaced_fraction": parts["replaced_fraction"]}
        return LossOutput(loss_sum=loss_sum, num_targets=count, metrics=metrics)

    def save_extra(self, weights: dict[str, Tensor], folder: Path, tokenizer) -> None:
        """Save the generator into folder/generator as an ElectraForMaskedLM (safetensors) with the tokenizer; its
        weights are `generator.*` in `weights`, its embeddings the discriminator's (`hf_model.electra.embeddings.*`)."""
        if self.module is None:
            raise PlmError("the electra objective has no generator to save: wrap() was never called")
        config = self.module.generator.config
        state = {k.removeprefix("generator."): v for k, v in weights.items() if k.startswith("generator.")}
        shared = "hf_model.electra.embeddings."
        for key, value in weights.items():  # a state dict may list the shared embeddings under one name only
            if key.startswith(shared):
                state.setdefault("electra.embeddings." + key.removeprefix(shared), value)
        state.setdefault("generator_lm_head.weight", state["electra.embeddings.word_embeddings.weight"])
        generator = ElectraForMaskedLM(config)
        generator.load_state_dict(state, strict=True)
        generator.save_pretrained(Path(folder) / "generator")
        tokenizer.save_pretrained(Path(folder) / "generator")


class ElectraPreTraining(nn.Module):
    """The generator and the discriminator trained together. The generator runs its LM head only at the masked
    positions (as SparseMaskedLM does); its samples, drawn without gradient, replace the masked tokens; the
    discriminator then scores every non-special token as original (0) or replaced (1)."""

    def __init__(self, hf_model: nn.Module, generator: nn.Module, cfg: ElectraObjectiveConfig, special_ids: Tensor):
        super().__init__()
        self.hf_model = hf_model  # the discriminator: registered first, so the shared embeddings are hf_model.*
        self.generator = generator
        self.mask_prob, self.temperature = cfg.mask_prob, cfg.temperature
        self.register_buffer("special_ids", special_ids.clone(), persistent=False)

    def extra_flops_per_token(self, seq_len: float) -> float:
        """Training FLOPs per token of the generator (its LM head at mask_prob of the positions): the loop adds them
        to the discriminator's for MFU."""
        return flops.module_flops_per_token(self.generator, seq_len, head_fraction=self.mask_prob)

    def forward(self, input_ids: Tensor, labels: Tensor, attention_mask: Tensor | None = None,
                **kwargs) -> dict[str, Tensor]:
        keep = labels != -100  # (B, T) masked positions
        hidden = self.generator.electra(input_ids=input_ids, attention_mask=attention_mask,
                                        **kwargs).last_hidden_state  # (B, T, Hg)
        logits = self.generator.generator_lm_head(self.generator.generator_predictions(hidden[keep]))  # (N, V)
        targets = labels[keep]  # (N,)
        generator_loss_sum = fused_cross_entropy(logits, targets)
        sampled = sample_replacements(logits.detach(), self.special_ids, self.temperature,
                                      None if self.training else _eval_generator(targets))  # (N,)
        original = torch.where(keep, labels, input_ids)  # (B, T)
        corrupted, replaced = corrupt(original, keep, sampled)
        disc_logits = self.hf_model(input_ids=corrupted, attention_mask=attention_mask, **kwargs).logits  # (B, T)
        scored = ~torch.isin(original, self.special_ids)  # (B, T): no cls, sep, pad
        disc_logits, disc_labels = disc_logits[scored].float(), replaced[scored].float()  # (M,)
        discriminator_loss = (nn.functional.binary_cross_entropy_with_logits(disc_logits, disc_labels, reduction="sum")
                              / max(len(disc_labels), 1))  # the mean over the scored tokens
        with torch.no_grad():
            accuracy = ((disc_logits > 0).float() == disc_labels).float().sum() / max(len(disc_labels), 1)
        return {"generator_loss_sum": generator_loss_sum, "discriminator_loss": discriminator_loss,
                "masked": keep.sum(), "discriminator_accuracy": accuracy,
                "replaced_fraction": disc_labels.sum() / max(len(disc_labels), 1)}


def sample_replacements(logits: Tensor, special_ids: Tensor, temperature: float = 1.0,
                        generator: torch.Generator | None = None) -> Tensor:
    """One token per row of (N, V) generator logits, drawn from softmax(logits / temperature) in float32; special
    tokens are never drawn."""
    if len(logits) == 0:
        return torch.zeros(0, dtype=torch.long, device=logits.device)
    scaled = logits.float() / temperature  # (N, V)
    scaled[:, special_ids[special_ids < scaled.shape[1]]] = float("-inf")
    return torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=generator).squeeze(1)  # (N,)


def corrupt(original: Tensor, masked: Tensor, sampled: Tensor) -> tuple[Tensor, Tensor]:
    """The discriminator's input and labels: `sampled` (N,) written at the N `masked` positions of `original` (B, T);
    a position is labelled 1 (replaced) where its token now differs from the original, so a sample that equals the
    original token counts as original. Returns (corrupted (B, T) int64, replaced (B, T) bool)."""
    corrupted = original.clone()
    corrupted[masked] = sampled.to(original.dtype)
    return corrupted, corrupted != original


def _eval_generator(targets: Tensor) -> torch.Generator:
    """Evaluation samples from a generator seeded by the batch: eval losses repeat, and the global RNG (dropout in
    training) is left alone."""
    seed = int(targets.sum()) + 7919 * len(targets)
    return torch.Generator(device=targets.device).manual_seed(seed)
