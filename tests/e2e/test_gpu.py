"""GPU runs of the debug configs (pytest -m gpu; skipped without CUDA): bf16 on one GPU, export reloads."""

from __future__ import annotations

import json
import math

import pytest
import torch

from plmkit import load_config
from plmkit.api import pretrain

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("config", ["configs/debug/mlm.yaml", "configs/debug/clm.yaml"])
def test_bf16_debug_run_on_gpu(config, tmp_path):
    cfg = load_config(config, [f"run.output_dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}",
                               "train.precision=bf16", "train.max_steps=40"])
    result = pretrain(cfg, show_progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 41))
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert result.metrics["eval_loss"] < result.metrics["initial_eval_loss"]
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    auto = AutoModelForMaskedLM if "mlm" in config else AutoModelForCausalLM
    _, info = auto.from_pretrained(tmp_path / "run" / "final", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
