"""api.finetune / evaluate / predict end to end on tiny data: final/ is a plain transformers folder (Auto classes and
pipelines load it) holding the best checkpoint's weights, evaluation runs once per epoch, early stopping stops,
and evaluate / predict on final/ agree with the fine-tuning run (multi-label: with its saved threshold)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, pipeline

from plmkit import api
from plmkit.training.logging import read_metrics

TRAIN, DEV, BATCH = 64, 24, 8
STEPS_PER_EPOCH = math.ceil(TRAIN / BATCH)
AUTO = {"classification": AutoModelForSequenceClassification, "multilabel": AutoModelForSequenceClassification,
        "ner": AutoModelForTokenClassification}
PIPELINE = {"classification": "text-classification", "ner": "token-classification"}
LABELS = {"classification": ["no", "yes"], "multilabel": ["list", "space"],
          "ner": ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]}
MAIN = {"classification": "eval_accuracy", "multilabel": "eval_micro_f1", "ner": "eval_f1"}
EPOCHS = {"classification": 10, "ner": 3}
"""Enough for the tiny model to learn each rule; patience 0 runs every epoch even while accuracy sits at 0.5."""
RUN = {task: (f"train.epochs={epochs}", "eval.patience=0") for task, epochs in EPOCHS.items()}


class Run:
    """A finished fine-tuning run: its folder, result metrics, metrics.jsonl rows and data files."""

    def __init__(self, out: Path, metrics: dict, train: Path, dev: Path):
        self.out, self.metrics, self.train, self.dev = out, metrics, train, dev
        self.rows = read_metrics(out / "metrics.jsonl")
        self.evals = [r for r in self.rows if "eval_loss" in r]

    @property
    def final(self) -> Path:
        return self.out / "final"

    def row_at(self, step: int) -> dict:
        return next(r for r in self.evals if r["step"] == step)


@pytest.fixture(scope="module")
def finetuned(finetune_cfg, task_files, tmp_path_factory):
    """finetuned(task, *overrides, invert_dev=False) -> Run, each distinct run trained once per module."""
    runs: dict[tuple, Run] = {}

    def get(task: str, *overrides: str, invert_dev: bool = False) -> Run:
        key = (task, overrides, invert_dev)
        if key not in runs:
            folder = tmp_path_factory.mktemp(f"ft-{task}")
            train, dev = task_files(task, folder / "data", n_train=TRAIN, n_dev=DEV, invert_dev=invert_dev)
            cfg = finetune_cfg(task, train, dev, folder / "run", *overrides)
            result = api.finetune(cfg, show_progress=False)
            runs[key] = Run(folder / "run", result.metrics, train, dev)
        return runs[key]

    return get


def _weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- the run folder and final/ ----------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_final_loads_with_auto_class_and_labels(task, finetuned):
    run = finetuned(task, *RUN[task])
    model, info = AUTO[task].from_pretrained(run.final, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info.get("mismatched_keys")
    assert model.config.num_labels == len(LABELS[task])
    config = json.loads((run.final / "config.json").read_text())
    assert config["id2label"] == {str(i): label for i, label in enumerate(LABELS[task])}
    assert config["label2id"] == {label: i for i, label in enumerate(LABELS[task])}
    card = (run.final / "README.md").read_text(encoding="utf-8")
    assert f"pipeline_tag: {PIPELINE[task]}" in card


def test_text_classification_pipeline(finetuned):
    run = finetuned("classification", *RUN["classification"])
    classify = pipeline("text-classification", model=str(run.final), device="cpu")
    out = classify(["the whitespace in each paragraph", "a new list of words"])
    assert len(out) == 2 and all(o["label"] in LABELS["classification"] and 0 <= o["score"] <= 1 for o in out)


def test_token_classification_pipeline(finetuned):
    run = finetuned("ner", *RUN["ner"])
    tag = pipeline("token-classification", model=str(run.final), device="cpu")
    out = tag("Alice wrapped the lines in Paris")
    assert isinstance(out, list)
    assert all(o["entity"] in LABELS["ner"] and 0 <= o["start"] <= o["end"] for o in out)


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_run_folder_evaluates_once_per_epoch(task, finetuned):
    run = finetuned(task, *RUN[task])
    epochs = EPOCHS[task]
    assert run.metrics["steps"] == epochs * STEPS_PER_EPOCH
    assert [r["step"] for r in run.evals] == [STEPS_PER_EPOCH * e for e in range(1, epochs + 1)]  # not at_start
    assert run.rows[0]["step"] > 0 and all(r["step"] > 0 for r in run.rows)
    for row in run.evals:
        assert 0.0 <= row[MAIN[task]] <= 1.0
    assert (run.out / "checkpoints" / "best" / "model.safetensors").is_file()
    results = json.loads((run.out / "results.json").read_text())
    assert results["best_step"] in [r["step"] for r in run.evals]
    assert results[f"best_{MAIN[task]}"] == max(r[MAIN[task]] for r in run.evals)
    for name in ("config.yaml", "metrics.jsonl", "curves.png", "loss.png"):
        assert (run.out / name).is_file(), name


@pytest.mark.parametrize(("task", "at_least"), [("classification", 0.9), ("ner", 0.5)])
def test_the_tiny_model_learns_the_rule(task, at_least, finetuned):
    run = finetuned(task, *RUN[task])
    scores = [r[MAIN[task]] for r in run.evals]
    assert scores[0] < at_least <= max(scores), scores


# --- best checkpoint and early stopping -------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_final_holds_the_best_checkpoint(task, finetuned):
    run = finetuned(task, *RUN[task])
    final = load_file(run.final / "model.safetensors")
    assert _weights_equal(final, load_file(run.out / "checkpoints" / "best" / "model.safetensors"))


def test_final_is_the_best_not_the_last_weights(finetuned):
    # validation labels are the opposite of training's: the more the model learns, the worse it scores there
    run = finetuned("classification", *RUN["classification"], invert_dev=True)
    last = run.metrics["steps"]
    assert run.metrics["best_step"] < last, run.evals
    assert run.row_at(last)["eval_accuracy"] < run.metrics["best_eval_accuracy"], run.evals
    final = load_file(run.final / "model.safetensors")
    assert _weights_equal(final, load_file(run.out / "checkpoints" / "best" / "model.safetensors"))
    assert not _weights_equal(final, load_file(run.out / "checkpoints" / f"step-{last:06d}" / "model.safetensors"))
    scores = api.evaluate(run.final, "classification", run.dev, show_progress=False)
    assert scores["accuracy"] == pytest.approx(run.metrics["best_eval_accuracy"], abs=1e-6)


def test_early_stopping_when_the_metric_stops_improving(finetuned):
    full = finetuned("classification", "train.epochs=5", "train.lr=1e-9", "eval.patience=0")
    stopped = finetuned("classification", "train.epochs=5", "train.lr=1e-9", "eval.patience=1")
    assert full.metrics["steps"] == 5 * STEPS_PER_EPOCH
    assert len({r["eval_accuracy"] for r in full.evals}) == 1  # a learning rate of 1e-9 changes nothing
    # the second evaluation does not improve on the first: patience 1 is used up there
    assert stopped.metrics["steps"] == 2 * STEPS_PER_EPOCH < full.metrics["steps"]
    assert [r["step"] for r in stopped.evals] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert len(stopped.rows) < len(full.rows) and stopped.rows[-1]["step"] == 2 * STEPS_PER_EPOCH
    assert stopped.metrics["best_step"] == STEPS_PER_EPOCH
    final = load_file(stopped.final / "model.safetensors")
    assert _weights_equal(final, load_file(stopped.out / "checkpoints" / "best" / "model.safetensors"))


# --- evaluate and predict on final/ -----------------------------------------------------------------------------


def test_evaluate_reproduces_the_best_validation_score(finetuned):
    run = finetuned("classification", *RUN["classification"])
    result = api.evaluate(run.final, "classification", run.dev, show_progress=False)
    assert result["accuracy"] == pytest.approx(run.metrics["best_eval_accuracy"], abs=1e-6)
    assert result["examples"] == DEV and result["task"] == "classification"
    written = run.out / "eval" / f"classification-{run.dev.stem}.json"
    assert json.loads(written.read_text())["accuracy"] == result["accuracy"]
    assert (run.out / "eval" / f"classification-{run.dev.stem}-confusion.png").is_file()
    matrix = result["confusion_matrix"]
    assert len(matrix) == 2 and sum(map(sum, matrix)) == DEV
    assert json.loads(written.read_text())["confusion_labels"] == LABELS["classification"]  # the matrix's order


def test_evaluate_keeps_the_results_of_two_files_of_the_same_name(finetuned, tmp_path):
    run = finetuned("classification", *RUN["classification"])
    other = tmp_path / "other" / run.dev.name
    other.parent.mkdir()
    lines = run.dev.read_text().splitlines()
    other.write_text("\n".join(lines[:5]) + "\n")  # the header and 4 examples
    first = api.evaluate(run.final, "classification", run.dev, show_progress=False)
    second = api.evaluate(run.final, "classification", other, show_progress=False)
    again = api.evaluate(run.final, "classification", run.dev, show_progress=False)
    written = sorted((run.out / "eval").glob("classification-*.json"))
    assert len(written) == 2 and (first["examples"], second["examples"]) == (DEV, 4)
    by_path = {json.loads(p.read_text())["data_path"]: json.loads(p.read_text())["examples"] for p in written}
    assert by_path == {str(run.dev.resolve()): DEV, str(other.resolve()): 4} and again == first


def test_evaluate_ner_reproduces_the_best_f1(finetuned):
    run = finetuned("ner", *RUN["ner"])
    result = api.evaluate(run.final, "ner", run.dev, show_progress=False)
    assert result["f1"] == pytest.approx(run.metrics["best_eval_f1"], abs=1e-6)
    assert (run.out / "eval" / f"ner-{run.dev.stem}.json").is_file()


def test_predict_unlabeled_texts(finetuned, tmp_path):
    run = finetuned("classification", *RUN["classification"])
    texts = ["the whitespace in each paragraph", "a new list of words", "tabs and lines"]
    data = tmp_path / "unlabeled.tsv"
    data.write_text("sentence\n" + "\n".join(texts) + "\n", encoding="utf-8")
    out = tmp_path / "preds" / "out.jsonl"
    result = api.predict(run.final, "classification", data, out, show_progress=False)
    assert result == {"output": str(out), "examples": len(texts)}
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == texts
    assert all(r["label"] in LABELS["classification"] and 0 <= r["score"] <= 1 for r in rows)


def test_predict_agrees_with_evaluate(finetuned, tmp_path):
    run = finetuned("classification", *RUN["classification"])
    out = tmp_path / "dev-preds.jsonl"
    api.predict(run.final, "classification", run.dev, out, show_progress=False)  # labels present but unused
    predicted = [json.loads(line)["label"] for line in out.read_text(encoding="utf-8").splitlines()]
    gold = [line.split("\t")[1] for line in run.dev.read_text(encoding="utf-8").splitlines()[1:]]
    accuracy = sum(p == g for p, g in zip(predicted, gold)) / len(gold)
    assert accuracy == pytest.approx(run.metrics["best_eval_accuracy"], abs=1e-6)


def test_predict_ner_tokens_without_tags(finetuned, tmp_path):
    run = finetuned("ner", *RUN["ner"])
    data = tmp_path / "tokens.conll"
    data.write_text("Alice\nwrapped\nthe\nlines\n\nBob\nin\nNew\nYork\n", encoding="utf-8")
    out = tmp_path / "tags.jsonl"
    assert api.predict(run.final, "ner", data, out, show_progress=False)["examples"] == 2
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["tokens"] for r in rows] == [["Alice", "wrapped", "the", "lines"], ["Bob", "in", "New", "York"]]
    assert all(len(r["tags"]) == len(r["tokens"]) and set(r["tags"]) <= set(LABELS["ner"]) for r in rows)
    for row in rows:  # the spans are the tags' own, as seqeval reads them
        from seqeval.metrics.sequence_labeling import get_entities

        assert [(e["type"], e["start"], e["end"] - 1) for e in row["entities"]] == get_entities(row["tags"])
        assert all(e["text"] == " ".join(row["tokens"][e["start"]:e["end"]]) for e in row["entities"])


def test_entities_are_the_spans_seqeval_reads_joined_as_the_script_is():
    from plmkit.tasks.ner import entities

    assert entities(list("李明去了上海浦东"), ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC", "I-LOC"]) == [
        {"type": "PER", "start": 0, "end": 2, "text": "李明"}, {"type": "LOC", "start": 4, "end": 8, "text": "上海浦东"}]
    assert entities(["Bob", "in", "New", "York"], ["B-PER", "O", "B-LOC", "I-LOC"])[1] == \
        {"type": "LOC", "start": 2, "end": 4, "text": "New York"}
    assert entities(["a", "b"], ["O", "O"]) == []
    # character-level sentences join without spaces whatever the script; words join with one, but not next to CJK
    name = entities(list("约翰·史密斯在2008年"), ["B-PER"] + ["I-PER"] * 5 + ["O", "B-DATE"] + ["I-DATE"] * 4)
    assert [e["text"] for e in name] == ["约翰·史密斯", "2008年"]
    assert [e["text"] for e in entities(["北京", "大学", "和", "New", "York"], ["B-ORG", "I-ORG", "O", "B-LOC",
                                                                             "I-LOC"])] == ["北京大学", "New York"]
    assert entities(["東京", "タワー"], ["B-LOC", "I-LOC"])[0]["text"] == "東京タワー"


# --- multi-label: the tuned threshold travels with the model ----------------------------------------------------


def test_multilabel_saves_its_threshold_and_evaluate_does_not_retune(finetuned, monkeypatch):
    run = finetuned("multilabel", "train.epochs=3")
    config = json.loads((run.final / "config.json").read_text())
    threshold = config["plmkit_threshold"]
    assert 0.0 < threshold < 1.0
    assert config["problem_type"] == "multi_label_classification"

    def no_tuning(*args, **kwargs):
        raise AssertionError("evaluate re-tuned the threshold on the evaluation data")

    monkeypatch.setattr("plmkit.tasks.classification.tune_threshold", no_tuning)
    for data in (run.dev, run.train):
        result = api.evaluate(run.final, "multilabel", data, show_progress=False)
        assert result["threshold"] == threshold
        assert 0.0 <= result["micro_f1"] <= 1.0


def test_multilabel_threshold_is_the_one_of_the_best_checkpoint(finetuned):
    # validation labels flipped, best picked by eval_loss: the best checkpoint is the first evaluation
    run = finetuned("multilabel", "train.epochs=6", "eval.patience=0", "eval.select_best_by=eval_loss",
                    invert_dev=True)
    best = run.row_at(run.metrics["best_step"])
    last = run.row_at(run.metrics["steps"])
    assert best["step"] < last["step"] and best["eval_threshold"] != last["eval_threshold"], run.evals
    threshold = json.loads((run.final / "config.json").read_text())["plmkit_threshold"]
    assert threshold == pytest.approx(best["eval_threshold"], abs=1e-6)
    result = api.evaluate(run.final, "multilabel", run.dev, show_progress=False)
    assert result["micro_f1"] == pytest.approx(best["eval_micro_f1"], abs=1e-6)


@pytest.mark.parametrize("task, expected", [("classification", 1e-4), ("ner", 2e-4)])
def test_null_lr_takes_the_task_default(task, expected, finetune_cfg, task_files, tmp_path):
    train, dev = task_files(task, tmp_path / "data", n_train=16, n_dev=8)
    cfg = finetune_cfg(task, train, dev, tmp_path / "run", "train.lr=null", "train.max_steps=2", "train.epochs=null")
    assert cfg.train.lr is None
    api.finetune(cfg, show_progress=False)
    assert cfg.train.lr == expected
    first = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]
    assert first["lr"] <= max(expected, cfg.train.head_lr or 0)


def test_pretraining_refuses_a_null_lr(tmp_path):
    from plmkit import load_config
    from plmkit.errors import ConfigError

    cfg = load_config(Path(__file__).parents[3] / "configs" / "debug" / "mlm.yaml",
                      ["train.lr=null", f"run.output_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match="train.lr is null"):
        api.pretrain(cfg, show_progress=False)


def test_the_multilabel_cards_pipeline_snippet_gives_what_predict_gives(finetuned, tmp_path):
    """The card's snippet, run as written (but for the folder and the text), returns the labels plm predict returns:
    every label's sigmoid score against the threshold tuned on validation, not the top label alone."""
    import re

    run = finetuned("multilabel", "train.epochs=3")
    card = (run.final / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)```", card, re.DOTALL).group(1)
    assert "top_k=None" in snippet and 'function_to_apply="sigmoid"' in snippet
    texts = ["the whitespace in each paragraph", "a new list of words", "tabs and lines"]
    data = tmp_path / "texts.tsv"
    data.write_text("sentence\n" + "\n".join(texts) + "\n", encoding="utf-8")
    api.predict(run.final, "multilabel", data, tmp_path / "preds.jsonl", show_progress=False)
    predicted = [json.loads(line)["labels"] for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    for text, labels in zip(texts, predicted):
        scope: dict = {}
        exec(snippet.replace("path/to/final", str(run.final)).replace("your text", text), scope)  # noqa: S102
        assert sorted(scope["labels"]) == sorted(labels)


def test_the_ner_card_gives_entity_spans(finetuned):
    card = (finetuned("ner", *RUN["ner"]).final / "README.md").read_text(encoding="utf-8")
    assert 'aggregation_strategy="first"' in card  # a word takes its first sub-token's tag, as in training


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_evaluate_and_predict_read_the_task_from_the_model(task, finetuned, tmp_path):
    run = finetuned(task, *RUN[task])
    assert api.evaluate(run.final, None, run.dev, show_progress=False)["task"] == task
    assert (run.out / "eval" / f"{task}-{run.dev.stem}.json").is_file()
    assert api.predict(run.final, None, run.dev, tmp_path / "p.jsonl", show_progress=False)["examples"] == DEV
    row = json.loads((tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert ({"tags", "entities"} <= row.keys()) if task == "ner" else (row["label"] in LABELS[task])


def test_a_classifier_without_problem_type_is_scored_as_single_label(finetuned, tmp_path, capsys, squash):
    """Many hub sentiment models name no problem_type: without --task they are what transformers takes them for."""
    import shutil

    run = finetuned("classification", *RUN["classification"])
    folder = tmp_path / "hub-like"
    shutil.copytree(run.final, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["problem_type"]
    (folder / "config.json").write_text(json.dumps(config))
    assert api.evaluate(folder, None, run.dev, show_progress=False)["task"] == "classification"
    assert squash("names no problem_type: scored as single-label classification") in squash(capsys.readouterr().err)


def test_the_classification_cards_snippet_cuts_long_texts_as_predict_does(finetuned, tmp_path):
    """A text longer than the model's positions: the card's call, run as written, cuts it where plm predict cuts it
    (it crashed before the card passed truncation) and gives predict's label and score."""
    import re

    run = finetuned("classification", *RUN["classification"])
    card = (run.final / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)```", card, re.DOTALL).group(1)
    text = " ".join(["the whitespace in each paragraph of a new list of words"] * 40)
    data = tmp_path / "long.tsv"
    data.write_text(f"sentence\n{text}\n", encoding="utf-8")
    api.predict(run.final, "classification", data, tmp_path / "preds.jsonl", show_progress=False)
    predicted = json.loads((tmp_path / "preds.jsonl").read_text().splitlines()[0])
    scope: dict = {}
    code = snippet.replace("path/to/final", str(run.final)).replace("your text", text)
    exec(code.replace("\npipe([", "\nout = pipe(["), scope)  # noqa: S102
    (result,) = scope["out"]
    assert result["label"] == predicted["label"] and abs(result["score"] - predicted["score"]) < 1e-5
