"""`plm finetune` -> `plm evaluate` -> `plm predict` for every task, in subprocesses, on a tiny randomly initialised
BERT and tiny data files; `plm list tasks`; a missing --task is one clear line on stderr."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

pytestmark = pytest.mark.slow

TASKS = ["classification", "multilabel", "ner"]
MAIN = {"classification": "accuracy", "multilabel": "micro_f1", "ner": "f1"}
AUTO = {"classification": AutoModelForSequenceClassification, "multilabel": AutoModelForSequenceClassification,
        "ner": AutoModelForTokenClassification}
FILLER = ["the", "text", "is", "a", "new", "list", "of", "lines", "and", "words", "with", "tabs", "in", "each",
          "paragraph"]
PEOPLE, PLACES = ["Alice", "Bob", "Carol"], ["Paris", "London", "Berlin"]


def _sentences(n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = rng.sample(FILLER, rng.randint(4, 7))
        if i % 2 == 0:
            words.insert(rng.randrange(len(words) + 1), "whitespace")
        out.append(words)
    return out


def _write(task: str, path: Path, n: int, seed: int, *, labeled: bool = True) -> Path:
    """classification: TSV, yes iff `whitespace` occurs; multilabel: JSONL label lists; ner: names tagged."""
    sentences = _sentences(n, seed)
    if task == "classification":
        header = "sentence\tlabel" if labeled else "sentence"
        lines = [header] + [" ".join(w) + (f"\t{'yes' if 'whitespace' in w else 'no'}" if labeled else "")
                            for w in sentences]
        text = "\n".join(lines)
    elif task == "multilabel":
        rules = (("space", "whitespace"), ("list", "list"))
        records = [{"text": " ".join(w), **({"labels": [label for label, word in rules if word in w]}
                                            if labeled else {})} for w in sentences]
        text = "\n".join(map(json.dumps, records))
    else:
        blocks = []
        for i, words in enumerate(sentences):
            tagged = [(PEOPLE[i % 3], "B-PER"), *((w, "O") for w in words), (PLACES[i % 3], "B-LOC")]
            blocks.append("\n".join(f"{w}\t{t}" if labeled else w for w, t in tagged))
        text = "\n\n".join(blocks)
    path.write_text(text + "\n", encoding="utf-8")
    return path


SUFFIX = {"classification": ".tsv", "multilabel": ".jsonl", "ner": ".conll"}


@pytest.mark.parametrize("task", TASKS)
def test_finetune_evaluate_predict(task, plm, last_json, tiny_encoder, tmp_path):
    train = _write(task, tmp_path / f"train{SUFFIX[task]}", 48, 1)
    dev = _write(task, tmp_path / f"dev{SUFFIX[task]}", 16, 2)
    out = tmp_path / "run"
    proc = plm("finetune", "--model", tiny_encoder, "--task", task, "--train", train, "--validation", dev,
               "--out", out, "--epochs", "2", "-q", "--set", "train.lr=3e-3", "--set", "train.batch_size=8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc.stdout)
    assert result["output_dir"] == str(out)
    assert result["steps"] == 2 * 48 // 8
    assert result["best_step"] in (6, 12)
    assert 0.0 <= result[f"best_eval_{MAIN[task]}"] <= 1.0
    for name in ("config.yaml", "metrics.jsonl", "results.json", "curves.png", "final/model.safetensors",
                 "checkpoints/best/model.safetensors"):
        assert (out / name).exists(), name
    _, info = AUTO[task].from_pretrained(out / "final", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]

    proc = plm("evaluate", out / "final", "--task", task, "--data", dev, "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    scores = json.loads(lines[0])
    assert scores["task"] == task and scores["examples"] == 16 and "confusion_matrix" not in scores
    if task == "multilabel":  # scored with the threshold saved in final/, not one tuned on this file
        saved = json.loads((out / "final" / "config.json").read_text())["plmkit_threshold"]
        assert scores["threshold"] == saved
    else:
        assert scores[MAIN[task]] == pytest.approx(result[f"best_eval_{MAIN[task]}"], abs=1e-6)
    assert (out / "eval" / f"{task}-dev.json").is_file()

    unlabeled = _write(task, tmp_path / f"new{SUFFIX[task]}", 5, 3, labeled=False)
    preds = tmp_path / "preds.jsonl"
    proc = plm("predict", out / "final", "--task", task, "--data", unlabeled, "--output", preds, "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert last_json(proc.stdout) == {"output": str(preds), "examples": 5}
    rows = [json.loads(line) for line in preds.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 5
    key = {"classification": "label", "multilabel": "labels", "ner": "tags"}[task]
    assert all(key in row for row in rows)


def test_list_tasks(plm):
    proc = plm("list", "tasks")
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = [line.split()[0] for line in proc.stdout.strip().splitlines()]
    assert set(TASKS) <= set(names)
    assert all(len(line.split(maxsplit=1)) == 2 for line in proc.stdout.strip().splitlines())  # with a docstring


def test_finetune_without_task_is_one_clear_error(plm, tiny_encoder, tmp_path):
    train = _write("classification", tmp_path / "train.tsv", 16, 1)
    proc = plm("finetune", "--model", tiny_encoder, "--train", train, "--out", tmp_path / "run", "-q")
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: task.name is missing") and all(task in line for task in TASKS), line
    assert not proc.stdout.strip()
