"""What a fine-tuning run takes from its inputs and keeps with its model: inputs cut at the model's positions, the
label set of the whole training file, the input columns saved for evaluate / predict, a new head on an already
fine-tuned model, settings checked before training (eval.select_best_by, LoRA layers), and predict without labels."""

from __future__ import annotations

import json
import re

import pytest

from plmkit import api
from plmkit.cli import finetune_config
from plmkit.errors import ConfigError, DataError


def test_inputs_longer_than_the_models_positions_are_cut(finetune_cfg, task_files, tmp_path, capsys, squash):
    train, dev = task_files("classification", tmp_path / "data")
    long_text = " ".join(["whitespace"] + ["lines"] * 300)  # ~300 tokens; the tiny model has 128 positions
    train.write_text(train.read_text(encoding="utf-8") + f"{long_text}\tyes\n", encoding="utf-8")
    result = api.finetune(finetune_cfg("classification", train, dev, tmp_path / "run", "task.max_length=512",
                                       "train.epochs=1"), show_progress=False)
    assert result.metrics["steps"] > 0
    assert squash("task.max_length 512 is more than the model's 128 positions") in squash(capsys.readouterr().err)


def test_a_label_seen_only_in_the_held_out_tenth_is_still_a_label(finetune_cfg, tmp_path):
    rows = ["sentence\tlabel"] + [f"example number {i} with whitespace\t{'rare' if i == 10 else 'ab'[i % 2]}"
                                  for i in range(40)]
    train = tmp_path / "train.tsv"
    train.write_text("\n".join(rows) + "\n", encoding="utf-8")
    api.finetune(finetune_cfg("classification", train, None, tmp_path / "run", "train.epochs=1"),
                 show_progress=False)
    labels = json.loads((tmp_path / "run" / "final" / "config.json").read_text())["id2label"].values()
    assert sorted(labels) == ["a", "b", "rare"]


def _pairs(path, n, seed):
    """text_a, text_b, label: `same` iff the two texts hold the same first word."""
    import random

    rng = random.Random(seed)
    rows = ["text_a\ttext_b\tlabel"]
    for _ in range(n):
        a, b = rng.choice(["lines", "words"]), rng.choice(["lines", "words"])
        rows.append(f"{a} of text\t{b} of text\t{'same' if a == b else 'diff'}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_a_pair_model_is_evaluated_and_predicted_with_its_second_text(finetune_cfg, tmp_path):
    train, dev = _pairs(tmp_path / "train.tsv", 48, 1), _pairs(tmp_path / "dev.tsv", 16, 2)
    api.finetune(finetune_cfg("classification", train, dev, tmp_path / "run", "task.text_pair_column=text_b",
                              "train.epochs=1"), show_progress=False)
    final = tmp_path / "run" / "final"
    saved = json.loads((final / "config.json").read_text())["plmkit_task_inputs"]
    assert saved["text_pair_column"] == "text_b" and saved["max_length"] == 128
    def scores(*overrides):
        out = tmp_path / f"preds{len(overrides)}{overrides[0][-4:] if overrides else ''}.jsonl"
        api.predict(final, "classification", dev, out, overrides=list(overrides), show_progress=False)
        return [json.loads(line)["score"] for line in out.read_text().splitlines()]

    remembered = scores()
    assert remembered == scores("task.text_pair_column=text_b")
    assert remembered != scores("task.text_pair_column=null")  # the first text alone: other inputs
    evaluated = api.evaluate(final, "classification", dev, show_progress=False)
    assert evaluated["examples"] == 16


def test_a_fine_tuned_model_gets_a_new_head_for_other_labels(finetune_cfg, task_files, tmp_path, capsys):
    train, dev = task_files("classification", tmp_path / "data")
    api.finetune(finetune_cfg("classification", train, dev, tmp_path / "first", "train.epochs=1"), show_progress=False)
    three = tmp_path / "three.tsv"
    three.write_text("sentence\tlabel\n" + "".join(f"sample text {i}\t{'abc'[i % 3]}\n" for i in range(30)),
                     encoding="utf-8")
    capsys.readouterr()
    cfg = finetune_cfg("classification", three, None, tmp_path / "second", "train.epochs=1",
                       f"init.from={tmp_path / 'first' / 'final'}")
    assert api.finetune(cfg, show_progress=False).metrics["steps"] > 0
    assert "its head is replaced by a new" in " ".join(capsys.readouterr().err.split())
    assert len(json.loads((tmp_path / "second" / "final" / "config.json").read_text())["id2label"]) == 3


def test_a_metric_the_task_does_not_report_is_refused_before_training(finetune_cfg, task_files, tmp_path):
    train, dev = task_files("classification", tmp_path / "data")
    with pytest.raises(ConfigError, match=r"eval.select_best_by: no metric 'f1'; .* reports loss, accuracy, macro_f1"):
        api.finetune(finetune_cfg("classification", train, dev, tmp_path / "run", "eval.select_best_by=f1"),
                     show_progress=False)
    metrics = tmp_path / "run" / "metrics.jsonl"
    assert not metrics.exists() or metrics.stat().st_size == 0


def test_ner_reports_f1_per_entity_type(finetune_cfg, task_files, tmp_path):
    train, dev = task_files("ner", tmp_path / "data")
    result = api.finetune(finetune_cfg("ner", train, dev, tmp_path / "run", "eval.select_best_by=LOC_f1",
                                       "train.epochs=1"), show_progress=False)
    assert "best_eval_LOC_f1" in result.metrics


def test_max_steps_on_the_command_line_beats_the_packaged_epochs():
    cfg = finetune_config(None, ["train.max_steps=2"])
    assert cfg.train.epochs is None and cfg.train.max_steps == 2
    assert finetune_config(None, ["train.max_steps=2"], epochs=1).train.epochs == 1  # --epochs still wins


def test_out_names_the_run_unless_a_name_is_given():
    """The model card's title: runs/sst2 gives 'sst2', not every fine-tune's 'finetune'."""
    assert finetune_config(None, None, out="runs/sst2").run.name == "sst2"
    assert finetune_config(None, ["run.name=mine"], out="runs/sst2").run.name == "mine"
    assert finetune_config(None, None).run.name == "finetune"
    for out in ("runs/null", "runs/~", "runs/run #1", "runs/true"):  # taken as written, not as YAML
        cfg = finetune_config(None, None, out=out)
        assert cfg.run.output_dir == out and cfg.run.name == out.removeprefix("runs/")


def test_a_hub_models_card_names_it_as_base_model():
    from plmkit.api import render_finetune_card

    cfg = finetune_config(None, None, model="sentence-transformers/all-MiniLM-L6-v2", task="classification",
                          train="t.tsv", out="runs/sst2")
    card = render_finetune_card(cfg, {"eval_accuracy": 0.9}, scratch=False)
    front = card.split("---\n")[1]  # the metadata block the hub reads
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2\n" in front
    assert "# sst2\n" in card
    assert "base_model" not in render_finetune_card(cfg, {}, scratch=True)  # random weights: no base model


def test_multilabel_data_without_any_label_is_refused(finetune_cfg, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"text {i}", "labels": []}) + "\n" for i in range(12)))
    with pytest.raises(DataError, match=re.escape(f"{train}: no example has any label")):
        api.finetune(finetune_cfg("multilabel", train, None, tmp_path / "run"), show_progress=False)


