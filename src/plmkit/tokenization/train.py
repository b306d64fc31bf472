"""Train a BPE (byte-level), WordPiece or Unigram tokenizer with `tokenizers` and save it as a Hugging Face folder.

Try it:  plm tokenizer train configs/pretrain/mlm-bert-small.yaml
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import Iterable, Sized
from pathlib import Path

from tokenizers import (
    AddedToken,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import PreTrainedTokenizerFast

from plmkit.config import TokenizerConfig
from plmkit.errors import ConfigError, DataError
from plmkit.tokenization.special import ARCHES, special_token_order, trained_special_tokens


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig, arch: str, out_dir: str | Path, *,
                    show_progress: bool = True, nfkc: bool = False) -> PreTrainedTokenizerFast:
    """Train a tokenizer on `texts`, save it to `out_dir` and return it.

    Special tokens (`cfg.special_tokens`, else the architecture's usual set) get the lowest ids, in the
    order pad, unk, cls/bos, sep/eos, mask, and are never split. When the set has both cls and sep, encoding
    adds them ("[CLS] A [SEP] B [SEP]"; RoBERTa's "<s> A </s></s> B </s>"); T5 ends a text with eos ("A </s>", as
    its span-corruption inputs do); otherwise nothing is added.
    `model_max_length` is left unset (very large); the caller may set it.

    Args:
        texts: documents to train on; only the first `cfg.train.max_docs` are read when that is set.
        cfg: the `tokenizer` config section; `cfg.train` holds the algorithm and its settings.
        arch: the model architecture (bert, roberta, gpt2, llama); picks the default special tokens.
        out_dir: folder to save to (created); `AutoTokenizer.from_pretrained(out_dir)` loads it back.
        show_progress: show the `tokenizers` trainer's progress bar.
        nfkc: the texts were NFKC-normalised (data.normalization NFKC): the tokenizer normalises its input the
            same way first, so raw text (full-width punctuation, letters and digits) meets the vocabulary it
            was trained on.

    Returns:
        The trained tokenizer, with its special tokens set (pad_token, mask_token, ...).

    Raises:
        ConfigError: unknown arch, algorithm or special-token role, or a vocabulary too small for it.
        DataError: `texts` holds no text.
    """
    if arch not in ARCHES:
        raise ConfigError(f"model.arch must be one of {', '.join(ARCHES)}; got {arch!r}")
    specials = trained_special_tokens(cfg.special_tokens, arch)
    tokens: list = special_token_order(specials)  # ids 0, 1, 2, ...
    if cfg.train.algorithm in ("bpe", "unigram") and list(specials.values()).count(specials.get("mask")) == 1:
        # as in RoBERTa / XLM-R: "is <mask>." -> "is", "<mask>", "." (the space joins the mask, as in pre-training)
        tokens[tokens.index(specials["mask"])] = AddedToken(specials["mask"], lstrip=True, special=True,
                                                            normalized=False)
    tokenizer, trainer = _build(cfg, specials, tokens, show_progress, nfkc)

    docs = iter(texts) if cfg.train.max_docs is None else itertools.islice(texts, cfg.train.max_docs)
    first = next((doc for doc in docs if doc.strip()), None)
    if first is None:
        raise DataError("no text to train the tokenizer on: the documents are empty; check data.paths and "
                        "data.min_chars (or tokenizer.train.max_docs)")
    length = len(texts) if isinstance(texts, Sized) else None
    if length is not None and cfg.train.max_docs is not None:
        length = min(length, cfg.train.max_docs)
    try:
        with _stdout_to_stderr():  # the trainer's progress bar (Rust) writes to file descriptor 1 itself
            tokenizer.train_from_iterator(itertools.chain([first], docs), trainer, length=length)
    except Exception as e:  # the trainers raise a bare Exception
        if "not large enough to contain all chars" not in str(e):
            raise
        raise ConfigError(f"tokenizer.train.vocab_size {cfg.train.vocab_size} is smaller than the distinct characters "
                          f"of the text, which unigram needs every one of; raise it") from None

    if "cls" in specials and "sep" in specials:
        tokenizer.post_processor = _template(specials, tokenizer, roberta=arch == "roberta")
    elif arch == "t5" and "eos" in specials:  # as T5's own tokenizers, and span corruption's inputs: "A </s>"
        eos = specials["eos"]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"$A {eos}", pair=f"$A {eos} $B {eos}", special_tokens=[(eos, tokenizer.token_to_id(eos))])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        **{f"{role}_token": token for role, token in specials.items()},
        # token_type_ids only for BERT and ELECTRA; RoBERTa, GPT-2 and Llama have no segment embeddings to feed.
        model_input_names=["input_ids", "token_type_ids", "attention_mask"] if arch in ("bert", "electra")
        else ["input_ids", "attention_mask"],
    )
    wrapped.save_pretrained(str(out_dir))
    return wrapped


@contextlib.contextmanager
def _stdout_to_stderr():
    """Send what is written to file descriptor 1 to descriptor 2 meanwhile: stdout carries a command's one JSON
    line, and the `tokenizers` trainer's progress bar writes its line breaks to descriptor 1, past sys.stdout."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no descriptor 1 (a closed stdout): nothing to keep clean
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _build(cfg: TokenizerConfig, specials: dict[str, str], tokens: list[str],
           show_progress: bool, nfkc: bool) -> tuple[Tokenizer, trainers.Trainer]:
    """The untrained tokenizer pipeline and its trainer for `cfg.train.algorithm`; with `nfkc`, its normalizer
    applies NFKC before anything else."""
    t = cfg.train
    unk = specials.get("unk")
    if t.algorithm in ("wordpiece", "unigram") and unk is None:
        raise ConfigError(f"tokenizer.special_tokens has no unk token, which {t.algorithm} needs for unseen "
                          "characters; add one, e.g. unk: '[UNK]'")
    if t.algorithm == "bpe":
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        if t.vocab_size < len(alphabet) + len(tokens):
            raise ConfigError(f"tokenizer.train.vocab_size must be >= {len(alphabet) + len(tokens)} for byte-level "
                              f"bpe ({len(alphabet)} bytes + {len(tokens)} special tokens); got {t.vocab_size}")
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=t.vocab_size, min_frequency=t.min_frequency, special_tokens=tokens,
                                      initial_alphabet=alphabet, show_progress=show_progress)
    elif t.algorithm == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=unk, continuing_subword_prefix="##"))
        strip = t.lowercase if t.strip_accents is None else t.strip_accents
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(vocab_size=t.vocab_size, min_frequency=t.min_frequency,
                                            special_tokens=tokens, continuing_subword_prefix="##",
                                            show_progress=show_progress)
    elif t.algorithm == "unigram":
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()  # no NFKC normalizer: text is left as given
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=t.vocab_size, special_tokens=tokens, unk_token=unk,
                                          show_progress=show_progress)
    else:
        raise ConfigError(f"tokenizer.train.algorithm must be one of bpe, wordpiece, unigram; got {t.algorithm!r}")
    if t.algorithm == "wordpiece":  # BertNormalizer strips accents and lowercases, as BERT's own tokenizers
        steps = [normalizers.BertNormalizer(lowercase=t.lowercase, strip_accents=strip)]
    else:
        steps = ([normalizers.NFD(), normalizers.StripAccents(), normalizers.NFC()] if t.strip_accents else []) \
            + ([normalizers.Lowercase()] if t.lowercase else [])
    steps = [normalizers.NFKC()] * nfkc + steps
    if steps:
        tokenizer.normalizer = steps[0] if len(steps) == 1 else normalizers.Sequence(steps)
    return tokenizer, trainer


def _template(specials: dict[str, str], tokenizer: Tokenizer, roberta: bool) -> processors.TemplateProcessing:
    """BERT's "CLS A SEP B SEP" (B with type id 1), or RoBERTa's "<s> A </s> </s> B </s>" (type ids all 0)."""
    cls, sep = specials["cls"], specials["sep"]
    pair = f"{cls} $A {sep} {sep} $B {sep}" if roberta else f"{cls} $A {sep} $B:1 {sep}:1"
    return processors.TemplateProcessing(
        single=f"{cls} $A {sep}", pair=pair,
        special_tokens=[(tok, tokenizer.token_to_id(tok)) for tok in dict.fromkeys((cls, sep))],
    )
