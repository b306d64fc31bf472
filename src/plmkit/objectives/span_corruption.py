"""T5 span corruption (Raffel et al., 2020, §3.1.4): drop about 15% of the tokens in spans of mean length 3,
replace each span by a sentinel <extra_id_k> in the encoder input, and train an encoder-decoder to emit the
dropped spans after their sentinels.  Try it:  plm pretrain configs/debug/span_corruption.yaml

Lengths follow T5's `random_spans_noise_mask` and `compute_input_and_target_lengths` (as in transformers'
examples/flax/language-modeling/run_t5_mlm_flax.py): a packed block of `raw_block_size(block_size)` tokens always
becomes an encoder input of exactly `block_size` tokens and a target of a fixed length, so batches have fixed shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from plmkit.errors import ConfigError
from plmkit.objectives.base import LossOutput, example_generator, objectives, summed_cross_entropy


@dataclass
class SpanCorruptionConfig:
    noise_density: float = 0.15
    """Fraction of the tokens of a packed block that are corrupted (dropped from the input, predicted)."""
    mean_noise_span_length: float = 3.0
    """Average length, in tokens, of a corrupted span."""
    num_sentinels: int = 100
    """Sentinel tokens `<extra_id_0>` ... `<extra_id_{n-1}>` added to the tokenizer (when missing); a block may hold
    at most this many corrupted spans."""

    def validate(self) -> None:
        if not 0 < self.noise_density < 1:
            raise ValueError(f"noise_density must be in (0, 1); got {self.noise_density}")
        if self.mean_noise_span_length < 1:
            raise ValueError(f"mean_noise_span_length must be >= 1; got {self.mean_noise_span_length}")
        if self.num_sentinels < 1:
            raise ValueError(f"num_sentinels must be >= 1; got {self.num_sentinels}")


def sentinel_tokens(n: int) -> list[str]:
    """T5's sentinel token strings <extra_id_0> ... <extra_id_{n-1}>."""
    return [f"<extra_id_{k}>" for k in range(n)]


