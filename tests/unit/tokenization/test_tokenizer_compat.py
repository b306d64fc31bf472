"""check_compatibility and max_positions: configs built from the tokenizer pass; each mismatch names its fix."""

from __future__ import annotations

import pytest
from transformers import BertConfig, GPT2Config, LlamaConfig, RobertaConfig

from plmkit.config import TokenizerConfig, TokenizerTrainConfig
from plmkit.errors import CompatibilityError, ConfigError
from plmkit.tokenization import check_compatibility, max_positions, train_tokenizer


def _tok(tiny_docs, tmp_path, arch, algorithm="wordpiece", special_tokens=None):
    cfg = TokenizerConfig(train=TokenizerTrainConfig(algorithm=algorithm, vocab_size=300 if algorithm == "bpe" else 200),
                          special_tokens=special_tokens)
    return train_tokenizer(tiny_docs, cfg, arch, tmp_path / arch, show_progress=False)


def _config(arch, tok, positions=64, **overrides):
    """The model config as a model builder makes it from the tokenizer (the way plmkit.models should)."""
    kw = {"vocab_size": len(tok), "pad_token_id": tok.pad_token_id}
    if arch != "bert":
        kw |= {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    kw |= {"n_positions" if arch == "gpt2" else "max_position_embeddings": positions, **overrides}
    return {"bert": BertConfig, "roberta": RobertaConfig, "gpt2": GPT2Config, "llama": LlamaConfig}[arch](**kw)


@pytest.mark.parametrize(("arch", "needs"), [("bert", {"mask", "sep", "cls", "pad"}), ("roberta", {"mask", "sep"}),
                                             ("gpt2", {"eos"}), ("llama", {"eos", "bos", "pad"})])
def test_config_built_from_tokenizer_passes(tiny_docs, tmp_path, arch, needs):
    tok = _tok(tiny_docs, tmp_path, arch, "bpe" if arch in ("roberta", "gpt2") else "wordpiece")
    config = _config(arch, tok)
    check_compatibility(tok, config, block_size=max_positions(config), needs=needs)


def test_max_positions():
    assert max_positions(BertConfig(max_position_embeddings=128)) == 128
    assert max_positions(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert max_positions(RobertaConfig(max_position_embeddings=130, pad_token_id=0)) == 129
    assert max_positions(GPT2Config(n_positions=256)) == 256
    assert max_positions(LlamaConfig(max_position_embeddings=4096)) == 4096


def test_vocab_too_small(tiny_docs, tmp_path):
    tok = _tok(tiny_docs, tmp_path, "bert")
    with pytest.raises(CompatibilityError, match=rf"set model.vocab_size >= {len(tok)} .*or use the tokenizer"):
        check_compatibility(tok, _config("bert", tok, vocab_size=len(tok) - 1), block_size=16)
    check_compatibility(tok, _config("bert", tok, vocab_size=len(tok) + 64), block_size=16)  # spare rows are fine


def test_missing_mask_token(tiny_docs, tmp_path):
    tok = _tok(tiny_docs, tmp_path, "gpt2", "bpe")
    with pytest.raises(CompatibilityError, match=r"needs a mask token.*tokenizer.special_tokens.mask"):
        check_compatibility(tok, _config("gpt2", tok), block_size=16, needs={"mask", "eos"})
    with pytest.raises(ConfigError, match="unknown special-token role"):
        check_compatibility(tok, _config("gpt2", tok), block_size=16, needs={"masked"})


@pytest.mark.parametrize(("arch", "limit", "raise_to"), [("bert", 64, 65), ("roberta", 63, 65), ("gpt2", 64, 65),
                                                         ("llama", 64, 65)])
def test_block_size_too_large(tiny_docs, tmp_path, arch, limit, raise_to):
    """64 position embeddings; RoBERTa (pad id 0 here) numbers positions from pad id + 1, so it holds 63."""
    tok = _tok(tiny_docs, tmp_path, arch, "bpe" if arch in ("roberta", "gpt2") else "wordpiece")
    config = _config(arch, tok, positions=64)
    check_compatibility(tok, config, block_size=limit)
    block = limit + 1
    msg = rf"data.block_size \({block}\) exceeds the {limit} .*<= {limit} .*max_position_embeddings to >= {raise_to}"
    with pytest.raises(CompatibilityError, match=msg):
        check_compatibility(tok, config, block_size=block)


@pytest.mark.parametrize(("arch", "field"), [("bert", "pad_token_id"), ("gpt2", "eos_token_id"),
                                             ("llama", "bos_token_id")])
def test_special_id_mismatch(tiny_docs, tmp_path, arch, field):
    tok = _tok(tiny_docs, tmp_path, arch, "bpe" if arch == "gpt2" else "wordpiece")
    config = _config(arch, tok, **{field: 7})
    role = field.split("_")[0]
    with pytest.raises(CompatibilityError, match=rf"{field}=7 but the tokenizer's {role} token .* has id"):
        check_compatibility(tok, config, block_size=16)


def test_eos_id_list_is_accepted(tiny_docs, tmp_path):
    tok = _tok(tiny_docs, tmp_path, "llama")
    check_compatibility(tok, _config("llama", tok, eos_token_id=[tok.eos_token_id, 9]), block_size=16)
