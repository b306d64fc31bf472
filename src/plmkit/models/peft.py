"""LoRA adapters through `peft` (Hu et al., 2021): low-rank updates on chosen linear layers, the task head trained in
full, and a merged export that loads without `peft`.  Try it:  plm finetune ... --lora
"""

from __future__ import annotations

from torch import nn

from plmkit.config import AdapterConfig
from plmkit.errors import ConfigError

TASK_TYPES = {"sequence_classification": "SEQ_CLS", "token_classification": "TOKEN_CLS"}


def add_lora(model: nn.Module, cfg: AdapterConfig, kind: str, train_pooler: bool = True) -> nn.Module:
    """Wrap `model` in a peft LoRA model; for these task types peft also trains the head (`classifier`) in full. A
    sequence classifier's pooler (BERT's dense + tanh between the encoder and the classifier) is trained in full
    too: it belongs to the path of the head, and a checkpoint saved without one (a masked LM pre-trained from
    scratch) gives it random weights, which frozen would stay random. `train_pooler=False` keeps it frozen, as
    plmkit before 2026-11-28 did (its checkpoints name the pooler's weights without peft's wrapper)."""
    from peft import LoraConfig, TaskType, get_peft_model

    layers = [name for name, module in model.named_modules()
              if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"]  # Conv1D: GPT-2's linear layers
    linear = sorted({name.rsplit(".", 1)[-1] for name in layers})
    missing = [t for t in cfg.target_modules if not any(n == t or n.endswith(f".{t}") for n in layers)]  # as peft
    if missing:
        raise ConfigError(f"adapter.target_modules: this model has no layer named {', '.join(missing)}; its linear "
                          f"layers are {', '.join(linear)} (e.g. --set 'adapter.target_modules=[c_attn]' for GPT-2, "
                          "[q_proj,v_proj] for Llama)")
    base = getattr(model, "base_model", model)
    pooler = ["pooler"] if train_pooler and kind == "sequence_classification" and isinstance(
        getattr(base, "pooler", None), nn.Module) else None
    lora = LoraConfig(task_type=getattr(TaskType, TASK_TYPES[kind]), r=cfg.r, lora_alpha=cfg.alpha,
                      lora_dropout=cfg.dropout, target_modules=list(cfg.target_modules), modules_to_save=pooler)
    return get_peft_model(model, lora)


def merge_lora(peft_model: nn.Module, weights: dict | None = None) -> nn.Module:
    """Load `weights` (a state dict of the peft model, e.g. the best checkpoint) and fold the adapters into the base
    weights: the result is a plain transformers model."""
    if weights is not None:
        peft_model.load_state_dict(weights)
    return peft_model.merge_and_unload()


def trainable_share(model: nn.Module) -> float:
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad) / max(total, 1)


def checkpoint_has_frozen_pooler(checkpoint) -> bool:
    """True when a LoRA checkpoint names a pooler's weights without peft's modules_to_save wrapper: one written
    before the pooler trained with the classifier, which must be resumed with the pooler frozen to load."""
    from pathlib import Path

    from safetensors import safe_open

    path = Path(checkpoint) / "model.safetensors"
    if not path.is_file():
        return False
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
    return any(".pooler." in k for k in keys) and not any("pooler.modules_to_save" in k for k in keys)
