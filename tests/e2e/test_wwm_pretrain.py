"""Whole-word masking end to end: `plm pretrain` on configs/debug/mlm_wwm.yaml (English) and mlm_wwm_zh.yaml (Chinese,
jieba), final/ loads with AutoModelForMaskedLM with no missing keys, `plm data prepare` stores the word starts, and
the Chinese model fine-tunes with `plm finetune` on small made data in the ChnSentiCorp (label column first) and
MSRA (one character per line) formats."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _sets(**values) -> list[str]:
    return [a for key, value in values.items() for a in ("--set", f"{key.replace('__', '.')}={value}")]


@pytest.fixture(scope="module")
def pretrained(plm, last_json, tmp_path_factory):
    """name -> (run folder, result) of `plm pretrain configs/debug/<name>.yaml`, run once per module."""
    runs: dict[str, tuple[Path, dict]] = {}
    cache = tmp_path_factory.mktemp("wwm-cache")

    def run(name: str) -> tuple[Path, dict]:
        if name not in runs:
            out = tmp_path_factory.mktemp(name) / "run"
            proc = plm("pretrain", ROOT / "configs" / "debug" / f"{name}.yaml", "-q",
                       *_sets(run__output_dir=out, data__cache_dir=cache))
            assert proc.returncode == 0, proc.stderr[-3000:]
            runs[name] = (out, last_json(proc.stdout))
        return runs[name]

    return run


@pytest.mark.parametrize("name", ["mlm_wwm", "mlm_wwm_zh"])
def test_pretrain_whole_word_debug_config(pretrained, name):
    out, result = pretrained(name)
    assert result["steps"] == 20 and result["eval_loss"] < result["initial_eval_loss"]
    _, info = AutoModelForMaskedLM.from_pretrained(out / "final", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    report = json.loads((out / "data_report.json").read_text())
    assert 0 < report["train_words"] < report["train_tokens"]  # words of several tokens exist
    if name.endswith("zh"):
        tokenizer = AutoTokenizer.from_pretrained(out / "final")
        assert tokenizer.tokenize("我们一起去公园散步") == list("我们一起去公园散步")


def test_data_prepare_stores_word_starts(plm, last_json, tmp_path):
    config = ROOT / "configs" / "debug" / "mlm_wwm_zh.yaml"
    proc = plm("data", "prepare", config, "-q", *_sets(run__output_dir=tmp_path / "run",
                                                       data__cache_dir=tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc.stdout)
    folder = Path(result["shards"])
    assert (folder / "train-00000.words.bin").stat().st_size == result["train_tokens"]
    assert json.loads((folder / "meta.json").read_text())["segmenter"] == "jieba"
    assert 0 < result["train_words"] < result["train_tokens"]


POSITIVE = ["房间很干净", "服务很热情", "位置很方便", "早餐很丰富", "性价比很高", "环境很安静"]
NEGATIVE = ["房间太小了", "服务很差", "隔音不好", "早餐很难吃", "价格太贵", "卫生很差"]


def _reviews(path: Path, n: int, seed: int) -> Path:
    """ChnSentiCorp's layout: header `label<TAB>text_a`, the label column first; 1 = positive."""
    rng = random.Random(seed)
    rows = ["label\ttext_a"]
    for i in range(n):
        label = i % 2
        parts = rng.sample(POSITIVE if label else NEGATIVE, 2)
        rows.append(f"{label}\t{parts[0]}，{parts[1]}。")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


PEOPLE, PLACES, FILLER = ["张伟", "李娜", "王芳"], ["北京", "上海", "广州"], "今天我们一起去公园散步"


def _tagged(path: Path, n: int, seed: int) -> Path:
    """MSRA's layout: one character per line, `CHAR<TAB>TAG` (IOB2), a blank line between segments."""
    rng = random.Random(seed)
    blocks = []
    for i in range(n):
        person, place = PEOPLE[i % 3], PLACES[rng.randrange(3)]
        chars = [(c, "B-PER" if j == 0 else "I-PER") for j, c in enumerate(person)]
        chars += [(c, "O") for c in "明天去"]
        chars += [(c, "B-LOC" if j == 0 else "I-LOC") for j, c in enumerate(place)]
        chars += [(c, "O") for c in FILLER[:rng.randint(2, 6)]]
        blocks.append("\n".join(f"{c}\t{t}" for c, t in chars))
    path.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    return path


def test_chinese_classification_and_ner_finetune(pretrained, plm, last_json, tmp_path):
    out, _ = pretrained("mlm_wwm_zh")
    model = out / "final"
    train = _reviews(tmp_path / "train.tsv", 60, seed=0)  # no --validation: every 10th row is held out
    proc = plm("finetune", "--model", model, "--task", "classification", "--train", train,
               "--out", tmp_path / "cls", "--epochs", "2", "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc.stdout)
    assert "eval_accuracy" in result or "best_eval_accuracy" in result, result
    _, info = AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls" / "final", output_loading_info=True)
    assert not info["missing_keys"]

    ner_train, ner_valid = _tagged(tmp_path / "train.txt", 40, seed=0), _tagged(tmp_path / "valid.txt", 8, seed=1)
    proc = plm("finetune", "--model", model, "--task", "ner", "--train", ner_train, "--validation", ner_valid,
               "--out", tmp_path / "ner", "--epochs", "2", "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc.stdout)
    assert any(k.endswith("f1") for k in result), result
    final = AutoModelForTokenClassification.from_pretrained(tmp_path / "ner" / "final")
    assert set(final.config.id2label.values()) == {"O", "B-PER", "I-PER", "B-LOC", "I-LOC"}
