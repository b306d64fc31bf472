"""Fine-tuning data from Hugging Face datasets (`hf:NAME[:CONFIG]:SPLIT`), tested on local datasets (save_to_disk
folders and parquet files) as a hub download would give them: ClassLabel ids read as class names, GLUE's unlabeled
-1, CoNLL-style token and tag lists, and clear errors for bad specs, splits and columns."""

from __future__ import annotations

import datasets
import pytest

from plmkit.errors import DataError
from plmkit.tasks.io import (
    is_hf_spec,
    parse_hf_spec,
    read_hf_tagged_sentences,
    read_hf_text_examples,
)

SENTIMENT = datasets.Features({"sentence": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["negative", "positive"])})
CONLL_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@pytest.fixture(scope="module")
def sst2(tmp_path_factory):
    """A DatasetDict saved with save_to_disk, shaped like stanfordnlp/sst2 (its test split unlabeled: -1)."""
    folder = tmp_path_factory.mktemp("sst2")
    train = datasets.Dataset.from_dict({"sentence": ["a great film", "dull and slow", "loved it"],
                                        "label": [1, 0, 1]}, features=SENTIMENT)
    test = datasets.Dataset.from_dict({"sentence": ["who knows"], "label": [-1]}, features=SENTIMENT)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(folder))
    return folder


@pytest.fixture(scope="module")
def conll(tmp_path_factory):
    """A parquet data folder shaped like CoNLL-2003 on the hub: token lists and ClassLabel tag ids."""
    folder = tmp_path_factory.mktemp("conll")
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=CONLL_TAGS))})
    rows = {"tokens": [["John", "lives", "in", "New", "York"], ["Hi"]], "ner_tags": [[1, 0, 0, 3, 4], [0]]}
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / "train.parquet"))
    return folder


def test_specs_parse_and_bad_ones_say_the_form():
    assert is_hf_spec("hf:stanfordnlp/sst2:train") and not is_hf_spec("data/train.tsv")
    assert parse_hf_spec("hf:stanfordnlp/sst2:train") == ("stanfordnlp/sst2", None, "train")
    assert parse_hf_spec("hf:nyu-mll/glue:sst2:validation") == ("nyu-mll/glue", "sst2", "validation")
    assert parse_hf_spec("hf:stanfordnlp/sst2:train[:100]") == ("stanfordnlp/sst2", None, "train[:100]")  # a slice
    assert parse_hf_spec("hf:wikitext:wikitext-2-raw-v1:train[:10%]") == ("wikitext", "wikitext-2-raw-v1",
                                                                          "train[:10%]")
    for bad in ("hf:sst2", "hf:a:b:c:d", "hf::train"):
        with pytest.raises(DataError, match=r"hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT"):
            parse_hf_spec(bad)


def test_class_label_ids_read_as_class_names(sst2):
    examples = read_hf_text_examples(f"hf:{sst2}:train")
    assert [(e.text, e.labels) for e in examples] == [("a great film", ["positive"]), ("dull and slow", ["negative"]),
                                                      ("loved it", ["positive"])]


def test_an_unlabeled_split_is_refused_for_training_and_read_for_prediction(sst2):
    with pytest.raises(DataError, match=r"row 0: no label \(-1"):
        read_hf_text_examples(f"hf:{sst2}:test")
    assert read_hf_text_examples(f"hf:{sst2}:test", require_labels=False)[0].labels == []


def test_a_missing_split_or_column_names_what_there_is(sst2):
    with pytest.raises(DataError, match=r"no split 'dev'; set the split .* to one of train, test"):
        read_hf_text_examples(f"hf:{sst2}:dev")
    with pytest.raises(DataError, match=r"no text column .*'sentence', 'label'.*task.text_column"):
        read_hf_text_examples(f"hf:{sst2}:train", text_column="review")


def test_a_missing_dataset_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="could not load Hugging Face dataset"):
        read_hf_text_examples(f"hf:{tmp_path / 'nothing-here'}:train")