@objectives.register("span_corruption", config=SpanCorruptionConfig)
class SpanCorruption:
    """T5 span corruption: an encoder-decoder restores the spans that sentinels replaced (T5)."""

    model_kind = "seq2seq_lm"
    needs = ("pad", "eos")

    def __init__(self, cfg: SpanCorruptionConfig, tokenizer, seed: int):
        self.cfg, self.seed = cfg, seed
        for role in self.needs:
            if getattr(tokenizer, f"{role}_token_id", None) is None:
                raise ConfigError(f"span_corruption needs a {role} token but the tokenizer has none; set "
                                  f"tokenizer.special_tokens.{role} (T5 uses {'<pad>' if role == 'pad' else '</s>'}) "
                                  "or train the tokenizer with model.arch=t5")
        self.pad_id, self.eos_id = tokenizer.pad_token_id, tokenizer.eos_token_id
        names = sentinel_tokens(cfg.num_sentinels)
        vocab = tokenizer.get_vocab()
        # In T5's order: added last-first, so <extra_id_0> gets the highest id, as in T5's own vocabulary.
        missing = [name for name in reversed(names) if name not in vocab]
        if missing:  # special: never split, dropped by decode(skip_special_tokens=True)
            tokenizer.add_special_tokens({"extra_special_tokens": missing}, replace_extra_special_tokens=False)
        self.sentinel_ids = torch.tensor(tokenizer.convert_tokens_to_ids(names), dtype=torch.long)  # (n,)
        self.raw_length: int | None = None  # packed tokens per example, once raw_block_size has been asked

    def raw_block_size(self, block_size: int) -> int:
        """The packed tokens one example reads so that its encoder input holds exactly `block_size` tokens."""
        raw = raw_length_for(block_size, self.cfg.noise_density, self.cfg.mean_noise_span_length)[0]
        self._check_sentinels(span_counts(raw, self.cfg.noise_density, self.cfg.mean_noise_span_length)[1], raw)
        self.raw_length = raw
        return raw

    def input_length(self, raw: float) -> float:
        """Encoder input tokens of an example that reads `raw` packed tokens (flops.sequence_length)."""
        return corrupted_lengths(round(raw), self.cfg.noise_density, self.cfg.mean_noise_span_length)[0]

    @property
    def head_fraction(self) -> float:
        """Decoder (and LM head) positions per encoder position: target length / input length (flops.py)."""
        raw = self.raw_length or 568  # T5's 512 input tokens
        inputs, targets = corrupted_lengths(raw, self.cfg.noise_density, self.cfg.mean_noise_span_length)
        return targets / inputs

    def _check_sentinels(self, spans: int, raw: int) -> None:
        if spans > len(self.sentinel_ids):
            raise ConfigError(f"a block of {raw} tokens holds {spans} corrupted spans but objective.num_sentinels is "
                              f"{len(self.sentinel_ids)}; raise objective.num_sentinels to >= {spans} or lower "
                              "data.block_size")

    def wrap(self, model: nn.Module) -> nn.Module:
        return Seq2SeqLM(model)

    def collate(self, examples: list[dict]) -> dict[str, Tensor]:
        if "segment_ids" in examples[0]:
            raise ConfigError("span_corruption does not support data.doc_attention (T5 packs documents without "
                              "isolating them); set data.doc_attention=false")
        rows = []
        for example in examples:
            ids = torch.as_tensor(example["input_ids"], dtype=torch.long)  # (R,)
            noise, spans = random_spans_noise_mask(len(ids), self.cfg.noise_density, self.cfg.mean_noise_span_length,
                                                   example_generator(self.seed, int(example["index"])))
            self._check_sentinels(spans, len(ids))
            rows.append(corrupt(ids, noise, self.sentinel_ids, self.eos_id))
        inputs = _pad([r[0] for r in rows], self.pad_id)  # (B, T_in)
        labels = _pad([r[1] for r in rows], -100)  # (B, T_out)
        batch = {"input_ids": inputs, "labels": labels}
        if len({len(r[0]) for r in rows}) > 1:  # blocks of unequal length (not from the packer): mask the padding
            batch["attention_mask"] = _pad([torch.ones_like(r[0]) for r in rows], 0)
        return batch

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> LossOutput:
        loss_sum, count = module(**batch)  # a Seq2SeqLM from wrap()
        return LossOutput(loss_sum=loss_sum, num_targets=count)


class Seq2SeqLM(nn.Module):
    """Runs an encoder-decoder with teacher forcing (decoder inputs: the labels shifted right by the model's own
    `_shift_right`, starting from decoder_start_token_id) and returns the summed cross-entropy of the targets."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf_model = hf_model  # parameters stay hf_model.* (registered once): export strips the prefix

    def forward(self, input_ids: Tensor, labels: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        decoder_input_ids = shift_right(self.hf_model, labels)  # (B, T_out)
        logits = self.hf_model(input_ids=input_ids, attention_mask=attention_mask,
                               decoder_input_ids=decoder_input_ids, use_cache=False).logits  # (B, T_out, V)
        return summed_cross_entropy(logits, labels)


def shift_right(model: nn.Module, labels: Tensor) -> Tensor:
    """Decoder inputs for `labels`: [decoder_start, labels[:-1]] with -100 replaced by the pad id (T5's
    `_shift_right`, or the same from the config for a seq2seq model without one)."""
    if hasattr(model, "_shift_right"):
        return model._shift_right(labels)
    start, pad = model.config.decoder_start_token_id, model.config.pad_token_id
    if start is None or pad is None:
        raise ConfigError(f"{type(model).__name__} has no decoder_start_token_id or pad_token_id in its config; "
                          "span_corruption cannot build decoder inputs")
    shifted = torch.full_like(labels, start)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, pad)


def _pad(rows: list[Tensor], value: int) -> Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), value, dtype=torch.long)  # (B, T)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


# Pure helpers, so unit tests call them directly.

def span_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(corrupted tokens, corrupted spans) of a block of `length` tokens, as T5's `random_spans_noise_mask`: at
    least one token corrupted and one kept, at least one span."""
    noise = min(max(round(length * noise_density), 1), length - 1)
    spans = max(round(min(noise, length - noise) / mean_noise_span_length), 1)
    return noise, spans


