"""plm estimate for ELECTRA (generator + discriminator) and T5 (encoder + decoder): parameters and FLOPs are those of
the models the objective trains, as the training loop counts them for MFU; memory adds up both stacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from plmkit import flops
from plmkit.config import load_config
from plmkit.errors import ConfigError
from plmkit.estimate import STRATEGIES, activation_bytes, estimate, load_model_spec
from plmkit.models import build_model
from plmkit.objectives import build_objective
from plmkit.tokenization import train_tokenizer

ROOT = Path(__file__).resolve().parents[2]
DEBUG = ROOT / "configs" / "debug"


def _docs() -> list[str]:
    text = (ROOT / "tests" / "fixtures" / "tiny.txt").read_text(encoding="utf-8")
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def _as_trained(config: Path, tmp_path: Path):
    """The model, wrapped as the loop trains it, and the objective that plm pretrain builds from `config`, with a
    tokenizer of exactly tokenizer.train.vocab_size tokens."""
    cfg = load_config(config)
    tokenizer = train_tokenizer(_docs(), cfg.tokenizer, cfg.model.arch, tmp_path, show_progress=False)
    assert len(tokenizer) == cfg.tokenizer.train.vocab_size  # the estimate's assumption holds for this corpus
    objective = build_objective(cfg.objective, tokenizer, cfg.run.seed)
    model = build_model(cfg.model, tokenizer, objective.model_kind)
    return cfg, model, objective


def test_electra_counts_what_the_loop_logs_mfu_against(tmp_path):
    config = DEBUG / "electra.yaml"
    cfg, model, objective = _as_trained(config, tmp_path)
    wrapped = objective.wrap(model)
    seq = cfg.data.block_size
    loop = (flops.module_flops_per_token(model, seq, head_fraction=flops.head_fraction(objective))
            + wrapped.extra_flops_per_token(seq))
    result = estimate(str(config), tokens="1M", hardware="l4", mfu=0.3)
    assert result["arch"] == "electra"
    assert result["flops_per_token"] == pytest.approx(loop)
    unique = {id(p): p.numel() for p in wrapped.parameters()}  # the shared embeddings once
    assert result["parameters"] == sum(unique.values())
    assert result["parameters"] > model.num_parameters()  # the generator is counted


def test_t5_counts_what_the_loop_logs_mfu_against(tmp_path):
    config = DEBUG / "span_corruption.yaml"
    cfg, model, objective = _as_trained(config, tmp_path)
    raw = objective.raw_block_size(cfg.data.block_size)  # what data prepare packs per example
    seq = flops.sequence_length([{"input_ids": [0] * raw}], objective)
    assert seq == cfg.data.block_size  # per encoder input token, the tokens the loop counts
    loop = flops.module_flops_per_token(model, seq, head_fraction=flops.head_fraction(objective))
    result = estimate(str(config), tokens="1M", hardware="l4", mfu=0.3)
    assert result["arch"] == "t5" and result["seq_len"] == cfg.data.block_size
    assert result["head_fraction"] == pytest.approx(objective.head_fraction)
    assert result["flops_per_token"] == pytest.approx(loop)
    assert result["parameters"] == model.num_parameters()  # 300 tokens + the 100 sentinels the objective adds
    assert 0 < result["non_embedding_parameters"] < result["parameters"]


def test_a_wider_generator_costs_more(tmp_path):
    small = estimate(str(DEBUG / "electra.yaml"), tokens="1M", hardware="l4", mfu=0.3)
    path = tmp_path / "electra.yaml"
    text = (DEBUG / "electra.yaml").read_text(encoding="utf-8")
    path.write_text(text.replace("generator_size: 0.25", "generator_size: 1.0"), encoding="utf-8")
    assert load_config(path).objective.generator_size == 1.0
    wide = estimate(str(path), tokens="1M", hardware="l4", mfu=0.3)
    assert wide["flops_per_token"] > small["flops_per_token"] and wide["parameters"] > small["parameters"]


def test_electra_folder_with_its_saved_generator(tmp_path):
    """A plmkit ELECTRA run's final/ holds generator/: the estimate counts that generator, not a default one."""
    disc = transformers.ElectraConfig(vocab_size=500, embedding_size=32, hidden_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, intermediate_size=256, max_position_embeddings=128)
    disc.save_pretrained(tmp_path)
    default = estimate(str(tmp_path), tokens="1M", hardware="l4", mfu=0.3)
    generator = transformers.ElectraConfig(**{**disc.to_dict(), "hidden_size": 32, "num_attention_heads": 2,
                                              "intermediate_size": 128})
    generator.save_pretrained(tmp_path / "generator")
    saved = estimate(str(tmp_path), tokens="1M", hardware="l4", mfu=0.3)
    with torch.device("meta"):
        d, g = transformers.ElectraForPreTraining(disc), transformers.ElectraForMaskedLM(generator)
    shared = sum(p.numel() for p in g.electra.embeddings.parameters())
    assert saved["parameters"] == d.num_parameters() + g.num_parameters() - shared != default["parameters"]
    assert saved["seq_len"] == 128  # max_position_embeddings


def test_t5_config_folder_needs_a_length_or_takes_n_positions(tmp_path):
    config = transformers.T5Config(vocab_size=600, d_model=64, d_ff=256, d_kv=16, num_layers=2, num_heads=4)
    config.save_pretrained(tmp_path)
    result = estimate(str(tmp_path), tokens="1M", hardware="l4", mfu=0.3, seq_len=128)
    assert result["seq_len"] == 128
    assert result["parameters"] == transformers.T5ForConditionalGeneration(config).num_parameters()
    with pytest.raises(ConfigError, match="gives no sequence length; pass --seq-len"):  # relative positions only
        estimate(str(tmp_path), tokens="1M", hardware="l4", mfu=0.3)
    saved = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    (tmp_path / "config.json").write_text(json.dumps({**saved, "n_positions": 512}), encoding="utf-8")  # as t5-base's
    assert estimate(str(tmp_path), tokens="1M", hardware="l4", mfu=0.3)["seq_len"] == 512


def test_t5_memory_adds_the_decoder_and_its_cross_attention():
    spec = load_model_spec(str(DEBUG / "span_corruption.yaml"))
    encoder, decoder = spec.built.stacks
    assert decoder.cross_len == encoder.seq_len and decoder.seq_len < encoder.seq_len
    plain = activation_bytes(decoder.shape, decoder.seq_len, 4, decoder.head_fraction)
    crossed = activation_bytes(decoder.shape, decoder.seq_len, 4, decoder.head_fraction, cross_len=decoder.cross_len)
    assert crossed > plain
    result = estimate(str(ROOT / "configs" / "pretrain" / "t5-span-small.yaml"), tokens="1M", hardware="l4", mfu=0.3,
                      micro_batch=64, devices=8)
    for checkpointing in ("no_checkpointing", "checkpointing"):
        gb = [result["memory_per_device_gb"][s][checkpointing] for s in STRATEGIES]
        assert gb[0] > gb[1] > gb[2] >= gb[3] > 0  # ddp > zero1 > zero2 >= zero3 (its gathered units)


@pytest.mark.parametrize("name", ["electra-small.yaml", "t5-span-small.yaml"])
def test_shipped_configs_are_estimated(name):
    result = estimate(str(ROOT / "configs" / "pretrain" / name), tokens="10B", hardware="h100", devices=8)
    assert result["flops"] == pytest.approx(result["flops_per_token"] * 10e9)
    assert result["days"] > 0 and result["fits"]["ddp"]["no_checkpointing"]
