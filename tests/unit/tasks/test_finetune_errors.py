"""Bad fine-tuning input fails early with a PlmError that says what to change: labels that training never saw,
a missing text column, no task / model / training data; and adapter.name=lora (a clear refusal while LoRA is not
available, a plain merged final/ once it is)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from plmkit import api, load_config
from plmkit.errors import DataError, PlmError

FINETUNE_DEFAULTS = Path(__file__).resolve().parents[3] / "src" / "plmkit" / "resources" / "finetune.yaml"


def test_unseen_validation_label_names_the_file(finetune_cfg, task_files, tmp_path):
    train, dev = task_files("classification", tmp_path / "data")
    dev.write_text(dev.read_text(encoding="utf-8") + "a sentence with a new label\tmaybe\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(str(dev))) as info:
        api.finetune(finetune_cfg("classification", train, dev, tmp_path / "run"), show_progress=False)
    assert "'maybe'" in str(info.value) and "training data" in str(info.value)
    assert "'no'" in str(info.value) and "'yes'" in str(info.value)  # what the model knows


def test_unseen_validation_label_multilabel(finetune_cfg, task_files, tmp_path):
    train, dev = task_files("multilabel", tmp_path / "data")
    dev.write_text(dev.read_text(encoding="utf-8") + '{"text": "the lines", "labels": ["space", "colour"]}\n',
                   encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(str(dev))) as info:
        api.finetune(finetune_cfg("multilabel", train, dev, tmp_path / "run"), show_progress=False)
    assert "'colour'" in str(info.value)


def test_unseen_validation_entity_type_names_the_file(finetune_cfg, task_files, tmp_path):
    train, dev = task_files("ner", tmp_path / "data")
    dev.write_text(dev.read_text(encoding="utf-8") + "\nAcme\tB-ORG\nlines\tO\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(str(dev))) as info:
        api.finetune(finetune_cfg("ner", train, dev, tmp_path / "run"), show_progress=False)
    assert "B-ORG" in str(info.value)


def test_missing_text_column(finetune_cfg, task_files, tmp_path):
    train, dev = task_files("classification", tmp_path / "data")
    lines = train.read_text(encoding="utf-8").splitlines()
    train.write_text("\n".join(["words\tlabel", *lines[1:]]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{train}:1:")) as info:
        api.finetune(finetune_cfg("classification", train, dev, tmp_path / "run"), show_progress=False)
    assert "no text column" in str(info.value) and "task.text_column" in str(info.value)


@pytest.mark.parametrize(("drop", "message"), [
    ("task", "no task: pass --task"),
    ("init.from", "no model to fine-tune: pass --model"),
    ("task.train", "no training data: pass --train"),
])
def test_missing_task_model_or_training_data(drop, message, tiny_encoder, task_files, tmp_path):
    train, dev = task_files("classification", tmp_path / "data")
    settings = {"init.from": str(tiny_encoder), "task.name": "classification", "task.train": str(train),
                "task.validation": str(dev)}
    if drop == "task":
        settings = {"init.from": str(tiny_encoder)}
    else:
        settings.pop(drop)
    out = tmp_path / "run"
    cfg = load_config(FINETUNE_DEFAULTS, [f"{k}={v}" for k, v in settings.items()] + [f"run.output_dir={out}"])
    with pytest.raises(PlmError, match=re.escape(message)):
        api.finetune(cfg, show_progress=False)
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize(("task", "text", "message"), [
    ("classification", "sentence\tlabel\na good film\tpos\na fine film\tpos\n",
     "every example has the label 'pos'; a classifier needs two or more labels"),
    ("ner", "EU\tO\nrejects\tO\n\nPeter\tO\n", "every token is tagged O; NER needs entity tags"),
])
def test_training_data_without_anything_to_learn(task, text, message, finetune_cfg, tmp_path):
    """A one-label column (most likely the wrong column) or NER data without an entity: refused, naming the file."""
    train = tmp_path / ("train.tsv" if task == "classification" else "train.conll")
    train.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{train}: {message}")):
        api.finetune(finetune_cfg(task, train, train, tmp_path / "run"), show_progress=False)


def test_multilabel_with_one_label_is_a_detector(tmp_path, bert_tokenizer):
    from plmkit.tasks import build_task

    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "a", "labels": ["x"]}\n{"text": "b", "labels": []}\n', encoding="utf-8")
    task = build_task(load_config(None, ["task.name=multilabel"]).task, bert_tokenizer, 13)
    assert task.labels_from(task.read(str(train)), str(train)) == ["x"]


def test_missing_model_folder_names_the_model_setting(task_files, tmp_path):
    train, dev = task_files("classification", tmp_path / "data")
    out = tmp_path / "run"
    cfg = load_config(FINETUNE_DEFAULTS, [f"init.from={tmp_path / 'no-model'}", "task.name=classification",
                                          f"task.train={train}", f"task.validation={dev}", f"run.output_dir={out}"])
    with pytest.raises(DataError, match=r"no-model does not exist \(init.from / --model\)") as info:
        api.finetune(cfg, show_progress=False)
    assert "tokenizer.train" not in str(info.value)  # fine-tuning trains no tokenizer: not the advice to give
    assert not out.exists()


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_evaluate_and_predict_name_a_missing_model_folder(command, task_files, tmp_path):
    train, _ = task_files("classification", tmp_path / "data")
    extra = [tmp_path / "preds.jsonl"] if command == "predict" else []
    with pytest.raises(DataError, match=r"folder \S*no-model does not exist \(MODEL_DIR\); MODEL_DIR takes") as info:
        getattr(api, command)(tmp_path / "no-model", "classification", train, *extra, show_progress=False)
    assert "tokenizer.pretrained" not in str(info.value)  # not a setting these commands have


def _head_folder(folder: Path, tiny_encoder: Path, head: str, problem_type: str | None = None) -> Path:
    """A copy of the tiny encoder with a task head of class `head` (random, two labels) and a problem type."""
    import shutil

    import transformers

    model = getattr(transformers, head).from_pretrained(tiny_encoder, num_labels=2, problem_type=problem_type)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_encoder / name, folder / name)
    return folder


@pytest.mark.parametrize(("head", "problem", "task", "found"), [
    ("AutoModelForSequenceClassification", "single_label_classification", "multilabel", "classification"),
    ("AutoModelForSequenceClassification", "single_label_classification", "ner", "classification"),
    ("AutoModelForSequenceClassification", "multi_label_classification", "classification", "multilabel"),
    ("AutoModelForTokenClassification", None, "classification", "ner"),
])
def test_evaluate_refuses_another_tasks_head(head, problem, task, found, tiny_encoder, task_files, tmp_path):
    """A head of another task would load its encoder under a new, random head (or a single-label head would be read
    as multi-label) and score nonsense: refused, naming the task to pass."""
    folder = _head_folder(tmp_path / "model", tiny_encoder, head, problem)
    data, _ = task_files(task, tmp_path / "data")
    with pytest.raises(PlmError, match=rf"fine-tuned for {found} \(.*\), not {task}; pass --task {found}"):
        api.evaluate(folder, task, data, show_progress=False)


def test_evaluate_refuses_a_model_without_a_task_head(tiny_encoder, task_files, tmp_path):
    data, _ = task_files("classification", tmp_path / "data")
    with pytest.raises(PlmError, match=r"has no task head \(BertForMaskedLM\): it is not a fine-tuned model"):
        api.evaluate(tiny_encoder, "classification", data, show_progress=False)


def test_lora_adapter(finetune_cfg, task_files, tiny_encoder, tmp_path):
    """adapter.name=lora: refused with a clear message while LoRA is not implemented; once it is, the run trains
    and final/ is a plain model (adapters merged, no `lora_` weights)."""
    train, dev = task_files("classification", tmp_path / "data")
    out = tmp_path / "run"
    cfg = finetune_cfg("classification", train, dev, out, "adapter.name=lora", "train.epochs=1")
    try:
        result = api.finetune(cfg, show_progress=False)
    except PlmError as e:
        assert "adapter.name=lora" in str(e) and "not available" in str(e)
        assert "adapter.name=none" in str(e)  # what to do instead
        return
    assert result.metrics["steps"] > 0
    with safe_open(str(out / "final" / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert keys and not [k for k in keys if "lora_" in k or k.startswith("base_model.")]
    query = "bert.encoder.layer.0.attention.self.query.weight"  # a LoRA target: the trained update is merged in
    assert not torch.equal(load_file(out / "final" / "model.safetensors")[query],
                           load_file(tiny_encoder / "model.safetensors")[query])
    _, info = AutoModelForSequenceClassification.from_pretrained(out / "final", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_text_the_models_tokenizer_does_not_cover_is_refused(finetune_cfg, task_files, tmp_path):
    """An English model on Chinese reviews: most tokens would be [UNK] (62% for all-MiniLM-L6-v2 on ChnSentiCorp),
    and the run would train on almost nothing; pre-training refuses the same."""
    _, dev = task_files("classification", tmp_path / "data")
    train = tmp_path / "zh.tsv"
    rows = ["这家酒店太差了再也不来了\tno", "房间很干净服务也好\tyes"] * 20
    train.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"\d+% of the tokens of {re.escape(str(train))} are the unknown token "
                                        r"'\[UNK\]': the tokenizer of .* does not cover this text; fine-tune a model "
                                        r"made for its language"):
        api.finetune(finetune_cfg("classification", train, dev, tmp_path / "run"), show_progress=False)


def test_some_unknown_tokens_warn_and_few_pass(capsys, squash):
    from types import SimpleNamespace

    from plmkit.tasks.base import check_unknown_tokens

    tokenizer = SimpleNamespace(unk_token_id=1, unk_token="[UNK]", all_special_ids=[0, 1, 2], name_or_path="m")
    some = [{"input_ids": [0, 1, 5, 6, 7, 8, 2]}]  # [CLS] [UNK] x x x x [SEP]: 1 in 5 text tokens
    assert check_unknown_tokens(tokenizer, some, "f.tsv", refuse=True) == pytest.approx(0.2)
    assert squash("warning: 20% of the tokens of f.tsv are the unknown token") in squash(capsys.readouterr().err)
    assert check_unknown_tokens(tokenizer, [{"input_ids": [0, 5, 6, 2]}], "f.tsv", refuse=True) == 0.0
    assert capsys.readouterr().err == ""


def test_texts_cut_at_max_length_are_counted(finetune_cfg, task_files, tmp_path, capsys, squash):
    """Character-level Chinese at 128 tokens cuts 30% of ChnSentiCorp's reviews: a run says how many it cuts."""
    train, dev = task_files("classification", tmp_path / "data")
    api.finetune(finetune_cfg("classification", train, dev, tmp_path / "run", "task.max_length=6", "train.epochs=1"),
                 show_progress=False)
    assert squash("training examples (100%) fill task.max_length (6 tokens), so longer ones are cut there") in \
        squash(capsys.readouterr().err)
