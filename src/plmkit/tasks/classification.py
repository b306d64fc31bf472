"""Sequence classification: single-label (softmax; accuracy, macro-F1) and multi-label (sigmoid, tuned threshold;
micro-F1, grouped as HoC scores it). Inputs: TSV/CSV with a header or JSONL.
Try it:  plm finetune --model runs/quickstart/final --task classification --train train.tsv --validation dev.tsv
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from plmkit.errors import ConfigError, DataError
from plmkit.evaluation import classification_metrics, multilabel_metrics, tune_threshold
from plmkit.objectives.base import LossOutput
from plmkit.tasks.base import encoded_inputs, label_kwargs, model_inputs, pad_inputs, tasks
from plmkit.tasks.io import is_hf_spec, label_list, read_hf_text_examples, read_text_examples


@dataclass
class ClassificationConfig:
    train: str | None = None
    """Training file: .tsv/.csv with a header, or .jsonl; or a Hugging Face dataset split, hf:NAME[:CONFIG]:SPLIT."""
    validation: str | None = None
    """Validation file (same format, or hf:NAME[:CONFIG]:SPLIT); the best checkpoint is chosen on it."""
    text_column: str | None = None
    """Text column; null: the first of text, sentence, text_a."""
    text_pair_column: str | None = None
    """Second text of a sentence pair (e.g. text_b); null: single sentences."""
    label_column: str | None = None
    """Label column; null: label or labels."""
    group_column: str | None = None
    """Multi-label only: rows sharing a group (e.g. HoC's index PMID_sN -> PMID) are scored as one."""
    max_length: int = 128
    """Longest input in tokens; longer texts are truncated."""
    label_smoothing: float = 0.0
    """Single-label only: training targets put 1 - label_smoothing on the label and spread the rest evenly (the
    evaluation loss is always the plain cross-entropy)."""
    rdrop: float = 0.0
    """Single-label only, R-Drop: each training batch runs twice (two dropout masks) and the symmetric KL divergence
    between the two predictions, times rdrop, joins the loss; 0: off. Doubles the cost of a step."""

    def validate(self) -> None:
        if self.rdrop < 0:
            raise ValueError(f"rdrop must be >= 0; got {self.rdrop}")
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2; got {self.max_length}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}")


def _encode_texts(tokenizer, examples, max_length: int) -> list[dict]:
    texts = [e.text for e in examples]
    pairs = [e.text_pair for e in examples] if examples and examples[0].text_pair is not None else None
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    return [encoded_inputs(encoded, i) for i in range(len(examples))]


def _warn_lookalikes(labels: list[str], source: str) -> None:
    """Warn about labels that differ only in width, case or surrounding spaces (`1` and the full-width `１`): each is
    a class of its own, which a file that means one class by them does not want."""
    import unicodedata

    from rich.console import Console

    from plmkit.processes import first_process

    if not first_process():  # one process says it
        return
    groups: dict[str, list[str]] = {}
    for label in labels:
        groups.setdefault(unicodedata.normalize("NFKC", label).strip().casefold(), []).append(label)
    for same in (group for group in groups.values() if len(group) > 1):
        Console(stderr=True).print(f"[yellow]warning: {source}: the labels {', '.join(map(repr, same))} differ only in "
                                   "width, case or spaces, and each is a class of its own; write them alike in the "
                                   "file if they mean one class")


def _check_labels(examples, known: list[str], source: str) -> None:
    unseen = sorted({label for e in examples for label in e.labels} - set(known))
    if unseen:
        raise DataError(f"{source}: label(s) {unseen} do not occur in the training data; the model knows "
                        f"{known}")