def corrupted_lengths(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(encoder input length, target length) after corrupting `length` tokens: kept tokens + one sentinel per span
    + eos, and corrupted tokens + one sentinel per span + eos."""
    noise, spans = span_counts(length, noise_density, mean_noise_span_length)
    return length - noise + spans + 1, noise + spans + 1


def raw_length_for(block_size: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """(raw tokens, target length) for an encoder input of exactly `block_size` tokens: the longest raw length
    whose corrupted input fits, as T5's `compute_input_and_target_lengths`. The input length never shrinks as the
    raw length grows, and below noise_density 0.5 it grows by at most one, so every block_size >= 3 is reached.

    Raises:
        ConfigError: no raw length gives exactly `block_size` input tokens (block_size < 3, or skipped at a high
            noise_density).
    """
    if block_size < 3:
        raise ConfigError(f"data.block_size must be >= 3 for span_corruption (a kept token, a sentinel and eos); "
                          f"got {block_size}")
    raw = 2
    while corrupted_lengths(raw + 1, noise_density, mean_noise_span_length)[0] <= block_size:
        raw += 1
    inputs, targets = corrupted_lengths(raw, noise_density, mean_noise_span_length)
    if inputs != block_size:
        above = corrupted_lengths(raw + 1, noise_density, mean_noise_span_length)[0]
        raise ConfigError(f"no packed length gives an encoder input of exactly {block_size} tokens with noise_density "
                          f"{noise_density} and mean_noise_span_length {mean_noise_span_length}; set "
                          f"data.block_size to {inputs} or {above}")
    return raw, targets


def random_segmentation(num_items: int, num_segments: int, gen: torch.Generator) -> Tensor:
    """Lengths (num_segments,) of a uniformly random split of `num_items` items into `num_segments` non-empty runs."""
    cuts = torch.randperm(num_items - 1, generator=gen)[:num_segments - 1] + 1  # distinct cut points in 1..n-1
    bounds = torch.cat([torch.zeros(1, dtype=torch.long), cuts.sort().values, torch.tensor([num_items])])
    return bounds.diff()


def random_spans_noise_mask(length: int, noise_density: float, mean_noise_span_length: float,
                            gen: torch.Generator) -> tuple[Tensor, int]:
    """(noise mask (length,) bool, number of noise spans), as T5's `random_spans_noise_mask`.

    The kept and the corrupted tokens are each split at random into the same number of spans, which then alternate,
    starting with a kept span (so the last span is corrupted)."""
    noise, spans = span_counts(length, noise_density, mean_noise_span_length)
    noise_lengths = random_segmentation(noise, spans, gen)  # (S,)
    kept_lengths = random_segmentation(length - noise, spans, gen)  # (S,)
    interleaved = torch.stack([kept_lengths, noise_lengths], dim=1).flatten()  # (2S,): kept, noise, kept, ...
    is_noise = torch.tensor([False, True]).repeat(spans)  # (2S,)
    return torch.repeat_interleave(is_noise, interleaved), spans  # (length,)


def corrupt(ids: Tensor, noise: Tensor, sentinel_ids: Tensor, eos_id: int) -> tuple[Tensor, Tensor]:
    """(encoder input, target) of one block: in the input each corrupted span becomes the next sentinel; the target
    is each sentinel followed by the span it replaced. Both end with eos.

    Example (sentinels X, Y; eos E): ids "a b c d e f", noise on "b c" and "f" -> input "a X d e Y E",
    target "X b c Y f E"."""
    prev = torch.cat([torch.zeros(1, dtype=torch.bool), noise[:-1]])  # (R,) noise at the previous position
    starts = noise & ~prev  # (R,) first token of each corrupted span
    sentinels = sentinel_ids[(starts.cumsum(0) - 1).clamp(min=0)]  # (R,) the sentinel of the span a token is in
    inputs = torch.where(starts, sentinels, ids)[~noise | starts]
    # Target: at each position, the span's sentinel (at its first token), then the token itself when corrupted.
    keep = torch.stack([starts, noise], dim=1).flatten()  # (2R,)
    targets = torch.stack([sentinels, ids], dim=1).flatten()[keep]
    eos = torch.tensor([eos_id])
    return torch.cat([inputs, eos]), torch.cat([targets, eos])
