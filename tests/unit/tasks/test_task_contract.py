"""The contract every registered task meets, with a tiny BERT: read -> labels_from -> encode -> collate gives
batches of the right shape and dtype (the same twice), the loss is a finite scalar with gradients everywhere and
per-example outputs, 30 steps overfit one batch, and `metrics` scores the outputs with floats."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from plmkit.config import load_config
from plmkit.models import build_task_model
from plmkit.models.transformer import TASK_CLASSES
from plmkit.tasks import build_task, tasks

B = 8
NAMES = tasks.names()
EXPECTED_METRICS = {"classification": {"accuracy", "macro_f1"}, "multilabel": {"micro_f1", "threshold"},
                    "ner": {"f1", "precision", "recall"}}


def _task(name: str, tokenizer):
    task = build_task(load_config(None, [f"task.name={name}"]).task, tokenizer, 13)
    return task


def _batch(name: str, tokenizer, task_files, folder):
    """(task with its labels set, encoded examples, collated batch of B) from the task's training file."""
    task = _task(name, tokenizer)
    train, _ = task_files(name, folder, n_train=B, n_dev=4)
    examples = task.read(str(train))
    assert len(examples) == B
    task.labels = task.labels_from(examples)
    encoded = task.encode(examples, source=str(train))
    return task, encoded, task.collate(encoded)


def _model(task, tiny_encoder):
    torch.manual_seed(0)
    return build_task_model(str(tiny_encoder), task.model_kind, task.model_kwargs())


def test_the_three_tasks_are_registered():
    assert {"classification", "multilabel", "ner"} <= set(NAMES)
    assert set(EXPECTED_METRICS) == set(NAMES), "a new task needs its metrics in EXPECTED_METRICS"


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry(name, bert_tokenizer):
    entry = tasks.get(name)
    assert entry.name == name and entry.doc
    assert dataclasses.is_dataclass(entry.config)
    cfg = load_config(None, [f"task.name={name}"]).task
    assert isinstance(cfg, entry.config) and cfg.name == name
    task = build_task(cfg, bert_tokenizer, 13)
    assert isinstance(task, entry.factory)
    assert task.model_kind in TASK_CLASSES
    assert task.main_metric in EXPECTED_METRICS[name]


@pytest.mark.parametrize("name", NAMES)
def test_collate_shapes_dtypes_and_determinism(name, bert_tokenizer, task_files, tmp_path):
    task, encoded, batch = _batch(name, bert_tokenizer, task_files, tmp_path)
    assert task.labels and len(set(task.labels)) == len(task.labels)
    ids = batch["input_ids"]
    assert ids.dtype == torch.int64 and ids.dim() == 2 and ids.shape[0] == B
    T = ids.shape[1]
    assert batch["attention_mask"].shape == (B, T)
    labels = batch["labels"]
    if task.model_kind == "token_classification":
        assert labels.dtype == torch.int64 and labels.shape == (B, T)
        assert ((labels == -100) | ((labels >= 0) & (labels < len(task.labels)))).all()
        assert (labels[batch["attention_mask"] == 0] == -100).all()
    elif name == "multilabel":
        assert labels.dtype == torch.float32 and labels.shape == (B, len(task.labels))
        assert set(labels.unique().tolist()) <= {0.0, 1.0}
    else:
        assert labels.dtype == torch.int64 and labels.shape == (B,)
        assert ((labels >= 0) & (labels < len(task.labels))).all()
    again = task.collate(encoded)
    assert batch.keys() == again.keys()
    for key, value in batch.items():
        assert torch.equal(value, again[key]) if torch.is_tensor(value) else value == again[key], key


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_finite_with_per_example_outputs_and_fills_every_grad(name, bert_tokenizer, task_files,
                                                                       tiny_encoder, tmp_path):
    task, _, batch = _batch(name, bert_tokenizer, task_files, tmp_path)
    model = _model(task, tiny_encoder).train()
    out = task.loss(model, batch)
    assert out.loss_sum.dim() == 0 and out.loss_sum.requires_grad
    assert math.isfinite(out.loss_sum.item())
    assert int(out.num_targets) > 0
    assert out.outputs
    for key, values in out.outputs.items():
        assert isinstance(values, list) and len(values) == B, key
    (out.loss_sum / out.num_targets).backward()
    no_grad = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any())]
    assert not no_grad, no_grad


@pytest.mark.parametrize("name", NAMES)
def test_overfits_one_batch(name, bert_tokenizer, task_files, tiny_encoder, tmp_path):
    task, _, batch = _batch(name, bert_tokenizer, task_files, tmp_path)
    model = _model(task, tiny_encoder).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = task.loss(model, batch)
        loss = out.loss_sum / out.num_targets
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] <= 0.7 * losses[0], [round(v, 4) for v in losses]


@pytest.mark.parametrize("name", NAMES)
def test_metrics_are_floats_and_include_the_main_metric(name, bert_tokenizer, task_files, tiny_encoder, tmp_path):
    task, _, batch = _batch(name, bert_tokenizer, task_files, tmp_path)
    model = _model(task, tiny_encoder).eval()
    with torch.no_grad():
        outputs = task.loss(model, batch).outputs
    scores = task.metrics(outputs)
    assert EXPECTED_METRICS[name] <= set(scores) and task.main_metric in scores
    for key, value in scores.items():
        assert isinstance(value, float) and math.isfinite(value), (key, value)
    for key in EXPECTED_METRICS[name] - {"threshold"}:
        assert 0.0 <= scores[key] <= 1.0, (key, scores[key])


@pytest.mark.parametrize("name", NAMES)
def test_decode_gives_one_prediction_per_example_in_the_label_set(name, bert_tokenizer, task_files, tiny_encoder,
                                                                  tmp_path):
    task, _, batch = _batch(name, bert_tokenizer, task_files, tmp_path)
    with torch.no_grad():
        outputs = task.loss(_model(task, tiny_encoder).eval(), batch).outputs
    decoded = task.decode(outputs)
    assert len(decoded) == B
    for item in decoded:
        predicted = [item["label"]] if "label" in item else item.get("labels", item.get("tags"))
        assert predicted is not None and set(predicted) <= set(task.labels), item