@tasks.register("classification", config=ClassificationConfig)
class Classification:
    """Single-label classification (sentiment, topic): softmax over the labels; accuracy and macro-F1."""

    model_kind = "sequence_classification"
    main_metric = "accuracy"
    default_lr = 1e-4
    group_by_length = True

    def __init__(self, cfg: ClassificationConfig, tokenizer, seed: int):
        self.cfg, self.tokenizer, self.seed = cfg, tokenizer, seed
        self.labels: list[str] = []

    def read(self, path: str, require_labels: bool = True) -> list:
        reader = read_hf_text_examples if is_hf_spec(path) else read_text_examples
        return reader(path, text_column=self.cfg.text_column, text_pair_column=self.cfg.text_pair_column,
                      label_column=self.cfg.label_column, require_labels=require_labels)

    def labels_from(self, examples: list, source: str = "the training data") -> list[str]:
        labels = label_list(examples)
        if len(labels) == 1:  # a constant column, most likely the wrong one: a one-class head learns nothing
            raise DataError(f"{source}: every example has the label {labels[0]!r}; a classifier needs two or more "
                            "labels (check task.label_column, or the file)")
        _warn_lookalikes(labels, source)
        return labels

    def model_kwargs(self) -> dict:
        return label_kwargs(self.labels, problem_type="single_label_classification")

    def encode(self, examples: list, source: str = "data") -> list[dict]:
        _check_labels(examples, self.labels, source)  # rows without a label (prediction input) pass
        encoded = _encode_texts(self.tokenizer, examples, self.cfg.max_length)
        index = {label: i for i, label in enumerate(self.labels)}
        for enc, example in zip(encoded, examples):
            enc["label"] = index[example.labels[0]] if example.labels else -100
        return encoded

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def collate(self, examples: list[dict]) -> dict[str, Tensor]:
        batch = pad_inputs(self.tokenizer, examples)
        batch["labels"] = torch.tensor([e["label"] for e in examples], dtype=torch.long)  # (B,)
        return batch

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> LossOutput:
        labels = batch["labels"]
        keep = labels != -100
        if module.training and self.cfg.rdrop > 0:
            return self._rdrop_loss(module, batch, keep)
        logits = module(**model_inputs(batch)).logits  # (B, L)
        smoothing = self.cfg.label_smoothing if module.training else 0.0
        loss_sum = nn.functional.cross_entropy(logits[keep].float(), labels[keep], reduction="sum",
                                               label_smoothing=smoothing)
        outputs = {"prediction": logits.argmax(-1).tolist(), "reference": labels.tolist(),
                   "probabilities": logits.float().softmax(-1).tolist()}
        return LossOutput(loss_sum=loss_sum, num_targets=keep.sum(), outputs=outputs)

    def _rdrop_loss(self, module: nn.Module, batch: dict[str, Tensor], keep: Tensor) -> LossOutput:
        """R-Drop (Liang et al., 2021): the batch twice in one forward pass; the mean of the two cross-entropies plus
        rdrop x the symmetric KL divergence between the two predicted distributions, summed over examples."""
        inputs = {k: torch.cat([v, v]) for k, v in model_inputs(batch).items()}
        first, second = module(**inputs).logits.float().chunk(2)  # (B, L) each
        first, second, labels = first[keep], second[keep], batch["labels"][keep]
        ce = sum(nn.functional.cross_entropy(x, labels, reduction="sum", label_smoothing=self.cfg.label_smoothing)
                 for x in (first, second)) / 2
        p, q = first.log_softmax(-1), second.log_softmax(-1)
        kl = (nn.functional.kl_div(p, q, log_target=True, reduction="sum")
              + nn.functional.kl_div(q, p, log_target=True, reduction="sum")) / 2
        return LossOutput(loss_sum=ce + self.cfg.rdrop * kl, num_targets=keep.sum(),
                          metrics={"rdrop_kl": kl.detach() / keep.sum().clamp(min=1)})

    def metrics(self, outputs: dict[str, list]) -> dict[str, float]:
        scores = classification_metrics(outputs["prediction"], outputs["reference"], self.labels)
        return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}

    def metric_names(self) -> tuple[str, ...]:
        """What `metrics` reports (eval.select_best_by may name any of these, or loss)."""
        return ("accuracy", "macro_f1")

    def decode(self, outputs: dict[str, list]) -> list[dict]:
        return [{"label": self.labels[p], "score": round(max(probs), 6)}
                for p, probs in zip(outputs["prediction"], outputs["probabilities"])]


