"""What every objective provides (a Protocol, for typing only), the loss it returns, and the objectives registry.

An objective turns packed blocks into a batch (`collate`) and a batch into a summed loss (`loss`).
The loop divides by the number of targets across all micro-batches and processes, so gradients don't depend on
how a global batch is split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor, nn

from plmkit.registry import Registry

objectives = Registry("objective")

EVAL_INDEX_OFFSET = 1 << 48
"""Added to a validation block's index when seeding its masks, so eval masks never repeat training masks."""


@dataclass
class LossOutput:
    loss_sum: Tensor
    """Sum of the per-target losses in the micro-batch (a scalar that requires grad in training)."""
    num_targets: Tensor
    """Number of targets that loss_sum adds up (an integer scalar)."""
    metrics: dict[str, Tensor] = field(default_factory=dict)
    outputs: dict[str, list] | None = None
    """Per-example predictions and references (tasks), collected during evaluation for the task's metrics."""


class Objective(Protocol):
    model_kind: str
    """Which model class the objective trains: masked_lm | causal_lm | electra | seq2seq_lm."""
    needs: tuple[str, ...]
    """Tokenizer roles the objective cannot work without, e.g. ("mask", "sep")."""

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the loop trains: the transformers model itself, or a thin module around it that keeps its
        parameters (named `hf_model.*`) and computes the objective's loss in its forward."""
        ...

    def collate(self, examples: list[dict]) -> dict[str, Tensor]: ...

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> LossOutput:
        """Summed loss of a batch; `module` is what `wrap` returned (possibly wrapped again by DDP/FSDP)."""
        ...

    # Optional hooks, looked up with hasattr by api.pretrain:
    #   raw_block_size(block_size) -> int: how many packed tokens one example reads when the objective reshapes them
    #       (T5's span corruption reads more than the encoder input it produces).
    #   save_extra(weights, folder, tokenizer): save what the objective trains beyond the exported model (the module
    #       from `wrap` keeps that model under hf_model.*; `weights` is the wrapped module's full state dict) into
    #       final/ before it is moved into place (ELECTRA's generator/).
    #   load_extra(init_from): read back what save_extra wrote, when init.from continues such a run.
    # looked up by the training loop:
    #   perplexity = False: exp(eval loss) is no perplexity (ELECTRA's weighted sum), so no eval_ppl is logged.
    #   extra_flops_per_token(seq_len) -> float, on the module `wrap` returns: training FLOPs per token of what the
    #       module runs beyond the exported model (ELECTRA's generator), added to the model's count for MFU.


def example_generator(seed: int, index: int) -> torch.Generator:
    """A torch.Generator keyed by (run seed, example index): the same example always gets the same randomness,
    however the data is batched, split across processes or resumed."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


def block_attention_mask(segment_ids: Tensor, causal: bool) -> Tensor:
    """Boolean (B, 1, T, T) mask that lets a token attend only to tokens of its own document (and, when causal,
    only to earlier ones). transformers' SDPA attention takes it as the attention_mask as it is."""
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # (B, T, T)
    if causal:
        T = segment_ids.shape[1]
        same &= torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()
    return same[:, None]  # (B, 1, T, T)


def summed_cross_entropy(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy summed over the positions whose label is not -100, computed in float32.

    Only the selected rows of the (B, T, V) logits are upcast, so no extra vocab-sized float32 copy is made."""
    keep = labels != -100  # (B, T)
    selected = logits[keep].float()  # (N, V)
    loss = nn.functional.cross_entropy(selected, labels[keep], reduction="sum")
    return loss, keep.sum()


def unwrap_training_module(module: nn.Module) -> nn.Module:
    """The transformers model inside a module returned by an objective's `wrap` (or the module itself)."""
    return getattr(module, "hf_model", module)
