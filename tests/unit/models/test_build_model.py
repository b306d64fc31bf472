"""build_model / build_model_config / load_pretrained_model: the right transformers class for each architecture,
vocabulary and special ids from the tokenizer, SDPA attention, and a save_pretrained round trip."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForSeq2SeqLM,
    BertModel,
)

from plmkit.config import ModelConfig
from plmkit.errors import CompatibilityError, ConfigError
from plmkit.models import ARCHS, build_model, build_model_config, load_pretrained_model
from plmkit.tokenization import check_compatibility

AUTO = {"masked_lm": AutoModelForMaskedLM, "causal_lm": AutoModelForCausalLM, "electra": AutoModelForPreTraining,
        "seq2seq_lm": AutoModelForSeq2SeqLM}
CLASS_NAMES = {"bert": "BertForMaskedLM", "roberta": "RobertaForMaskedLM", "gpt2": "GPT2LMHeadModel",
               "llama": "LlamaForCausalLM", "electra": "ElectraForPreTraining", "t5": "T5ForConditionalGeneration"}
NEEDS = {"masked_lm": ("mask",), "causal_lm": ("eos",), "electra": ("mask",), "seq2seq_lm": ("pad", "eos")}


def _cfg(arch: str, **kw) -> ModelConfig:
    return ModelConfig(**{"arch": arch, "hidden_size": 32, "num_layers": 2, "num_heads": 2,
                          "max_position_embeddings": 64, "dropout": 0.0, **kw})


def _build(arch: str, tokenizer, **kw):
    torch.manual_seed(0)
    return build_model(_cfg(arch, **kw), tokenizer, ARCHS[arch])


def test_archs_cover_both_kinds():
    assert ARCHS == {"bert": "masked_lm", "roberta": "masked_lm", "gpt2": "causal_lm", "llama": "causal_lm",
                     "electra": "electra", "t5": "seq2seq_lm"}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_builds_the_auto_class_of_its_kind(arch, tokenizers_by_arch):
    tok = tokenizers_by_arch[arch]
    model = _build(arch, tok)
    auto = AUTO[ARCHS[arch]]
    assert type(model) is auto._model_mapping[type(model.config)]
    assert type(model).__name__ == CLASS_NAMES[arch]
    assert model.config.model_type == arch
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("arch", list(ARCHS))
def test_vocab_and_special_ids_come_from_the_tokenizer(arch, tokenizers_by_arch):
    tok = tokenizers_by_arch[arch]
    model = _build(arch, tok)
    assert model.config.vocab_size == len(tok)
    assert model.get_input_embeddings().num_embeddings == len(tok)
    if arch != "electra":  # ELECTRA's discriminator scores each token: it has no output embedding
        assert model.get_output_embeddings().out_features == len(tok)
    assert model.config.pad_token_id == tok.pad_token_id
    assert model.config.bos_token_id == tok.bos_token_id
    assert model.config.eos_token_id == tok.eos_token_id
    check_compatibility(tok, model.config, block_size=32, needs=NEEDS[ARCHS[arch]])


@pytest.mark.parametrize("arch", list(ARCHS))
def test_sizes_follow_the_model_config(arch, tokenizers_by_arch):
    tok = tokenizers_by_arch[arch]
    c = build_model_config(_cfg(arch, hidden_size=48, num_layers=3, num_heads=4, vocab_size=512), tok)
    assert c.vocab_size == 512  # an explicit vocab_size wins over len(tokenizer)
    assert c.hidden_size == 48 and c.num_hidden_layers == 3 and c.num_attention_heads == 4
    if arch == "t5":  # relative position buckets: no position table
        assert c.num_decoder_layers == 3 and c.d_kv == 12 and not hasattr(c, "max_position_embeddings")
        return
    positions = c.n_positions if arch == "gpt2" else c.max_position_embeddings
    assert positions == 64


@pytest.mark.parametrize("arch", ["bert", "roberta", "gpt2"])
def test_feed_forward_width_is_four_times_hidden_by_default(arch, tokenizers_by_arch):
    tok = tokenizers_by_arch[arch]
    c = build_model_config(_cfg(arch, hidden_size=48), tok)
    assert (c.n_inner if arch == "gpt2" else c.intermediate_size) == 192
    c = build_model_config(_cfg(arch, hidden_size=48, intermediate_size=100), tok)
    assert (c.n_inner if arch == "gpt2" else c.intermediate_size) == 100


@pytest.mark.parametrize(("hidden", "expected"), [(32, 128), (96, 256), (100, 320), (256, 704), (768, 2048)])
def test_llama_intermediate_size_is_8_thirds_rounded_up_to_64(hidden, expected, tokenizers_by_arch):
    c = build_model_config(_cfg("llama", hidden_size=hidden, num_heads=2), tokenizers_by_arch["llama"])
    assert c.intermediate_size == expected
    assert c.intermediate_size % 64 == 0 and c.intermediate_size >= 8 * hidden / 3
    assert c.num_key_value_heads == c.num_attention_heads


def test_llama_explicit_intermediate_size_wins(tokenizers_by_arch):
    c = build_model_config(_cfg("llama", intermediate_size=100), tokenizers_by_arch["llama"])
    assert c.intermediate_size == 100


def test_dropout_reaches_the_model_config(tokenizers_by_arch):
    bert = build_model_config(_cfg("bert", dropout=0.2), tokenizers_by_arch["bert"])
    assert bert.hidden_dropout_prob == 0.2 and bert.attention_probs_dropout_prob == 0.2
    gpt2 = build_model_config(_cfg("gpt2", dropout=0.2), tokenizers_by_arch["gpt2"])
    assert gpt2.resid_pdrop == gpt2.embd_pdrop == gpt2.attn_pdrop == 0.2


@pytest.mark.parametrize(("arch", "kind"), [("bert", "causal_lm"), ("roberta", "causal_lm"), ("gpt2", "masked_lm"),
                                            ("llama", "masked_lm"), ("bert", "seq2seq")])
def test_wrong_arch_for_kind_is_a_config_error(arch, kind, tokenizers_by_arch):
    with pytest.raises(ConfigError, match=arch):
        build_model(_cfg(arch), tokenizers_by_arch[arch], kind)


def test_unknown_arch_is_a_config_error(tokenizers_by_arch):
    with pytest.raises(ConfigError, match="gpt5"):
        build_model_config(_cfg("gpt5"), tokenizers_by_arch["bert"])


@pytest.mark.parametrize("arch", list(ARCHS))
def test_save_pretrained_round_trip(arch, tokenizers_by_arch, tmp_path):
    tok = tokenizers_by_arch[arch]
    model = _build(arch, tok).eval()
    model.save_pretrained(tmp_path)
    ids = torch.randint(len(tok.all_special_ids), len(tok), (2, 16))
    inputs = {"input_ids": ids}
    if arch == "t5":  # an encoder-decoder also reads decoder inputs
        inputs["decoder_input_ids"] = ids[:, :5]
    with torch.no_grad():
        expected = model(**inputs).logits

    loaded, info = AUTO[ARCHS[arch]].from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert type(loaded) is type(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(**inputs).logits, expected)

    ours = load_pretrained_model(str(tmp_path), ARCHS[arch]).eval()
    assert type(ours) is type(model) and ours.config._attn_implementation == "sdpa"
    with torch.no_grad():
        torch.testing.assert_close(ours(**inputs).logits, expected)
    check_compatibility(tok, ours.config, block_size=32, needs=NEEDS[ARCHS[arch]])


@pytest.mark.parametrize("path", ["/no/such/checkpoint", "./no-such-checkpoint", "~/no/such/checkpoint-xyz",
                                  "runs/missing/final"])
def test_missing_checkpoint_is_a_compatibility_error(path):
    with pytest.raises(CompatibilityError, match="init.from"):
        load_pretrained_model(path, "masked_lm")


def test_folder_without_weights_is_a_compatibility_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompatibilityError, match="init.from"):
        load_pretrained_model(str(tmp_path / "empty"), "causal_lm")


def test_checkpoint_without_lm_head_loads_with_a_fresh_head(tokenizers_by_arch, tmp_path):
    tok = tokenizers_by_arch["bert"]
    encoder = BertModel(build_model_config(_cfg("bert"), tok), add_pooling_layer=False)
    encoder.save_pretrained(tmp_path)
    model = load_pretrained_model(str(tmp_path), "masked_lm")
    assert type(model).__name__ == "BertForMaskedLM"
    torch.testing.assert_close(model.bert.embeddings.word_embeddings.weight, encoder.embeddings.word_embeddings.weight)


def test_checkpoint_of_the_wrong_kind_is_a_compatibility_error(tokenizers_by_arch, tmp_path):
    _build("gpt2", tokenizers_by_arch["gpt2"]).save_pretrained(tmp_path)
    with pytest.raises(CompatibilityError, match="masked_lm"):
        load_pretrained_model(str(tmp_path), "masked_lm")
