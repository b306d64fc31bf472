"""`plm estimate`: preset sizes against the published ones, the Qwen2-72B worked example against a hand count,
token parsing, memory per strategy, the activation formula against Korthikanti et al., and the CLI's JSON line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import transformers
from typer.testing import CliRunner

from plmkit import flops
from plmkit.cli import app
from plmkit.errors import ConfigError
from plmkit.estimate import (
    HARDWARE,
    PRESETS,
    STRATEGIES,
    activation_bytes,
    estimate,
    load_model_spec,
    parse_count,
    state_bytes,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("name", "published"), [("gpt2", 124e6), ("bert-base", 110e6), ("llama-3-8b", 8.03e9),
                                                 ("qwen2-72b", 72.7e9)])
def test_named_presets_match_their_published_size_within_1pct(name, published):
    assert flops.parameter_counts(flops.model_shape(PRESETS[name])).total == pytest.approx(published, rel=0.01)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_is_within_4pct_of_its_published_size(name):
    # gpt2-xl is "1.5B" by name and 1.56B counted: the widest gap
    counts = flops.parameter_counts(flops.model_shape(PRESETS[name]))
    assert counts.total == pytest.approx(PRESETS[name]["published"], rel=0.04)
    assert PRESETS[name]["seq_len"] >= 512


def test_qwen2_72b_on_7t_tokens_is_6nt_plus_attention_by_hand():
    h, layers, kv, inter, vocab, q, tokens = 8192, 80, 8 * 128, 29568, 152064, 4096, 7e12
    attention = h * h + 2 * h * kv + h * h + (h + 2 * kv)  # q, k, v, o; Qwen2 has biases on q, k, v only
    mlp = 3 * h * inter  # SwiGLU: gate, up, down
    body = layers * (attention + mlp + 2 * h) + h  # two RMSNorms per layer, one final
    n = body + vocab * h  # the untied LM head is a matmul at every token; the input embedding is a lookup
    assert n == pytest.approx(71.46e9, rel=1e-3)
    hand = 6 * n * tokens + 12 * layers * h * q * tokens
    result = estimate("qwen2-72b", tokens="7T", hardware="h100", devices=1024)
    assert result["flops"] == pytest.approx(hand, rel=1e-9)
    assert result["flops"] == pytest.approx(3.227e24, rel=1e-3)
    assert result["seq_len"] == 4096 and result["parameters"] == 72_706_203_648
    assert result["device_hours"] == pytest.approx(hand / (989.4e12 * 0.40) / 3600, rel=1e-9)
    assert result["days"] == pytest.approx(result["device_hours"] / 1024 / 24)
    assert result["chinchilla_tokens"] == 20 * result["parameters"]
    assert result["energy_mwh"] == pytest.approx(result["device_hours"] * 700 * 1.1 / 1e6)


def test_seq_len_override_changes_only_the_attention_term():
    base = estimate("qwen2-72b", tokens="1T")
    longer = estimate("qwen2-72b", tokens="1T", seq_len=8192)
    assert longer["flops_per_token"] - base["flops_per_token"] == pytest.approx(12 * 80 * 8192 * 4096)


@pytest.mark.parametrize(("text", "count"), [("7e12", 7_000_000_000_000), ("7T", 7_000_000_000_000),
                                             ("300B", 300_000_000_000), ("1.5M", 1_500_000), ("2k", 2000),
                                             ("7_000", 7000), ("1,000,000", 1_000_000), (" 15t ", 15 * 10**12)])
def test_token_counts_parse(text, count):
    assert parse_count(text) == count


@pytest.mark.parametrize("text", ["seven", "7X", "", "1e", "-5B"])
def test_bad_token_counts_say_how_to_write_them(text):
    with pytest.raises(ConfigError, match="7e12, 7T, 300B"):
        parse_count(text)


@pytest.mark.parametrize("checkpointing", ["no_checkpointing", "checkpointing"])
def test_memory_per_device_shrinks_zero3_zero2_zero1_ddp(checkpointing):
    memory = estimate("llama-3-8b", tokens="1T", devices=8)["memory_per_device_gb"]
    gb = {s: memory[s][checkpointing] for s in STRATEGIES}
    assert gb["zero3"] < gb["zero2"] < gb["zero1"] < gb["ddp"]
    assert gb["fsdp"] == gb["zero3"]
    assert memory["ddp"]["checkpointing"] < memory["ddp"]["no_checkpointing"]


def test_one_device_zero1_and_zero2_save_nothing_and_ddp_holds_16_bytes_per_parameter():
    shape = flops.model_shape(PRESETS["llama-3-8b"])
    p = flops.parameter_counts(shape).total
    assert state_bytes(shape, 1, "ddp") == state_bytes(shape, 1, "zero1") == state_bytes(shape, 1, "zero2") == 16 * p
    assert state_bytes(shape, 64, "zero1") == pytest.approx(4 * p + 12 * p / 64)


def test_activation_formula_is_korthikanti_34sbh_plus_5as2b_for_a_gpt3_like_layer():
    # GPT-3-like: LayerNorm, GELU MLP of 4h, multi-head attention, dropout, attention scores materialised
    shape = flops.model_shape({"model_type": "gpt2", "n_embd": 1024, "n_layer": 4, "n_head": 16,
                               "vocab_size": 50257, "n_positions": 2048})
    s, b, h, a, layers = 2048, 2, 1024, 16, 4
    head = 6 * b * s * 50257
    want = layers * s * b * h * (34 + 5 * a * s / h) + head
    assert activation_bytes(shape, s, b, fused_attention=False) == pytest.approx(want)
    # full recomputation keeps 2sbh per layer plus one layer being rebuilt (Korthikanti et al.)
    one_layer = s * b * h * (34 + 5 * a * s / h)
    assert activation_bytes(shape, s, b, checkpointing=True, fused_attention=False) == pytest.approx(
        layers * 2 * s * b * h + one_layer + head)


def test_fits_compares_with_90pct_of_device_memory():
    result = estimate("qwen2-72b", tokens="7T", devices=1024)
    for strategy in STRATEGIES:
        for key, need in result["memory_per_device_gb"][strategy].items():
            assert result["fits"][strategy][key] == (need <= 0.9 * 80)
    assert not result["fits"]["ddp"]["checkpointing"] and result["fits"]["zero3"]["checkpointing"]


def test_cost_needs_a_price_and_scales_with_it():
    assert estimate("gpt2", tokens="10B")["cost_usd"] is None
    result = estimate("gpt2", tokens="10B", price=2.0)
    assert result["cost_usd"] == pytest.approx(2.0 * result["device_hours"])


def test_default_tokens_are_chinchilla_optimal():
    result = estimate("llama-3-8b")
    assert result["tokens"] == result["chinchilla_tokens"] == 20 * 8_030_261_248


def test_masked_lm_preset_counts_the_head_and_last_layer_at_15pct_of_positions():
    spec = load_model_spec("bert-base")
    assert spec.head_fraction == spec.last_layer_fraction == 0.15 and spec.seq_len == 512
    # a BERT-base layer: 7,087,872 parameters; without the key and value projections (2 x (768 x 768 + 768))
    assert flops.layer_parameters(spec.shape) == 7_087_872
    assert flops.layer_parameters(spec.shape, keys_and_values=False) == 7_087_872 - 1_181_184
    full = flops.flops_per_token(spec.shape, 512)
    last_layer = 6 * (7_087_872 - 1_181_184) + 12 * 768 * 512  # its queries' side and attention products
    result = estimate("bert-base", tokens="1B")
    assert result["flops_per_token"] == pytest.approx(
        full - 6 * 0.85 * flops.parameter_counts(spec.shape).head - 0.85 * last_layer)
    assert result["last_layer_fraction"] == 0.15


def test_run_config_yaml_gives_the_model_plmkit_would_build():
    from plmkit.config import load_config
    from plmkit.models import build_model_config

    config = ROOT / "configs" / "debug" / "mlm.yaml"
    cfg = load_config(config)
    result = estimate(str(config), tokens="1M", hardware="l4", mfu=0.3)
    vocab = type("Vocab", (), {"pad_token_id": None, "bos_token_id": None, "eos_token_id": None,
                               "__len__": lambda self: cfg.tokenizer.train.vocab_size})()
    model = transformers.AutoModelForMaskedLM.from_config(build_model_config(cfg.model, vocab))
    assert result["parameters"] == model.num_parameters()
    assert result["seq_len"] == cfg.data.block_size and result["head_fraction"] == cfg.objective.mask_prob
    assert result["mfu_source"] == "given"


def test_hugging_face_config_folder(tmp_path):
    config = transformers.LlamaConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, intermediate_size=256, max_position_embeddings=512)
    config.save_pretrained(tmp_path)
    result = estimate(str(tmp_path), tokens="1B", seq_len=256)
    assert result["parameters"] == transformers.AutoModelForCausalLM.from_config(config).num_parameters()
    assert result["seq_len"] == 256
    assert estimate(str(tmp_path / "config.json"), tokens="1B")["seq_len"] == 512  # max_position_embeddings


def test_bad_preset_name_lists_the_presets():
    with pytest.raises(ConfigError, match="unknown model 'qwen3-9000'") as error:
        estimate("qwen3-9000", tokens="1T")
    assert all(name in str(error.value) for name in PRESETS)


@pytest.mark.parametrize("text", ["0", "1e400", "0.4", 0])
def test_token_counts_below_one_or_beyond_any_budget_are_refused(text):
    with pytest.raises(ConfigError, match="at least 1 token and fewer than 1e30"):
        parse_count(text)


@pytest.mark.parametrize(("option", "message"), [
    ({"seq_len": 0}, "--seq-len must be >= 1"), ({"seq_len": -5}, "--seq-len must be >= 1"),
    ({"price": -1.0}, "--price must be >= 0"), ({"pue": 0.0}, "--pue must be >= 1"),
    ({"devices": 0}, "--devices must be >= 1; got 0$"), ({"micro_batch": -1}, "--micro-batch must be >= 1; got -1$"),
])
def test_out_of_range_options_are_refused(option, message):
    with pytest.raises(ConfigError, match=message):
        estimate("gpt2", tokens="1B", **option)


def test_unknown_hardware_and_missing_mfu_say_what_to_pass():
    with pytest.raises(ConfigError, match="h100"):
        estimate("gpt2", hardware="tpu-v9")
    assert HARDWARE["rtx4090"].mfu is None
    with pytest.raises(ConfigError, match="--mfu .* or --measure CONFIG"):
        estimate("gpt2", hardware="rtx4090")
    assert estimate("gpt2", hardware="rtx4090", mfu=0.3)["peak_flops_per_device"] == 165.2e12


def test_cli_json_is_one_object_on_one_stdout_line():
    result = CliRunner().invoke(app, ["estimate", "qwen2-72b", "--tokens", "7e12", "--devices", "1024", "--json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert {"flops", "device_hours", "days", "memory_per_device_gb"} <= data.keys()
    assert set(data["memory_per_device_gb"]) == set(STRATEGIES)
    assert data["flops"] == pytest.approx(3.227e24, rel=1e-3)


def test_cli_preset_option_gives_what_the_argument_gives():
    """The issue's check: `plm estimate --preset qwen2-72b ...` (the preset as an option) is the positional form."""
    args = ["--tokens", "7e12", "--hardware", "h100", "--devices", "1024", "--mfu", "0.4", "--json"]
    by_option = CliRunner().invoke(app, ["estimate", "--preset", "qwen2-72b", *args])
    by_argument = CliRunner().invoke(app, ["estimate", "qwen2-72b", *args])
    assert by_option.exit_code == 0, by_option.output
    assert json.loads(by_option.stdout) == json.loads(by_argument.stdout)