@pytest.mark.parametrize("task", ["classification", "ner"])
def test_predict_does_not_read_labels(task, finetune_cfg, task_files, tmp_path):
    train, dev = task_files(task, tmp_path / "data")
    api.finetune(finetune_cfg(task, train, dev, tmp_path / "run", "train.epochs=1"), show_progress=False)
    text = dev.read_text(encoding="utf-8")
    unseen = text.replace("\tyes\n", "\tmaybe\n", 1) if task == "classification" else text.replace("B-PER", "B-ORG", 1)
    data = tmp_path / f"unseen{dev.suffix}"
    data.write_text(unseen, encoding="utf-8")
    out = api.predict(tmp_path / "run" / "final", task, data, tmp_path / "preds.jsonl", show_progress=False)
    assert out["examples"] == 24


def test_lora_layers_the_model_lacks_are_named_with_those_it_has(finetune_cfg, task_files, tmp_path):
    train, dev = task_files("classification", tmp_path / "data")
    cfg = finetune_cfg("classification", train, dev, tmp_path / "run", "adapter.name=lora",
                       "adapter.target_modules=[c_attn]")
    with pytest.raises(ConfigError, match=r"adapter.target_modules: this model has no layer named c_attn; its linear "
                                          r"layers are .*query.*value"):
        api.finetune(cfg, show_progress=False)


def test_lora_rank_must_be_positive():
    with pytest.raises(ConfigError, match=r"adapter.r must be > 0"):
        finetune_config(None, ["adapter.r=0"])


def test_a_head_for_other_labels_is_drawn_afresh_and_the_same_labels_keep_theirs(tmp_path):
    """Same task and labels: fine-tuning goes on with the saved head. Other labels of the same count: the head is
    drawn again (transformers would load the old one, sizes matching), the encoder is kept."""
    import torch
    import transformers

    from plmkit.models.transformer import build_task_model
    from plmkit.tasks.base import label_kwargs

    ab = label_kwargs(["a", "b"], problem_type="single_label_classification")
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, **ab)
    saved = transformers.BertForSequenceClassification(config)
    with torch.no_grad():
        saved.classifier.weight.fill_(7.0)
    saved.save_pretrained(tmp_path)
    same = build_task_model(str(tmp_path), "sequence_classification", ab)
    other = build_task_model(str(tmp_path), "sequence_classification",
                             label_kwargs(["c", "d"], problem_type="single_label_classification"))
    assert (same.classifier.weight == 7).all()
    assert (other.classifier.weight != 7).all() and other.classifier.weight.std() < 0.1
    assert torch.equal(other.bert.embeddings.word_embeddings.weight, saved.bert.embeddings.word_embeddings.weight)


@pytest.mark.parametrize(("flags", "sets", "named"), [({"epochs": 0}, [], "--epochs"),
                                                     ({"task": "classificatio"}, [], "--task"),
                                                     ({"epochs": 2}, ["train.epochs=-1"], "--set")])
def test_a_bad_shortcut_flag_is_named_as_typed(flags, sets, named):
    with pytest.raises(ConfigError, match=rf"\({re.escape(named)}, on top of .*finetune\.yaml\)"):
        finetune_config(None, sets, **flags)


@pytest.mark.parametrize("task", ["classification", "multilabel"])
def test_labels_that_differ_only_in_width_or_case_are_warned_about(task, tmp_path, capsys, squash):
    from plmkit.tasks.classification import Classification, ClassificationConfig, MultiLabelClassification

    cls = Classification if task == "classification" else MultiLabelClassification
    train = tmp_path / "train.tsv"
    train.write_text("text\tlabel\n好\t1\n差\t0\n好极了\t１\nbad\tNeg\nworse\tneg \n", encoding="utf-8")
    made = cls(ClassificationConfig(), tokenizer=None, seed=0)
    made.labels_from(made.read(str(train)), str(train))
    err = squash(capsys.readouterr().err)
    assert squash("the labels '1', '１' differ only in width, case or spaces, and each is a class of its own") in err
    assert "'Neg'" in err and "'neg'" in err
