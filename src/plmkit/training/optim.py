"""AdamW with no weight decay on biases, normalisation layers and embeddings, and the LR schedule."""

from __future__ import annotations

import torch
from torch import nn
from transformers import get_scheduler

from plmkit.config import TrainConfig

SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


def decay_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, not decayed): matrices of linear layers decay; biases, norms and embeddings do not."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        is_norm = "norm" in type(module).__name__.lower()
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))  # a tied weight is grouped by the first module that owns it (the embedding)
            if isinstance(module, nn.Embedding) or is_norm or name == "bias" or param.ndim < 2:
                no_decay.append(param)
            else:
                decay.append(param)
    return decay, no_decay


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay = decay_groups(model)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, max_steps: int):
    """Linear warm-up to cfg.lr, then constant, linear or cosine decay (transformers.get_scheduler)."""
    warmup = round(cfg.warmup_ratio * max_steps) if cfg.warmup_ratio > 0 else cfg.warmup_steps
    return get_scheduler(SCHEDULES[cfg.lr_schedule], optimizer, num_warmup_steps=warmup,
                         num_training_steps=max_steps)
