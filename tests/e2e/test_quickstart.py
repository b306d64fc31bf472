"""`plm quickstart`, shortened with --max-steps: stdlib corpus -> tokenizer -> small BERT -> final/ ->
fill-mask. (The full-length quickstart is timed separately.)"""

from __future__ import annotations

import pytest
from transformers import AutoModelForMaskedLM, AutoTokenizer

pytestmark = pytest.mark.slow


def test_short_quickstart(plm, last_json, tmp_path):
    out = tmp_path / "qs"
    proc = plm("quickstart", "--out", out, "-q", "--max-steps", "60", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = last_json(proc.stdout)
    assert summary["steps"] == 60 and summary["final"] == str(out / "final")
    assert summary["eval_ppl_before"] > summary["eval_ppl_after"]
    assert summary["fill_mask"] and all(len(guesses) == 3 for guesses in summary["fill_mask"].values())
    assert all(isinstance(g["token"], str) for guesses in summary["fill_mask"].values() for g in guesses)

    model, info = AutoModelForMaskedLM.from_pretrained(out / "final", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    tokenizer = AutoTokenizer.from_pretrained(out / "final")
    assert tokenizer.mask_token is not None and len(tokenizer) <= model.config.vocab_size
    assert (out / "loss.png").is_file() and (out / "cache").is_dir()  # the cache stays inside --out
    # the fine-tuning step: pre-trained and scratch twins under DIR/finetune/, final/ left the pre-trained MLM
    for start in ("pretrained", "scratch"):
        assert 0.0 <= summary["finetune"][start]["accuracy"] <= 1.0
        assert (out / "finetune" / start / "final" / "config.json").is_file()
    assert (out / "final" / "config.json").read_text().count("ForMaskedLM") == 1
