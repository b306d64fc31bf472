"""Model FLOPs and MFU: analytic parameter counts equal transformers' own, the analytic FLOPs of a training step agree
with torch's FlopCounterMode, device names map to the right peak, and every metrics row of a run carries its MFU."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from plmkit import flops
from plmkit.api import pretrain
from plmkit.objectives.mlm import MLMConfig, SparseMaskedLM

SMALL = {"vocab_size": 300, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 96}
CONFIGS = {
    "bert": transformers.BertConfig(**SMALL, max_position_embeddings=80),
    "roberta": transformers.RobertaConfig(**SMALL, max_position_embeddings=80, type_vocab_size=1),
    "gpt2-tied": transformers.GPT2Config(vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=80),
    "gpt2-untied": transformers.GPT2Config(vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=80,
                                           n_inner=96, tie_word_embeddings=False),
    "llama-gqa": transformers.LlamaConfig(**SMALL, num_key_value_heads=2),
    "llama-biases-tied": transformers.LlamaConfig(**SMALL, num_key_value_heads=1, attention_bias=True, mlp_bias=True,
                                                  tie_word_embeddings=True),
    "qwen2-biases": transformers.Qwen2Config(**SMALL, num_key_value_heads=2),
    "mistral-head-dim": transformers.MistralConfig(**SMALL, num_key_value_heads=2, head_dim=32),
}


def _build(config) -> transformers.PreTrainedModel:
    auto = transformers.AutoModelForMaskedLM if config.model_type in ("bert", "roberta") else \
        transformers.AutoModelForCausalLM
    return auto.from_config(config, attn_implementation="sdpa")


@pytest.mark.parametrize("name", CONFIGS)
def test_analytic_parameter_count_equals_transformers_num_parameters(name):
    config = CONFIGS[name]
    model = _build(config)
    counts = flops.parameter_counts(flops.model_shape(config))
    assert counts.total == model.num_parameters()  # exact, tied matrices once
    embedding = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    assert counts.embedding == embedding
    # a config.json (a plain dict) gives the same counts as the config object
    assert flops.parameter_counts(flops.model_shape(json.loads(config.to_json_string()))) == counts
    # the live-module count of FLOPs agrees with the one from the config
    assert flops.module_flops_per_token(model, 64) == flops.flops_per_token(flops.model_shape(config), 64)


def test_unknown_model_type_is_an_error_naming_the_supported_ones():
    with pytest.raises(Exception, match="bert, roberta, gpt2"):
        flops.model_shape({"model_type": "t5"})


def _counted_step_flops(module, **batch) -> int:
    with FlopCounterMode(display=False) as counter:
        out = module(**batch)
        loss = out[0] if isinstance(out, tuple) else out.loss
        loss.backward()
    return counter.get_total_flops()


REALISTIC = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 512}
BATCH, SEQ = 2, 128


@pytest.mark.parametrize("sparse_last_layer", [False, True])
def test_sparse_mlm_bert_step_flops_within_10pct_of_flop_counter_fwd_bwd(sparse_last_layer):
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=2000, **REALISTIC, max_position_embeddings=SEQ)
    model = SparseMaskedLM(_build(config), sparse_last_layer=sparse_last_layer)
    ids = torch.randint(5, 2000, (BATCH, SEQ))
    labels = torch.full_like(ids, -100)
    keep = torch.rand(BATCH, SEQ) < 0.15  # (B, T): the head runs only here
    labels[keep] = ids[keep]
    counted = _counted_step_flops(model, input_ids=ids, labels=labels)
    shape = flops.model_shape(config)
    fraction = keep.float().mean().item()
    model.mask_prob = fraction  # what the last layer's saving is counted at (mask_prob in a run)
    live = flops.module_flops_per_token(model.hf_model, SEQ, head_fraction=fraction) + model.extra_flops_per_token(SEQ)
    analytic = flops.flops_per_token(shape, SEQ, head_fraction=fraction,
                                     last_layer_fraction=fraction if sparse_last_layer else 1.0)
    assert analytic == pytest.approx(live, rel=1e-9)  # the loop's count (live model) and the estimator's agree
    assert BATCH * SEQ * analytic == pytest.approx(counted, rel=0.10)
    # the head adjustment matters here: counting the head at every position would miss by far more than 10%
    assert BATCH * SEQ * flops.flops_per_token(shape, SEQ) > 1.2 * counted
    if sparse_last_layer:  # so does the last layer's: one of two layers, mostly at 15% of the positions
        assert model.extra_flops_per_token(SEQ) < 0
        assert BATCH * SEQ * flops.flops_per_token(shape, SEQ, head_fraction=fraction) > 1.2 * counted
    else:
        assert model.extra_flops_per_token(SEQ) == 0


def test_gpt2_clm_step_flops_within_10pct_of_flop_counter_fwd_bwd():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=2000, n_embd=128, n_layer=2, n_head=4, n_positions=SEQ)
    model = _build(config)
    ids = torch.randint(0, 2000, (BATCH, SEQ))
    counted = _counted_step_flops(model, input_ids=ids, labels=ids)
    analytic = BATCH * SEQ * flops.flops_per_token(flops.model_shape(config), SEQ)
    assert analytic == pytest.approx(counted, rel=0.10)
    # the attention term counts: without it (Q = 0) the estimate is more than 5% short at this width and length
    assert BATCH * SEQ * flops.flops_per_token(flops.model_shape(config), 0) < 0.95 * counted


def test_lora_model_frozen_weights_cost_4_not_6_flops_within_10pct_of_flop_counter():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    # Neglected here: the pooler and classifier run at one position per sequence, not at every token, and the first
    # layer needs no input gradients (nothing before it trains); with 4 layers that is about 5%.
    config = transformers.BertConfig(vocab_size=2000, **{**REALISTIC, "num_hidden_layers": 4}, num_labels=2)
    base = transformers.AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")
    model = peft.get_peft_model(base, peft.LoraConfig(r=8, target_modules=["query", "value"],
                                                       task_type="SEQ_CLS"))
    ids = torch.randint(5, 2000, (BATCH, SEQ))
    counted = _counted_step_flops(model, input_ids=ids, labels=torch.tensor([0, 1]))
    analytic = BATCH * SEQ * flops.module_flops_per_token(model, SEQ)
    assert analytic == pytest.approx(counted, rel=0.10)
    assert analytic < 0.8 * BATCH * SEQ * flops.flops_per_token(flops.model_shape(config), SEQ)


def test_head_fraction_of_objectives():
    assert flops.head_fraction(SimpleNamespace(model_kind="masked_lm", cfg=MLMConfig(mask_prob=0.2))) == 0.2
    assert flops.head_fraction(SimpleNamespace(model_kind="causal_lm", cfg=None)) == 1.0
    assert flops.head_fraction(SimpleNamespace(model_kind="sequence_classification")) == 1.0
    assert flops.head_fraction(SimpleNamespace(model_kind="masked_lm", head_fraction=0.5)) == 0.5


@pytest.mark.parametrize(("name", "key"), [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("NVIDIA H100 PCIe", "h100-pcie"), ("NVIDIA H100 NVL", None),
    ("NVIDIA H200", "h200"), ("NVIDIA GH200 480GB", "h200"), ("NVIDIA A100-SXM4-80GB", "a100"),
    ("NVIDIA A100 80GB PCIe", "a100"), ("NVIDIA L4", "l4"), ("NVIDIA L40S", "l40s"), ("NVIDIA A10", "a10"),
    ("NVIDIA A10G", None), ("NVIDIA GeForce RTX 4090", "rtx4090"), ("Tesla V100-SXM2-16GB", "v100-sxm"),
    ("Tesla V100-PCIE-32GB", "v100-pcie"), ("Tesla T4", "t4"), ("AMD Instinct MI300X", "mi300x"),
    ("NVIDIA GeForce GTX 1080", None),
])
def test_device_names_map_to_the_peak_table(name, key):
    assert flops.device_key(name) == key


def test_peak_table_holds_the_datasheet_figures():
    assert flops.PEAK_FLOPS["h100-sxm", "bf16"] == pytest.approx(989e12, rel=1e-3)
    assert flops.PEAK_FLOPS["h200", "bf16"] == flops.PEAK_FLOPS["h100-sxm", "bf16"]
    assert flops.PEAK_FLOPS["a100", "bf16"] == 312e12
    assert all(v > 1e12 for v in flops.PEAK_FLOPS.values())


def test_cpu_peak_is_measured_once_per_process():
    peak, source = flops.peak_flops("cpu", "fp32")
    assert 1e8 < peak < 1e14 and "measured" in source
    again, _ = flops.peak_flops("cpu", "fp32")
    assert again == peak  # cached: the probe runs once


def test_every_metrics_row_of_a_fit_has_positive_finite_mfu(debug_cfg, metrics, tmp_path):
    cfg = debug_cfg("mlm", tmp_path / "run", "train.max_steps=3", "eval.at_start=false")
    result = pretrain(cfg, show_progress=False)
    rows = metrics(tmp_path / "run")
    assert len(rows) == 3
    config = json.loads((Path(cfg.run.output_dir) / "final" / "config.json").read_text())
    per_token = flops.flops_per_token(flops.model_shape(config), cfg.data.block_size,
                                      head_fraction=cfg.objective.mask_prob,
                                      last_layer_fraction=cfg.objective.mask_prob)
    for row in rows:
        assert math.isfinite(row["mfu"]) and 0 < row["mfu"] < 1
        assert row["flops_per_s"] == pytest.approx(row["tokens_per_s"] * per_token, rel=1e-3)
    assert result.metrics["mfu"] == pytest.approx(sum(r["mfu"] for r in rows) / len(rows), rel=1e-3)
    # the process's peak resident memory on a CPU: torch alone is a few hundred MiB, this machine has 24 GiB
    assert 0.1 < result.metrics["peak_memory_gb"] < 24
