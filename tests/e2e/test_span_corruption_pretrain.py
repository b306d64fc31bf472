"""`plm pretrain configs/debug/span_corruption.yaml`: a T5 trained by span corruption whose final/ loads with
AutoModelForSeq2SeqLM (no missing keys), keeps the sentinel tokens, generates, and resumes with the same ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from plmkit import load_config
from plmkit.objectives.span_corruption import raw_length_for, sentinel_tokens
from plmkit.training.logging import read_metrics

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "debug" / "span_corruption.yaml"
pytestmark = pytest.mark.slow


def test_span_corruption_debug_run_exports_a_seq2seq_model(plm, last_json, tmp_path, e2e_cache):
    out = tmp_path / "run"
    sets = ["--set", f"run.output_dir={out}", "--set", f"data.cache_dir={e2e_cache}"]
    proc = plm("pretrain", CONFIG, "-q", *sets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc.stdout)
    cfg = load_config(CONFIG)
    assert result["steps"] == cfg.train.max_steps
    assert result["eval_loss"] < result["initial_eval_loss"]
    rows = read_metrics(out / "metrics.jsonl")
    assert rows[-1]["loss"] < rows[0]["loss"]
    # tokens_seen counts encoder input tokens: every batch is batch_size x block_size, fixed by the length arithmetic
    assert result["tokens_seen"] == cfg.train.max_steps * cfg.train.batch_size * cfg.data.block_size

    model, info = AutoModelForSeq2SeqLM.from_pretrained(out / "final", output_loading_info=True)
    assert type(model).__name__ == "T5ForConditionalGeneration"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    tokenizer = AutoTokenizer.from_pretrained(out / "final")
    names = sentinel_tokens(cfg.objective.num_sentinels)
    ids = tokenizer.convert_tokens_to_ids(names)
    assert tokenizer.unk_token_id not in ids and len(set(ids)) == len(names)
    assert max(ids) < model.config.vocab_size == len(tokenizer)
    assert "AutoModelForSeq2SeqLM" in (out / "final" / "README.md").read_text(encoding="utf-8")

    prompt = tokenizer("The <extra_id_0> of the module.", return_tensors="pt").input_ids
    assert ids[0] in prompt[0].tolist()  # the sentinel is one token
    with torch.no_grad():
        generated = model.generate(prompt, max_new_tokens=5, do_sample=False)
    assert generated.shape[0] == 1 and generated.shape[1] > 1

    # A resumed run reads run_dir/tokenizer and adds the sentinels again: the same ids, so the checkpoint fits.
    proc = plm("pretrain", CONFIG, "-q", "--resume", *sets, "--set", "train.max_steps=25")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert last_json(proc.stdout)["steps"] == 25
    resumed = AutoTokenizer.from_pretrained(out / "final")
    assert resumed.convert_tokens_to_ids(names) == ids and len(resumed) == len(tokenizer)
    assert raw_length_for(cfg.data.block_size, 0.15, 3.0) == (34, 8)  # what the config's comment says
