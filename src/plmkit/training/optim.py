"""AdamW with no weight decay on biases, normalisation layers and embeddings, and the LR schedule."""

from __future__ import annotations

import re

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


def layer_lrs(model: nn.Module, cfg: TrainConfig) -> dict[int, float]:
    """id(param) -> learning rate under train.head_lr and train.layer_lr_decay (empty when both are off).

    The backbone is the transformers base model (`base_model_prefix`, e.g. `bert`); everything outside it is the
    task head. Inside it, layer i of n trains at lr x decay^(n - i), the embeddings at lr x decay^(n + 1), and
    what sits above the layers (a pooler) at lr."""
    if cfg.head_lr is None and cfg.layer_lr_decay == 1.0:
        return {}
    hf = next((m for m in model.modules() if hasattr(m, "base_model_prefix") and hasattr(m, "config")), None)
    if hf is None:
        return {}
    prefix = hf.base_model_prefix
    n = getattr(hf.config, "num_hidden_layers", None) or getattr(hf.config, "n_layer", 0)
    out = {}
    for name, param in model.named_parameters():
        parts = name.split(".")
        if prefix not in parts:
            out[id(param)] = cfg.head_lr if cfg.head_lr is not None else cfg.lr
            continue
        layer = re.search(r"\.(?:layer|layers|h)\.(\d+)\.", name)
        depth = n - int(layer.group(1)) if layer else (n + 1 if "embed" in name or ".wte." in name or ".wpe." in name
                                                         else 0)
        out[id(param)] = cfg.lr * cfg.layer_lr_decay ** depth
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device | str | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters in decay / LR groups; fused (train.fused_optimizer) when torch has a fused
    kernel for `device`, the device the parameters train on (default: where they are now)."""
    decay, no_decay = decay_groups(model)
    lrs = layer_lrs(model, cfg)
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for params, weight_decay in ((decay, cfg.weight_decay), (no_decay, 0.0)):
        for param in params:
            groups.setdefault((lrs.get(id(param), cfg.lr), weight_decay), []).append(param)
    param_groups = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    params = [p for ps in groups.values() for p in ps]
    fused = {"fused": True} if cfg.fused_optimizer and fused_adamw_supported(params, device) else {}
    return torch.optim.AdamW(param_groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps,
                             **fused)


FUSED_DEVICES = ("cpu", "cuda")
"""Device types with a fused AdamW kernel in torch >= 2.4: one kernel per step, not one per tensor and operation."""


def fused_adamw_supported(params: list[nn.Parameter], device: torch.device | str | None = None) -> bool:
    """Whether the fused AdamW kernel can update these parameters (floating point) on `device` (default: theirs)."""
    types = {torch.device(device).type} if device is not None else {p.device.type for p in params}
    return bool(params) and types <= set(FUSED_DEVICES) and all(p.is_floating_point() for p in params)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, max_steps: int):
    """Linear warm-up to cfg.lr, then constant, linear or cosine decay (transformers.get_scheduler)."""
    warmup = round(cfg.warmup_ratio * max_steps) if cfg.warmup_ratio > 0 else cfg.warmup_steps
    return get_scheduler(SCHEDULES[cfg.lr_schedule], optimizer, num_warmup_steps=warmup,
                         num_training_steps=max_steps)
