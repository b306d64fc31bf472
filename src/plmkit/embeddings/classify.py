"""A classifier over static word vectors: the `static` starting point of `plm compare`.

A text becomes the mean and the max of the vectors of its in-vocabulary words (split and lower-cased as the vectors
were trained), standardised on the training subset; a linear layer (logistic regression; sigmoid per label for
multi-label) is trained on it with AdamW. The training subset, the validation rows, the label set, the number of
updates and the metric are those of `api.finetune(cfg, train_limit=n)`, so the row sits next to the transformers'
on the same examples:

    metrics = train_static_classifier(run_cfg, "runs/glove-300d", train_limit=250)
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from plmkit.config import RunConfig, save_config
from plmkit.embeddings.vectors import load_vectors
from plmkit.errors import PlmError
from plmkit.tasks.base import draw_examples
from plmkit.tokenization.vocab import split_words
from plmkit.training.logging import stderr

TASKS = ("classification", "multilabel")
DEFAULT_LR = 1.0e-3
"""AdamW learning rate of the linear classifier when the config sets no train.head_lr (the rate of a new task
head, which this classifier is: 1e-3 in the packaged fine-tuning defaults)."""


def text_features(texts: list[str], kv, lowercase: bool) -> tuple[np.ndarray, float]:
    """(mean and max of the word vectors of each text: (n, 2 * dim); the share of words that have a vector).
    A text without any known word gets zeros."""
    dim = kv.vector_size
    feats = np.zeros((len(texts), 2 * dim), dtype=np.float32)
    known = total = 0
    for row, text in enumerate(texts):
        words = split_words(text, lowercase)
        ids = [kv.key_to_index[w] for w in words if w in kv.key_to_index]
        total, known = total + len(words), known + len(ids)
        if ids:
            vectors = kv.vectors[ids]
            feats[row, :dim], feats[row, dim:] = vectors.mean(0), vectors.max(0)
    return feats, (known / total if total else 0.0)


def _targets(task, examples, multilabel: bool) -> torch.Tensor:
    index = {label: i for i, label in enumerate(task.labels)}
    unseen = sorted({label for e in examples for label in e.labels} - set(index))
    if unseen:
        raise PlmError(f"label(s) {unseen} of the validation data do not occur in the training data")
    if not multilabel:
        return torch.tensor([index[e.labels[0]] for e in examples], dtype=torch.long)
    hot = torch.zeros(len(examples), len(index))
    for row, e in enumerate(examples):
        hot[row, [index[label] for label in e.labels]] = 1.0
    return hot


LOW_COVERAGE = 0.5
"""Below this share of the training texts' words with a vector, the static classifier warns."""


def train_static_classifier(cfg: RunConfig, vectors: str | Path, *, train_limit: int | None = None) -> dict:
    """Train and score the classifier over the static vectors in `vectors` on cfg.task; writes config.yaml,
    metrics.jsonl and results.json into run.output_dir and returns the metrics (steps, train_seconds,
    best_eval_<metric>, ... as api.finetune reports them)."""
    from plmkit.tasks import build_task

    if cfg.task is None or cfg.task.name not in TASKS:
        name = None if cfg.task is None else cfg.task.name
        raise PlmError(f"the static-embedding classifier handles {' and '.join(TASKS)} tasks, not {name!r} "
                       "(a token-level task such as NER needs a tagger over the vectors: not implemented)")
    multilabel = cfg.task.name == "multilabel"
    run_dir = Path(cfg.run.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("results.json", "metrics.jsonl"):  # an earlier run's, perhaps over other vectors: once this
        (run_dir / stale).unlink(missing_ok=True)  # config.yaml is written, they would pass for its results
    save_config(cfg, run_dir / "config.yaml")
    task = build_task(cfg.task, None, cfg.run.seed)  # reading and scoring need no tokenizer
    train_raw, valid_raw, _ = draw_examples(cfg, task, train_limit)
    kv, vocab = load_vectors(vectors)
    lowercase = vocab.lowercase if vocab is not None else True

    def texts(examples):
        return [e.text if e.text_pair is None else f"{e.text} {e.text_pair}" for e in examples]

    x_train, coverage = text_features(texts(train_raw), kv, lowercase)
    if coverage < LOW_COVERAGE:
        stderr.print(f"[yellow]warning: the vectors in {vectors} cover {coverage:.0%} of the words of the training "
                     "texts; a classifier over so few of them measures little (other language or domain? text "
                     "without spaces, such as Chinese, needs word segmentation before training static vectors)")
    x_valid, _ = text_features(texts(valid_raw), kv, lowercase)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_valid = torch.from_numpy((x_train - mean) / std), torch.from_numpy((x_valid - mean) / std)
    y_train, y_valid = _targets(task, train_raw, multilabel), _targets(task, valid_raw, multilabel)
    torch.manual_seed(cfg.run.seed)
    model = nn.Linear(x_train.shape[1], len(task.labels))
    loss_fn = nn.BCEWithLogitsLoss() if multilabel else nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.head_lr or DEFAULT_LR,
                                  weight_decay=cfg.train.weight_decay)
    n, batch = len(x_train), cfg.train.batch_size * cfg.train.grad_accum
    steps = math.ceil(cfg.train.epochs * n / batch) if cfg.train.epochs is not None else cfg.train.max_steps
    per_epoch = math.ceil(n / batch)
    metric = cfg.eval.select_best_by or task.main_metric
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    gen = torch.Generator().manual_seed(cfg.run.seed)
    rows, best, started = [], None, time.time()
    order = torch.randperm(n, generator=gen)
    for step in range(1, steps + 1):
        k = (step - 1) % per_epoch
        if k == 0 and step > 1:
            order = torch.randperm(n, generator=gen)
        idx = order[k * batch:(k + 1) * batch]
        loss = loss_fn(model(x_train[idx]), y_train[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if k == per_epoch - 1 or step == steps:  # the end of an epoch (or of training): evaluate
            row = {"step": step, "epoch": round(step / per_epoch, 3), "loss": loss.item(),
                   **_evaluate(model, task, x_valid, y_valid, valid_raw, loss_fn, multilabel)}
            rows.append(row)
            if key not in row:
                raise PlmError(f"eval.select_best_by: no metric {metric!r}; the static classifier reports "
                               f"{', '.join(k for k in row if k.startswith('eval_'))}")
            lower = key == "eval_loss"
            if best is None or (row[key] < best[key] if lower else row[key] > best[key]):
                best = row
    seconds = round(time.time() - started, 2)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    metrics = {"steps": steps, "train_seconds": seconds, "vectors": str(vectors), "vocab_coverage": round(coverage, 4),
               "features": x_train.shape[1], **{k: v for k, v in rows[-1].items() if k.startswith("eval_")},
               "best_step": best["step"], **{f"best_{k}": v for k, v in best.items() if k.startswith("eval_")}}
    (run_dir / "results.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    return metrics


def _evaluate(model, task, x, y, examples, loss_fn, multilabel: bool) -> dict:
    with torch.no_grad():
        logits = model(x)
        loss = loss_fn(logits, y).item()
    if multilabel:
        outputs = {"probabilities": logits.sigmoid().tolist(), "reference": y.tolist(),
                   "group": [e.group for e in examples]}
    else:
        outputs = {"prediction": logits.argmax(-1).tolist(), "reference": y.tolist()}
    return {"eval_loss": loss, **{f"eval_{k}": v for k, v in task.metrics(outputs).items()}}
