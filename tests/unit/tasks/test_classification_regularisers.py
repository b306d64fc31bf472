"""Classification's optional regularisers: label smoothing changes only the training loss (as torch defines it),
R-Drop runs the batch twice and adds the symmetric KL of the two predictions (zero without dropout), and both are
off by default and validated."""

from __future__ import annotations

import math

import pytest
import torch

from plmkit.config import load_config
from plmkit.errors import ConfigError
from plmkit.models import build_task_model
from plmkit.tasks import build_task


def _setup(tokenizer, task_files, folder, tiny_encoder, *overrides):
    task = build_task(load_config(None, ["task.name=classification", *overrides]).task, tokenizer, 13)
    train, _ = task_files("classification", folder, n_train=8, n_dev=4)
    examples = task.read(str(train))
    task.labels = task.labels_from(examples)
    batch = task.collate(task.encode(examples))
    torch.manual_seed(0)
    model = build_task_model(str(tiny_encoder), task.model_kind, task.model_kwargs())
    with torch.no_grad():
        model.classifier.weight.mul_(100)  # confident predictions, so that smoothing and KL matter
    return task, model, batch


def _set_dropout(model, p: float) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p


def test_label_smoothing_is_torchs_and_only_in_training(bert_tokenizer, task_files, tmp_path, tiny_encoder):
    task, model, batch = _setup(bert_tokenizer, task_files, tmp_path, tiny_encoder, "task.label_smoothing=0.2")
    model.eval()  # no dropout: both computations see the same logits
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        # The predicted labels as targets: smoothing then raises every example's loss. With the real labels, the
        # confidently wrong examples' terms (which smoothing lowers) could cancel the others' in the sum.
        batch = {**batch, "labels": logits.argmax(-1)}
        plain = task.loss(model, batch).loss_sum
        model.train()
        _set_dropout(model, 0.0)  # training mode without dropout
        smoothed = task.loss(model, batch).loss_sum
    ce = torch.nn.functional.cross_entropy
    assert math.isclose(plain, ce(logits, batch["labels"], reduction="sum"), rel_tol=1e-5)
    assert math.isclose(smoothed, ce(logits, batch["labels"], reduction="sum", label_smoothing=0.2), rel_tol=1e-5)
    assert smoothed - plain > 1e-2  # smoothing took effect


def test_rdrop_adds_the_symmetric_kl_of_two_dropout_passes(bert_tokenizer, task_files, tmp_path, tiny_encoder):
    task, model, batch = _setup(bert_tokenizer, task_files, tmp_path, tiny_encoder, "task.rdrop=1.0")
    model.train()
    _set_dropout(model, 0.3)  # the tiny encoder has none
    out = task.loss(model, batch)
    assert out.num_targets == 8 and out.metrics["rdrop_kl"] > 0  # two different dropout masks
    out.loss_sum.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    _set_dropout(model, 0.0)
    with torch.no_grad():
        same = task.loss(model, batch)  # no dropout: both passes agree, no KL, the plain cross-entropy
        model.eval()
        plain = task.loss(model, batch)  # evaluation never runs twice
    assert same.metrics["rdrop_kl"] < 1e-6
    assert math.isclose(same.loss_sum, plain.loss_sum, rel_tol=1e-4)
    assert "rdrop_kl" not in plain.metrics


@pytest.mark.parametrize("override", ["task.rdrop=-1", "task.label_smoothing=1.0"])
def test_bad_values_are_refused(override):
    with pytest.raises(ConfigError, match=override.split(".")[1].split("=")[0]):
        load_config(None, ["task.name=classification", override])


@pytest.mark.parametrize("override", ["task.rdrop=1.0", "task.label_smoothing=0.1"])
def test_multilabel_refuses_them(override, bert_tokenizer):
    cfg = load_config(None, ["task.name=multilabel", override]).task
    with pytest.raises(ConfigError, match="single-label"):
        build_task(cfg, bert_tokenizer, 13)