def test_ner_token_and_tag_lists_from_parquet(conll):
    sentences = read_hf_tagged_sentences(f"hf:{conll}:train")
    assert sentences[0].tokens == ["John", "lives", "in", "New", "York"]
    assert sentences[0].tags == ["B-PER", "O", "O", "B-LOC", "I-LOC"]
    assert sentences[1].tags == ["O"]


def test_ner_tags_must_be_tags(tmp_path):
    rows = {"tokens": [["John", "runs"]], "ner_tags": [[1, 0]]}  # ids without class names
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ids"))
    with pytest.raises(DataError, match="its ids have no class names"):
        read_hf_tagged_sentences(f"hf:{tmp_path / 'ids'}:train")
    datasets.Dataset.from_dict({"text": ["John runs"]}).save_to_disk(str(tmp_path / "text"))
    with pytest.raises(DataError, match=r"no column of tokens \(looked for 'tokens', 'words'; columns: 'text'\)"):
        read_hf_tagged_sentences(f"hf:{tmp_path / 'text'}:train")


def _as_dataset(path, task: str) -> datasets.Dataset:
    """A task file written by the task_files fixture, as the Hugging Face dataset a hub copy of it would be."""
    from plmkit.tasks.io import read_tagged_sentences, read_text_examples

    if task == "ner":
        sentences = read_tagged_sentences(path)
        features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                      "ner_tags": datasets.Sequence(datasets.ClassLabel(names=CONLL_TAGS))})
        return datasets.Dataset.from_dict({"tokens": [s.tokens for s in sentences],
                                           "ner_tags": [[CONLL_TAGS.index(t) for t in s.tags] for s in sentences]},
                                          features=features)
    examples = read_text_examples(path)
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["no", "yes"])})
    return datasets.Dataset.from_dict({"sentence": [e.text for e in examples],
                                       "label": [["no", "yes"].index(e.labels[0]) for e in examples]},
                                      features=features)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["classification", "ner"])
def test_finetune_and_evaluate_from_hf_splits(task, task_files, finetune_cfg, tmp_path):
    from plmkit import api

    train, dev = task_files(task, tmp_path / "files")
    folder = tmp_path / "hub-copy"
    datasets.DatasetDict({"train": _as_dataset(train, task),
                          "validation": _as_dataset(dev, task)}).save_to_disk(str(folder))
    cfg = finetune_cfg(task, f"hf:{folder}:train", f"hf:{folder}:validation", tmp_path / "run", "train.epochs=1")
    result = api.finetune(cfg, show_progress=False)
    metric = "eval_accuracy" if task == "classification" else "eval_f1"
    assert metric in result.metrics
    scored = api.evaluate(tmp_path / "run" / "final", None, f"hf:{folder}:validation", show_progress=False)
    assert scored["data_path"] == f"hf:{folder}:validation" and scored["examples"] == 24
    assert (tmp_path / "run" / "eval" / f"{task}-hub-copy-validation.json").is_file()
    from_file = api.evaluate(tmp_path / "run" / "final", None, str(dev), show_progress=False)
    key = metric.removeprefix("eval_")
    assert scored[key] == pytest.approx(from_file[key])  # the same examples, read from the file or the dataset


def test_the_card_lists_hub_datasets_but_not_local_folders(sst2):
    from plmkit.api import render_finetune_card
    from plmkit.cli import finetune_config

    cfg = finetune_config(None, None, model="m", task="classification", train="hf:stanfordnlp/sst2:train",
                          validation="hf:nyu-mll/glue:sst2:validation", out="runs/sst2")
    front = render_finetune_card(cfg, {}, scratch=True).split("---\n")[1]
    assert "datasets: [stanfordnlp/sst2, nyu-mll/glue]\n" in front
    local = finetune_config(None, None, model="m", task="classification", train=f"hf:{sst2}:train", out="runs/x")
    assert "datasets" not in render_finetune_card(local, {}, scratch=True)
