"""ELECTRA's two transformers (Clark et al., 2020) from transformers' classes: the discriminator
(ElectraForPreTraining, the encoder users fine-tune) from our ModelConfig, and a smaller generator
(ElectraForMaskedLM) that shares its token, position and token-type embeddings.
Try it:  plm pretrain configs/debug/electra.yaml
"""

from __future__ import annotations

import copy
from pathlib import Path

import transformers
from transformers import ElectraForMaskedLM, ElectraForPreTraining

from plmkit.config import ModelConfig
from plmkit.errors import ConfigError


def build_electra_config(cfg: ModelConfig, tokenizer) -> transformers.ElectraConfig:
    """The discriminator's ElectraConfig: our ModelConfig, with the vocabulary and special ids of the tokenizer.

    The embeddings are `model.embedding_size` wide (null: hidden_size); when that differs from hidden_size, ELECTRA
    projects them to the hidden width (ELECTRA-Small: embeddings 128, hidden 256)."""
    return transformers.ElectraConfig(
        vocab_size=cfg.vocab_size or len(tokenizer), embedding_size=cfg.embedding_size or cfg.hidden_size,
        hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size or 4 * cfg.hidden_size,
        max_position_embeddings=cfg.max_position_embeddings, hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout, type_vocab_size=2, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


def build_generator_config(discriminator: transformers.ElectraConfig, size: float) -> transformers.ElectraConfig:
    """The generator's config: the discriminator's, `size` times as wide (hidden width and heads scaled, feed-forward
    4 x its hidden width), with the same number of layers and the same embedding width, so the embeddings can be
    shared (the paper's setting: generator_hidden_size 0.25 for ELECTRA-Small).

    Raises:
        ConfigError: `size` is not in (0, 1], or the scaled width leaves no whole number of dimensions per head.
    """
    if not 0 < size <= 1:
        raise ConfigError(f"objective.generator_size must be in (0, 1]; got {size}")
    hidden = round(discriminator.hidden_size * size)
    if hidden < 1:
        raise ConfigError(f"objective.generator_size {size} leaves the generator no hidden units (model.hidden_size "
                          f"{discriminator.hidden_size}); raise objective.generator_size")
    heads = max(1, round(discriminator.num_attention_heads * size))
    while hidden % heads:  # e.g. hidden 48 x 0.25 = 12 with 3 heads of 4 is fine; 10 with 3 heads is not
        heads -= 1
    config = copy.deepcopy(discriminator)
    config.hidden_size, config.num_attention_heads, config.intermediate_size = hidden, heads, 4 * hidden
    config.tie_word_embeddings = True  # the output decoder is the shared word-embedding matrix
    config.architectures = ["ElectraForMaskedLM"]
    return config


def build_generator(discriminator: ElectraForPreTraining, size: float,
                    pretrained: str | Path | None = None) -> ElectraForMaskedLM:
    """A randomly initialised generator (ElectraForMaskedLM), or with `pretrained` the one saved in that folder
    (safetensors), whose embeddings module IS the discriminator's (token, position and token-type tables and their
    LayerNorm), and whose output decoder is the shared word-embedding matrix; it uses the discriminator's attention
    implementation.

    Raises:
        ConfigError: `discriminator` is not an ElectraForPreTraining (e.g. init.from names a BERT checkpoint).
    """
    if not isinstance(discriminator, ElectraForPreTraining):
        raise ConfigError(f"the electra objective trains an ElectraForPreTraining discriminator, not a "
                          f"{type(discriminator).__name__}; set init.from to a folder written by an electra run "
                          "(RUN/final) or an ELECTRA discriminator checkpoint, or unset it to train one from scratch")
    attention = discriminator.config._attn_implementation
    if pretrained is not None:
        generator = ElectraForMaskedLM.from_pretrained(str(pretrained), attn_implementation=attention,
                                                       use_safetensors=True)
        if generator.config.embedding_size != discriminator.config.embedding_size:
            raise ConfigError(f"{pretrained}: the generator's embedding size {generator.config.embedding_size} is not "
                              f"the discriminator's {discriminator.config.embedding_size}; they share one embedding")
    else:
        config = build_generator_config(discriminator.config, size)
        generator = transformers.AutoModelForMaskedLM.from_config(config, attn_implementation=attention)
    share_embeddings(generator, discriminator)
    if discriminator.is_activation_checkpointing:  # train.gradient_checkpointing, set before wrapping
        generator.activation_checkpointing_enable()
    return generator.to(device=discriminator.device, dtype=discriminator.dtype)


def share_embeddings(generator: ElectraForMaskedLM, discriminator: ElectraForPreTraining) -> None:
    """Make the generator use the discriminator's embeddings module (one set of parameters, trained by both losses)
    and tie its output decoder to the shared word embeddings."""
    generator.electra.embeddings = discriminator.electra.embeddings
    generator.generator_lm_head.weight = discriminator.electra.embeddings.word_embeddings.weight
