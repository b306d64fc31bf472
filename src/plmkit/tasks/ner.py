"""Named-entity recognition (token classification): the label of each word sits on its first sub-token (the
others are ignored), entity-level precision/recall/F1 with seqeval. Inputs: column files (token first, tag last).
Try it:  plm finetune --model runs/quickstart/final --task ner --train train.conll --validation valid.conll
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from plmkit.errors import DataError
from plmkit.evaluation import ner_metrics
from plmkit.objectives.base import LossOutput
from plmkit.tasks.base import encoded_inputs, label_kwargs, model_inputs, pad_inputs, tasks
from plmkit.tasks.io import is_cjk, is_hf_spec, label_list, read_hf_tagged_sentences, read_tagged_sentences


@dataclass
class NERConfig:
    train: str | None = None
    """Training file: token first, tag last on each line, a blank line between sentences (IOB1/IOB2/BIOES/BMES); or
    a Hugging Face dataset split, hf:NAME[:CONFIG]:SPLIT, with token and tag list columns (tokens, ner_tags)."""
    validation: str | None = None
    """Validation file (same format, or hf:NAME[:CONFIG]:SPLIT); the best checkpoint is chosen on it."""
    max_length: int = 256
    """Longest sentence in sub-word tokens; words past it are predicted O."""

    def validate(self) -> None:
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2; got {self.max_length}")


def align_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """Per sub-token labels: a word's label on its first sub-token, -100 on the rest and on special tokens."""
    aligned, previous = [], None
    for word in word_ids:
        aligned.append(word_labels[word] if word is not None and word != previous else -100)
        previous = word
    return aligned


@tasks.register("ner", config=NERConfig)
class NamedEntities:
    """Named-entity recognition: a tag per word (IOB2), entity-level F1 with seqeval."""

    model_kind = "token_classification"
    main_metric = "f1"
    default_lr = 2e-4
    group_by_length = True

    def __init__(self, cfg: NERConfig, tokenizer, seed: int):
        self.cfg, self.tokenizer, self.seed = cfg, tokenizer, seed
        self.labels: list[str] = []

    def read(self, path: str, require_labels: bool = True) -> list:
        if is_hf_spec(path):
            return read_hf_tagged_sentences(path, require_tags=require_labels)
        return read_tagged_sentences(path, require_tags=require_labels)

    def labels_from(self, sentences: list, source: str = "the training data") -> list[str]:
        labels = label_list(sentences)
        if labels == ["O"]:  # entity-level scores are undefined, and nothing would be learned
            raise DataError(f"{source}: every token is tagged O; NER needs entity tags (B-X / I-X) of at least one "
                            "type (is the tag the last column of each line?)")
        return labels

    def model_kwargs(self) -> dict:
        return label_kwargs(self.labels)

    def encode(self, sentences: list, source: str = "data") -> list[dict]:
        index = {label: i for i, label in enumerate(self.labels)}
        unseen = sorted({t for s in sentences for t in s.tags} - set(index))
        if unseen:
            raise DataError(f"{source}: tag(s) {unseen} do not occur in the training data; the model knows "
                            f"{self.labels}")
        encoded = self.tokenizer([s.tokens for s in sentences], is_split_into_words=True, truncation=True,
                                 max_length=self.cfg.max_length)
        out = []
        for i, sentence in enumerate(sentences):
            word_labels = [index[t] for t in sentence.tags]
            example = encoded_inputs(encoded, i)
            word_ids = encoded.word_ids(i)
            example["label"] = align_labels(word_ids, word_labels)
            example["word_labels"] = word_labels
            # the word each labelled position predicts: a word with no token (e.g. a lone zero-width character the
            # normaliser drops) has none, and the words after it must not shift into its place
            example["label_words"] = [w for w, label in zip(word_ids, example["label"]) if label != -100]
            out.append(example)
        return out

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def collate(self, examples: list[dict]) -> dict[str, Tensor]:
        batch = pad_inputs(self.tokenizer, examples)
        T = batch["input_ids"].shape[1]
        batch["labels"] = torch.tensor([e["label"] + [-100] * (T - len(e["label"])) for e in examples])  # (B, T)
        batch["word_labels"] = [e["word_labels"] for e in examples]
        batch["label_words"] = [e["label_words"] for e in examples]
        return batch

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> LossOutput:
        logits = module(**model_inputs(batch)).logits  # (B, T, L)
        labels = batch["labels"]
        keep = labels != -100
        loss_sum = nn.functional.cross_entropy(logits[keep].float(), labels[keep], reduction="sum")
        predicted = logits.argmax(-1)  # (B, T)
        predictions, references = [], []
        for row, words in enumerate(batch["word_labels"]):
            tags = ["O"] * len(words)  # words without a token, or cut off by max_length, are predicted O
            for word, label in zip(batch["label_words"][row], predicted[row][keep[row]].tolist()):
                tags[word] = self.labels[label]
            predictions.append(tags)
            references.append([self.labels[w] for w in words])
        return LossOutput(loss_sum=loss_sum, num_targets=keep.sum(),
                          outputs={"prediction": predictions, "reference": references})

    def metrics(self, outputs: dict[str, list]) -> dict[str, float]:
        scores = ner_metrics(outputs["prediction"], outputs["reference"])
        flat = {k: scores[k] for k in ("f1", "precision", "recall")}
        for entity, values in scores.get("per_type", {}).items():
            flat[f"{entity}_f1"] = values["f1"]
        return flat

    def metric_names(self) -> tuple[str, ...]:
        """What `metrics` reports: entity-level scores, and F1 per entity type (PER_f1, ...)."""
        types = sorted({tag[2:] for tag in self.labels if tag[:2] in ("B-", "I-")})
        return ("f1", "precision", "recall", *(f"{t}_f1" for t in types))

    def decode(self, outputs: dict[str, list]) -> list[dict]:
        return [{"tags": tags} for tags in outputs["prediction"]]


def entities(tokens: list[str], tags: list[str]) -> list[dict]:
    """The entity spans of one sentence's IOB2 tags (seqeval's reading, as the scores use): type, the first token and
    the one after the last, and their text. A character-level sentence (every token one character, as MSRA's) is
    joined without spaces; otherwise tokens are joined with a space, except next to Han, kana or Hangul."""
    from seqeval.metrics.sequence_labeling import get_entities

    characters = all(len(token) <= 1 for token in tokens)
    spans = []
    for kind, first, last in get_entities(list(tags)):
        words = tokens[first:last + 1]
        text = words[0]
        for before, word in itertools.pairwise(words):
            text += ("" if characters or is_cjk(before[-1:]) or is_cjk(word[:1]) else " ") + word
        spans.append({"type": kind, "start": first, "end": last + 1, "text": text})
    return spans
