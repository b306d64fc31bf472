"""Checks that a tokenizer, a model config and the block size fit together, with errors that say what to change."""

from __future__ import annotations

from collections.abc import Iterable

from transformers import PretrainedConfig, PreTrainedTokenizerBase
from transformers.tokenization_utils_base import VERY_LARGE_INTEGER

from plmkit.errors import CompatibilityError, ConfigError
from plmkit.tokenization.special import SPECIAL_ROLES

_ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "roberta-prelayernorm")
_RELATIVE = ("t5", "mt5", "umt5")  # relative position buckets: no position table, no length limit
_EXAMPLES = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "bos": "<s>", "sep": "[SEP]", "eos": "</s>",
             "mask": "[MASK]"}


def max_positions(model_config: PretrainedConfig) -> int:
    """The longest sequence, in tokens, the model can embed.

    RoBERTa-style models number positions from `pad_token_id + 1`, so they hold `pad_token_id + 1` fewer
    tokens than `max_position_embeddings`; GPT-2 uses `n_positions`; others `max_position_embeddings`. T5 has
    relative position buckets and no table: any length fits (transformers' "no limit", VERY_LARGE_INTEGER).

    Raises:
        CompatibilityError: the config names no position limit.
    """
    model_type = getattr(model_config, "model_type", "")
    table = getattr(model_config, "n_positions", None) if model_type == "gpt2" else \
        getattr(model_config, "max_position_embeddings", None)
    if table is None and model_type not in _RELATIVE:
        raise CompatibilityError(f"cannot tell the longest sequence a {model_type or 'model'} config accepts (it has "
                                 "no max_position_embeddings); use a bert, roberta, gpt2, llama or t5 model")
    return position_limit(model_type, table, model_config.pad_token_id)


def position_limit(model_type: str, table_size: int | None, pad_token_id: int | None) -> int:
    """The longest sequence a model of `model_type` with `table_size` position embeddings holds (see
    `max_positions`); RoBERTa-style types lose `pad_token_id + 1` positions (1 at least when the id is not known)."""
    if model_type in _RELATIVE:
        return VERY_LARGE_INTEGER
    if model_type in _ROBERTA_LIKE:
        return table_size - (pad_token_id + 1 if pad_token_id is not None else 1)
    return table_size


def check_block_size(block_size: int, limit: int, table_size: int | None) -> None:
    """Raise when `block_size` exceeds `limit` (from `position_limit`, for a table of `table_size` positions),
    saying which setting to change."""
    if block_size > limit:
        raise CompatibilityError(f"data.block_size ({block_size}) exceeds the {limit} positions the model accepts; "
                                 f"lower data.block_size to <= {limit} or raise model.max_position_embeddings to >= "
                                 f"{block_size + (table_size or limit) - limit}")


def check_compatibility(tokenizer: PreTrainedTokenizerBase, model_config: PretrainedConfig, *, block_size: int,
                        needs: Iterable[str] = ()) -> None:
    """Raise when the tokenizer, the model and the block size do not fit together.

    Checks that every token id fits the embedding, that the tokenizer has the special tokens the objective
    `needs`, that the config's pad/bos/eos ids are the tokenizer's, and that `block_size` fits the positions.

    Args:
        tokenizer: the tokenizer the data is encoded with.
        model_config: the model's config (e.g. BertConfig, RobertaConfig, GPT2Config, LlamaConfig).
        block_size: tokens per training example (`data.block_size`).
        needs: special-token roles the objective uses, e.g. {"mask", "sep"} for masked LM, {"eos"} for causal LM.

    Raises:
        CompatibilityError: the first mismatch found, saying which setting to change.
        ConfigError: `needs` names an unknown role.
    """
    n_tokens, vocab = len(tokenizer), model_config.vocab_size
    if n_tokens > vocab:
        raise CompatibilityError(f"the tokenizer has {n_tokens} tokens but the model embeds only {vocab}; set "
                                 f"model.vocab_size >= {n_tokens} (or null to follow the tokenizer), or use the "
                                 "tokenizer the model was trained with")
    needs = set(needs)
    if needs - set(SPECIAL_ROLES):
        raise ConfigError(f"unknown special-token role(s) {sorted(needs - set(SPECIAL_ROLES))} in needs; use any of "
                          f"{', '.join(SPECIAL_ROLES)}")
    for role in (r for r in SPECIAL_ROLES if r in needs):
        if getattr(tokenizer, f"{role}_token_id", None) is None:
            raise CompatibilityError(f"the objective needs a {role} token but the tokenizer has none; set "
                                     f"tokenizer.special_tokens.{role} (e.g. {_EXAMPLES[role]!r})")
    for role in ("pad", "bos", "eos"):
        config_id, tokenizer_id = getattr(model_config, f"{role}_token_id", None), getattr(tokenizer, f"{role}_token_id")
        if config_id is None or tokenizer_id is None:
            continue
        if tokenizer_id not in (config_id if isinstance(config_id, (list, tuple)) else [config_id]):
            raise CompatibilityError(f"the model config has {role}_token_id={config_id} but the tokenizer's {role} "
                                     f"token {getattr(tokenizer, f'{role}_token')!r} has id {tokenizer_id}; build the "
                                     "model config from this tokenizer, or use the tokenizer the model was trained with")
    check_block_size(block_size, max_positions(model_config), _position_table_size(model_config))


def _position_table_size(model_config: PretrainedConfig) -> int | None:
    return getattr(model_config, "n_positions", None) or getattr(model_config, "max_position_embeddings", None)
