"""Tokenizers: train BPE / WordPiece / Unigram ones, load saved ones, and check they fit the model."""

from plmkit.tokenization.compat import check_compatibility, max_positions
from plmkit.tokenization.load import load_tokenizer
from plmkit.tokenization.special import SPECIAL_ROLES, default_special_tokens
from plmkit.tokenization.train import train_tokenizer

__all__ = ["SPECIAL_ROLES", "check_compatibility", "default_special_tokens", "load_tokenizer", "max_positions",
           "train_tokenizer"]