@tasks.register("multilabel", config=ClassificationConfig)
class MultiLabelClassification:
    """Multi-label classification (e.g. HoC): a sigmoid per label, the threshold tuned on validation; micro-F1."""

    model_kind = "sequence_classification"
    main_metric = "micro_f1"
    default_lr = 1e-4
    group_by_length = True

    def __init__(self, cfg: ClassificationConfig, tokenizer, seed: int):
        if cfg.label_smoothing or cfg.rdrop:
            raise ConfigError("task.label_smoothing and task.rdrop are for single-label classification "
                              "(task.name=classification); remove them for multilabel")
        self.cfg, self.tokenizer, self.seed = cfg, tokenizer, seed
        self.labels: list[str] = []
        self.threshold = 0.5
        """Tuned on each evaluation during fine-tuning and saved with the model (config.plmkit_threshold)."""
        self.tune = True
        """False when scoring a finished model: its saved threshold is used, never one tuned on the test data."""

    def read(self, path: str, require_labels: bool = True) -> list:
        reader = read_hf_text_examples if is_hf_spec(path) else read_text_examples
        return reader(path, text_column=self.cfg.text_column, text_pair_column=self.cfg.text_pair_column,
                      label_column=self.cfg.label_column, multilabel=True, group_column=self.cfg.group_column,
                      require_labels=require_labels)

    def labels_from(self, examples: list, source: str = "the training data") -> list[str]:
        labels = label_list(examples)  # one label is a detector: each example has it or not
        if not labels:
            raise DataError(f"{source}: no example has any label, so there is nothing to learn (check "
                            "task.label_column, or the file)")
        _warn_lookalikes(labels, source)
        return labels

    def model_kwargs(self) -> dict:
        return label_kwargs(self.labels, problem_type="multi_label_classification")

    def encode(self, examples: list, source: str = "data") -> list[dict]:
        _check_labels(examples, self.labels, source)
        encoded = _encode_texts(self.tokenizer, examples, self.cfg.max_length)
        index = {label: i for i, label in enumerate(self.labels)}
        for enc, example in zip(encoded, examples):
            hot = [0.0] * len(self.labels)
            for label in example.labels:
                hot[index[label]] = 1.0
            enc["label"], enc["group"] = hot, example.group
        return encoded

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def collate(self, examples: list[dict]) -> dict[str, Tensor]:
        batch = pad_inputs(self.tokenizer, examples)
        batch["labels"] = torch.tensor([e["label"] for e in examples], dtype=torch.float)  # (B, L)
        batch["groups"] = [e.get("group") for e in examples]
        return batch

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> LossOutput:
        logits = module(**model_inputs(batch)).logits.float()  # (B, L)
        labels = batch["labels"]
        loss_sum = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
        outputs = {"probabilities": logits.sigmoid().tolist(), "reference": labels.tolist(),
                   "group": list(batch["groups"])}
        return LossOutput(loss_sum=loss_sum, num_targets=torch.tensor(labels.numel()), outputs=outputs)

    def metrics(self, outputs: dict[str, list]) -> dict[str, float]:
        probs, refs = np.array(outputs["probabilities"]), np.array(outputs["reference"])
        groups = outputs["group"] if all(g is not None for g in outputs["group"]) else None
        if self.tune:
            self.threshold = tune_threshold(probs, refs, groups=groups)
        scores = multilabel_metrics(probs, refs, threshold=self.threshold, groups=groups)
        return {k: scores[k] for k in self.metric_names() if k in scores}

    def metric_names(self) -> tuple[str, ...]:
        """What `metrics` reports (grouped_micro_f1 where task.group_column groups the rows)."""
        return ("micro_f1", "macro_f1", "threshold") + (("grouped_micro_f1",) if self.cfg.group_column else ())

    def decode(self, outputs: dict[str, list]) -> list[dict]:
        return [{"labels": [self.labels[i] for i, p in enumerate(probs) if p >= self.threshold],
                 "probabilities": [round(p, 6) for p in probs]} for probs in outputs["probabilities"]]
