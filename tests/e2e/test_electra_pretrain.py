"""`plm pretrain configs/debug/electra.yaml`: final/ is the discriminator (ElectraForPreTraining, loads with
AutoModelForPreTraining), final/generator/ the generator (AutoModelForMaskedLM), both with no missing keys, and
`plm finetune --model RUN/final` starts from the discriminator."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    ElectraForMaskedLM,
    ElectraForPreTraining,
)

from plmkit.training.logging import read_metrics

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "debug" / "electra.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def electra_run(tmp_path_factory, plm, last_json) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("electra") / "run"
    cache = tmp_path_factory.mktemp("electra-cache")
    proc = plm("pretrain", CONFIG, "-q", "--set", f"run.output_dir={out}", "--set", f"data.cache_dir={cache}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, last_json(proc.stdout)


def test_pretrain_trains_both_models(electra_run):
    out, result = electra_run
    assert result["steps"] == 20 and result["eval_loss"] < result["initial_eval_loss"]
    assert "eval_ppl" not in result and "initial_eval_ppl" not in result  # exp(weighted sum) is no perplexity
    rows = read_metrics(out / "metrics.jsonl")
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert all(r["mfu"] > 0 for r in rows)
    card = (out / "final" / "README.md").read_text(encoding="utf-8")
    assert "AutoModelForPreTraining" in card and "perplexity" not in card


def test_final_is_the_discriminator_and_generator_is_beside_it(electra_run):
    final = electra_run[0] / "final"
    disc, info = AutoModelForPreTraining.from_pretrained(final, output_loading_info=True)
    assert isinstance(disc, ElectraForPreTraining)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    gen, info = AutoModelForMaskedLM.from_pretrained(final / "generator", output_loading_info=True)
    assert isinstance(gen, ElectraForMaskedLM)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert gen.config.hidden_size == disc.config.hidden_size // 4
    torch.testing.assert_close(gen.electra.embeddings.word_embeddings.weight,  # trained together, saved once each
                               disc.electra.embeddings.word_embeddings.weight)
    assert gen.generator_lm_head.weight.data_ptr() == gen.electra.embeddings.word_embeddings.weight.data_ptr()
    assert (final / "tokenizer.json").is_file() and (final / "generator" / "tokenizer.json").is_file()


def test_finetuning_starts_from_the_discriminator(electra_run, plm, last_json, tmp_path):
    final = electra_run[0] / "final"
    classifier, info = AutoModelForSequenceClassification.from_pretrained(final, num_labels=2,
                                                                           output_loading_info=True)
    assert not info["mismatched_keys"]
    assert all(k.startswith("classifier.") for k in info["missing_keys"])  # only the new head is fresh
    disc = AutoModelForPreTraining.from_pretrained(final)
    torch.testing.assert_close(classifier.electra.encoder.layer[0].output.dense.weight,
                               disc.electra.encoder.layer[0].output.dense.weight)

    rng = random.Random(0)
    words = ["the", "text", "is", "a", "new", "list", "of", "lines", "and", "words", "with", "tabs"]
    rows = []
    for i in range(120):
        sentence = rng.sample(words, 5) + (["whitespace"] if i % 2 else [])
        rows.append(f"{' '.join(sentence)}\t{'yes' if i % 2 else 'no'}")
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    proc = plm("finetune", "--model", final, "--task", "classification", "--train", train, "--out", tmp_path / "ft",
               "-q", "--epochs", "1", "--set", "train.batch_size=16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc.stdout)
    assert result["steps"] > 0 and "eval_accuracy" in result
    tuned = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ft" / "final")
    assert tuned.config.model_type == "electra"