@pytest.mark.parametrize(("argv", "message"), [
    (["estimate"], "give the model once"),
    (["estimate", "gpt2", "--preset", "gpt2"], "not both"),
    (["estimate", "--preset", "configs/debug/mlm.yaml"], "is not a preset; choose one of"),
])
def test_cli_model_given_wrongly_is_a_clear_error(argv, message):
    result = CliRunner().invoke(app, argv)
    assert isinstance(result.exception, ConfigError) and message in str(result.exception)


def test_cli_table_for_people():
    result = CliRunner().invoke(app, ["estimate", "gpt2", "--tokens", "300B", "--price", "2"])
    assert result.exit_code == 0, result.output
    assert "device-hours" in result.stdout and "zero3" in result.stdout and "at $2.0/device-hour" in result.stdout


def test_hardware_names_ignore_case():
    assert estimate("gpt2", tokens="1B", hardware="H100")["days"] == estimate("gpt2", tokens="1B")["days"]


def test_measure_runs_only_after_every_other_input_is_checked(monkeypatch):
    """A typo must not cost the 20 measured steps (minutes on a GPU with torch.compile) first."""
    from plmkit import api
    from plmkit import estimate as planning

    monkeypatch.setattr(planning, "measure_mfu", lambda config: pytest.fail("measured before the inputs were checked"))
    for model, tokens in (("gpt3", "1B"), ("gpt2", "abc")):
        with pytest.raises(ConfigError):
            api.estimate(model, tokens=tokens, measure="configs/debug/mlm.yaml")
    monkeypatch.setattr(planning, "measure_mfu", lambda config: (0.25, "measured (stand-in)"))
    result = api.estimate("gpt2", tokens="1B", measure="configs/debug/mlm.yaml")
    assert result["mfu"] == 0.25 and result["mfu_source"] == "measured (stand-in)"
