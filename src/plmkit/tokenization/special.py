"""Special-token roles (pad, unk, cls, sep, mask, bos, eos) and each architecture's usual tokens."""

from __future__ import annotations

from plmkit.errors import ConfigError

SPECIAL_ROLES = ("pad", "unk", "cls", "bos", "sep", "eos", "mask")
"""Every role a special token can play, in the order their tokens get ids when a tokenizer is trained."""

ARCHES = ("bert", "roberta", "gpt2", "llama", "electra", "t5")

_CAUSAL = {"bos": "<|endoftext|>", "eos": "<|endoftext|>", "unk": "<|endoftext|>", "pad": "<|pad|>"}
_DEFAULTS = {
    "bert": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
    "roberta": {"bos": "<s>", "cls": "<s>", "pad": "<pad>", "eos": "</s>", "sep": "</s>", "unk": "<unk>",
                "mask": "<mask>"},
    "gpt2": _CAUSAL,
    "llama": _CAUSAL,
    "electra": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},  # BERT's
    "t5": {"pad": "<pad>", "unk": "<unk>", "eos": "</s>"},  # sentinels <extra_id_k> come from span_corruption
}


def default_special_tokens(arch: str) -> dict[str, str]:
    """The special tokens an architecture usually has.

    Args:
        arch: a model architecture: bert, roberta, gpt2 or llama.

    Returns:
        A new dict role -> token string, e.g. {"pad": "[PAD]", "mask": "[MASK]", ...} for bert.

    Raises:
        ConfigError: the architecture is unknown.
    """
    if arch not in _DEFAULTS:
        raise ConfigError(f"model.arch must be one of {', '.join(ARCHES)}; got {arch!r}")
    return dict(_DEFAULTS[arch])


def trained_special_tokens(special_tokens: dict[str, str] | None, arch: str) -> dict[str, str]:
    """The special tokens a tokenizer trained for `arch` gets: tokenizer.special_tokens when it is set, else the
    architecture's usual ones; checked, in role order."""
    return check_roles(special_tokens if special_tokens is not None else default_special_tokens(arch))


def special_token_order(special_tokens: dict[str, str]) -> list[str]:
    """The distinct special tokens of a checked dict (trained_special_tokens, check_roles) in role order: a tokenizer
    trained by plmkit gives them ids 0, 1, 2, ..."""
    return list(dict.fromkeys(special_tokens[role] for role in SPECIAL_ROLES if role in special_tokens))


def check_roles(special_tokens: dict[str, str], key: str = "tokenizer.special_tokens") -> dict[str, str]:
    """Check that every role is known and every token a non-empty string; returns the dict in role order.

    Raises:
        ConfigError: an unknown role or an empty token, naming `key`.
    """
    unknown = sorted(set(special_tokens) - set(SPECIAL_ROLES))
    if unknown:
        raise ConfigError(f"{key}: unknown role(s) {', '.join(unknown)}; use any of {', '.join(SPECIAL_ROLES)}")
    for role, token in special_tokens.items():
        if not isinstance(token, str) or not token:
            raise ConfigError(f"{key}.{role} must be a non-empty string; got {token!r}")
    return {role: special_tokens[role] for role in SPECIAL_ROLES if role in special_tokens}
