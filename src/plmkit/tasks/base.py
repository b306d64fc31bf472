"""What every fine-tuning task provides (a Protocol, for typing only) and the tasks registry.

A task reads labeled files, turns examples into token ids and labels (`encode`), pads them into batches
(`collate`), computes a summed loss with per-example predictions (`loss`), and scores them (`metrics`). The same
training loop as pre-training runs it.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Protocol

from torch import Tensor, nn

from plmkit.objectives.base import LossOutput
from plmkit.registry import Registry

if TYPE_CHECKING:
    from plmkit.config import RunConfig

tasks = Registry("task")

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")
"""Batch entries the transformers model takes; the rest (labels, groups, word labels) are the task's own."""


def encoded_inputs(encoded, i: int) -> dict:
    """Example i of a tokenizer's batch output: its model inputs (the attention mask is made when padding)."""
    return {k: encoded[k][i] for k in MODEL_KEYS if k in encoded and k != "attention_mask"}


def pad_inputs(tokenizer, examples: list[dict]) -> dict[str, Tensor]:
    """Pad the examples' model inputs to the longest of the batch (the tokenizer's own padding)."""
    return dict(tokenizer.pad([{k: e[k] for k in MODEL_KEYS if k in e} for e in examples], return_tensors="pt"))


def check_unknown_tokens(tokenizer, encoded: list[dict], source: str, *, refuse: bool, warn: bool = True) -> float:
    """The share of the unknown token among the text tokens of `encoded` (special tokens left out), checked as
    pre-training checks its shards (data.pack.check_unknown_share); with `refuse` (training) a share above half
    stops: a model whose tokenizer was made for other text (an English model on Chinese) sees little but one token
    and cannot learn the task."""
    from plmkit.data.pack import check_unknown_share

    unk = tokenizer.unk_token_id
    if unk is None:  # byte-level BPE: every text has tokens
        return 0.0
    special = set(tokenizer.all_special_ids) - {unk}
    ids = [i for example in encoded for i in example["input_ids"] if i not in special]
    name = getattr(tokenizer, "name_or_path", "") or "the model"
    fix = "fine-tune a model made for its language and script (or pre-train one on such text with plm pretrain)"
    return check_unknown_share(tokenizer, sum(i == unk for i in ids), len(ids), of=f"the tokens of {source}",
                               who=f"the tokenizer of {name}", refuse_fix=fix if refuse else None,
                               warn_note="scores will suffer", warn=warn)


def model_inputs(batch: dict) -> dict[str, Tensor]:
    return {k: v for k, v in batch.items() if k in MODEL_KEYS}


def label_kwargs(labels: list[str], **extra) -> dict:
    """The label settings a transformers task model is built and saved with (id2label / label2id)."""
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)}, **extra}


class Task(Protocol):
    model_kind: str
    """Which transformers head the task trains: sequence_classification | token_classification."""
    main_metric: str
    """The metric that picks the best checkpoint and early-stops by default (accuracy, micro_f1, f1)."""
    default_lr: float
    """The learning rate when train.lr is null (the packaged fine-tuning defaults; docs/finetuning.md)."""

    def load(self, path: str) -> list: ...

    def encode(self, examples: list) -> list[dict]: ...

    def wrap(self, model: nn.Module) -> nn.Module: ...

    def collate(self, examples: list[dict]) -> dict[str, Tensor]: ...

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> LossOutput: ...

    def metrics(self, outputs: dict[str, list]) -> dict[str, float]: ...

    def metric_names(self) -> tuple[str, ...]: ...


def draw_examples(cfg: RunConfig, task, train_limit: int | None) -> tuple[list, list, str]:
    """(train, validation, validation source) examples of a fine-tuning run, the one draw `plm finetune` and the
    static-embedding classifier of `plm compare` share: validation from task.validation, else every tenth training
    example (held out, so the best-checkpoint choice never sees training data); then `train_limit` training
    examples drawn with run.seed. Sets task.labels from the whole training file first (a sample may miss a rare
    label), which refuses data with nothing to learn."""
    train_raw = task.read(cfg.task.train)
    task.labels = task.labels_from(train_raw, cfg.task.train)
    if cfg.task.validation:
        valid_raw, source = task.read(cfg.task.validation), cfg.task.validation
    else:
        valid_raw, source = train_raw[::10], f"{cfg.task.train} (every 10th example)"
        train_raw = [e for i, e in enumerate(train_raw) if i % 10]
    if train_limit is not None and train_limit < len(train_raw):
        picked = sorted(random.Random(cfg.run.seed).sample(range(len(train_raw)), train_limit))
        train_raw = [train_raw[i] for i in picked]
    return train_raw, valid_raw, source
