"""Masked language modelling (Devlin et al., 2019): dynamic masking, 15% of tokens by default, 80/10/10.

Each token is selected independently, so every document keeps the configured rate wherever it falls in a block;
special, separator and padding tokens are never selected.  Try it:  plm pretrain configs/debug/mlm.yaml
With `whole_word: true` whole words are selected instead (BERT-wwm; Chinese with jieba words as in Cui et al.,
2021), from the word boundaries stored with the shards (data.segmenter; docs/whole-word-masking.md).
  Try it:  plm pretrain configs/debug/mlm_wwm.yaml   (Chinese: configs/debug/mlm_wwm_zh.yaml)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.bert.modeling_bert import BertLMPredictionHead
from transformers.models.roberta.modeling_roberta import RobertaLMHead

from plmkit.errors import ConfigError
from plmkit.flops import parameter_flops
from plmkit.models import masked_lm_head
from plmkit.objectives.base import (
    LossOutput,
    block_attention_mask,
    example_generator,
    fused_cross_entropy,
    linear_cross_entropy,
    objectives,
)


@dataclass
class MLMConfig:
    mask_prob: float = 0.15
    """Probability that a (non-special) token is selected for prediction."""
    replace_with_mask: float = 0.8
    """Share of the selected tokens replaced by the mask token."""
    replace_with_random: float = 0.1
    """Share of the selected tokens replaced by a random token; the rest stay unchanged."""
    whole_word: bool = False
    """Select whole words, not tokens: each word with probability mask_prob, all its sub-tokens together (so the
    expected share of predicted tokens stays mask_prob); the 80/10/10 replacement is then drawn per token. Word
    boundaries come from data.segmenter and are stored with the shards."""
    sparse_head: bool = True
    """Run the LM head only at the predicted positions (same loss as the full head, a fraction of its compute);
    false: transformers' head on every position (for comparison)."""
    sparse_last_layer: bool = True
    """With sparse_head, run the encoder's last layer only where a token is predicted, too: its keys and values at
    every position, its queries, attention output and feed-forward at the predicted ones (nothing else reads the
    other positions' outputs, so the loss is the same). BERT/RoBERTa layouts with eager, SDPA or (unmasked)
    FlashAttention-2 attention; other models run the whole last layer. False: the whole last layer (comparison)."""
    fused_loss: bool = True
    """Cross-entropy that writes its gradient during the forward pass, a chunk of rows at a time, in float32 (same
    loss within 1e-6 relative; no float32 copy of the logits or log-probabilities kept for the backward pass). On a
    CPU only; on a GPU and under train.compile the plain loss runs."""

    def validate(self) -> None:
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1); got {self.mask_prob}")
        for key in ("replace_with_mask", "replace_with_random"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"{key} must be in [0, 1]; got {getattr(self, key)}")
        if self.replace_with_mask + self.replace_with_random > 1:
            raise ValueError("replace_with_mask + replace_with_random must be <= 1; got "
                             f"{self.replace_with_mask} + {self.replace_with_random}")


@objectives.register("mlm", config=MLMConfig)
class MaskedLM:
    """Masked LM: predict randomly selected tokens from both sides (BERT, RoBERTa)."""

    model_kind = "masked_lm"
    needs = ("mask",)

    def __init__(self, cfg: MLMConfig, tokenizer, seed: int):
        self.cfg, self.seed = cfg, seed
        self.mask_id = tokenizer.mask_token_id
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        vocab = torch.arange(len(tokenizer))
        self.random_pool = vocab[~torch.isin(vocab, self.special_ids)]  # random replacements are never special
        self.index_predictions = cfg.sparse_head  # collate adds prediction_index (ELECTRA's masker turns it off)

    @property
    def head_fraction(self) -> float:
        """Share of the positions the LM head runs at (the FLOP count of MFU)."""
        return self.cfg.mask_prob if self.cfg.sparse_head else 1.0

    def wrap(self, model: nn.Module) -> nn.Module:
        return SparseMaskedLM(model, sparse=self.cfg.sparse_head, fused_loss=self.cfg.fused_loss,
                              sparse_last_layer=self.cfg.sparse_last_layer, mask_prob=self.cfg.mask_prob)

    def collate(self, examples: list[dict]) -> dict[str, Tensor]:
        ids = torch.stack([torch.as_tensor(e["input_ids"], dtype=torch.long) for e in examples])  # (B, T)
        draws = example_draws(self.seed, [int(example["index"]) for example in examples], ids.shape[1])
        if self.cfg.whole_word:
            inputs, labels = mask_whole_words(ids, _word_starts(examples), self.cfg, self.special_ids, self.mask_id,
                                              self.random_pool, draws)
        else:
            inputs, labels = mask_tokens(ids, self.cfg, self.special_ids, self.mask_id, self.random_pool, draws)
        batch = {"input_ids": inputs, "labels": labels}
        if self.index_predictions:  # on the CPU, here: the model then needs no data-dependent shape of its own
            batch.update(prediction_index(labels))
        if "segment_ids" in examples[0]:
            segments = torch.stack([torch.as_tensor(e["segment_ids"]) for e in examples])  # (B, T)
            batch["attention_mask"] = block_attention_mask(segments, causal=False)
        return batch

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> LossOutput:
        loss_sum, count = module(**batch)  # a SparseMaskedLM from wrap()
        return LossOutput(loss_sum=loss_sum, num_targets=count)


class SparseMaskedLM(nn.Module):
    """Runs the encoder on every token but the LM head only where a token is predicted (about 15% of positions),
    as in cramming (Geiping & Goldstein, 2023): the same loss as the full head, for a fraction of its compute.
    With `sparse_last_layer` (BERT/RoBERTa layouts, see `last_layer_can_be_sparse`) the last encoder layer, too,
    computes its outputs only there: nothing else reads the others. With `sparse=False` the head runs on every
    position and the logits are then selected (the plain path)."""

    def __init__(self, hf_model: nn.Module, sparse: bool = True, fused_loss: bool = True,
                 sparse_last_layer: bool = True, mask_prob: float = 0.15):
        super().__init__()
        self.hf_model = hf_model  # parameters stay hf_model.* (registered once): export strips the prefix
        self.sparse, self.fused_loss, self.mask_prob = sparse, fused_loss, mask_prob
        self.sparse_last_layer = sparse and sparse_last_layer and last_layer_can_be_sparse(hf_model.base_model)
        masked_lm_head(hf_model)  # fail now, not at the first step, if there is no head

    def forward(self, input_ids: Tensor, labels: Tensor, attention_mask: Tensor | None = None,
                **kwargs) -> tuple[Tensor, Tensor]:
        """(summed loss, number of predicted tokens). The positions come from the batch's `prediction_index` keys
        where the collate added them (then nothing here waits for the device), else from `labels`."""
        index = {key: kwargs.pop(key) for key in PREDICTION_KEYS if key in kwargs} or prediction_index(labels)
        rows, cols, targets = index["predict_rows"], index["predict_cols"], index["predict_targets"]
        count = (labels != -100).sum()
        if self.sparse and self.sparse_last_layer and set(kwargs) <= {"token_type_ids", "position_ids"}:
            picked = encode_at(self.hf_model.base_model, input_ids, attention_mask, index, **kwargs)  # (N, H)
        elif self.sparse:
            hidden = self.hf_model.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                              **kwargs).last_hidden_state  # (B, T, H)
            picked = hidden[rows, cols]  # (N, H)
        else:
            logits = self.hf_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits  # (B, T, V)
            return self._loss(logits[rows, cols], targets), count
        split = split_head(masked_lm_head(self.hf_model)) if self.fused_loss else None
        if split is not None:  # the decoder and the loss in one step (objectives/base.py)
            transform, decoder = split
            return linear_cross_entropy(transform(picked), decoder, targets), count
        return self._loss(masked_lm_head(self.hf_model)(picked), targets), count  # logits (N, V)

    def _loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.fused_loss:
            return fused_cross_entropy(logits, targets)
        return nn.functional.cross_entropy(logits.float(), targets, reduction="sum")

    def extra_flops_per_token(self, seq_len: float) -> float:
        """Training FLOPs per token that the sparse last layer does not spend (negative; 0 without it): its
        queries, attention output, feed-forward and norms, and its attention products, run at mask_prob of the
        positions; keys and values at all of them (what `flops.module_flops_per_token` counts at every one)."""
        if not self.sparse_last_layer:
            return 0.0
        layer = self.hf_model.base_model.encoder.layer[-1]
        attention = layer.attention.self
        everywhere = {id(p) for p in (*attention.key.parameters(), *attention.value.parameters())}
        per_token = sum(parameter_flops(p) for p in layer.parameters() if id(p) not in everywhere)
        width = attention.num_attention_heads * attention.attention_head_size
        return -(1.0 - self.mask_prob) * (per_token + 12 * width * seq_len)


def split_head(head: nn.Module) -> tuple[Callable[[Tensor], Tensor], nn.Linear] | None:
    """(the transform before the vocabulary projection, the projection) of transformers' BERT and RoBERTa masked-LM
    heads, whose forward is `decoder(transform(x))`; None for other heads (they run whole)."""
    predictions = getattr(head, "predictions", None)  # BERT's BertOnlyMLMHead
    if (isinstance(predictions, BertLMPredictionHead) and isinstance(predictions.transform, nn.Module)
            and isinstance(predictions.decoder, nn.Linear)):
        return predictions.transform, predictions.decoder
    if type(head) is RobertaLMHead and isinstance(head.decoder, nn.Linear):  # dense, GELU, LayerNorm, decoder
        return (lambda x: head.layer_norm(nn.functional.gelu(head.dense(x)))), head.decoder
    return None


SPARSE_LAYER_ATTENTION = ("eager", "sdpa", "flash_attention_2", "plmkit_sdpa", "plmkit_sdpa_graph")
"""Attention implementations whose layers `encode_at` can call with the mask it makes (FlashAttention-2: without a
mask only)."""


def last_layer_can_be_sparse(base: nn.Module) -> bool:
    """Whether `encode_at` can run this encoder: a BERT-layout stack (embeddings, encoder.layer[i] with
    attention.self.query/key/value, attention.output, intermediate, output), absolute positions, no decoder or
    cross-attention, no chunked feed-forward, and an attention implementation it can call."""
    config = getattr(base, "config", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if config is None or not isinstance(layers, nn.ModuleList) or len(layers) == 0 or not hasattr(base, "embeddings"):
        return False
    last = layers[-1]
    attention = getattr(getattr(last, "attention", None), "self", None)
    parts = [getattr(attention, name, None) for name in ("query", "key", "value")]
    return (all(isinstance(part, nn.Linear) for part in parts)
            and all(hasattr(x, name) for x, name in [(attention, "num_attention_heads"),
                                                     (attention, "attention_head_size"), (attention, "dropout"),
                                                     (last.attention, "output"), (last, "intermediate"),
                                                     (last, "output")])
            and not getattr(config, "is_decoder", False) and not getattr(config, "add_cross_attention", False)
            and getattr(config, "position_embedding_type", "absolute") == "absolute"
            and not getattr(config, "chunk_size_feed_forward", 0)
            and getattr(config, "_attn_implementation", None) in SPARSE_LAYER_ATTENTION)


PREDICTION_KEYS = ("predict_rows", "predict_cols", "predict_slot", "query_cols", "predict_targets")
"""The batch keys of `prediction_index`."""


def prediction_index(labels: Tensor) -> dict[str, Tensor]:
    """Where a (B, T) batch of labels predicts (label not -100), as index tensors whose shapes carry the counts:
    predict_rows and predict_cols (N,) in row-major order (that of `labels[labels != -100]`), predict_slot (N,) each
    position's place among its row's predictions, query_cols (B, M) each row's predicted columns padded with 0 to
    M, the count of the fullest row, and predict_targets (N,) the labels there. The masked-LM collate computes them
    on the CPU, so that the model selects the positions with no host synchronisation and no shape that depends on
    data it has (one graph under torch.compile, nothing for a GPU to wait on)."""
    keep = labels != -100  # (B, T)
    rows, cols = keep.nonzero(as_tuple=True)  # (N,), (N,)
    slot = (keep.cumsum(1) - 1)[rows, cols]  # (N,)
    width = int(keep.sum(1).max()) if len(rows) else 0  # queries of the fullest row
    query_cols = torch.zeros(labels.shape[0], width, dtype=torch.long, device=labels.device)
    query_cols = query_cols.index_put((rows, slot), cols)  # (B, M)
    return {"predict_rows": rows, "predict_cols": cols, "predict_slot": slot, "query_cols": query_cols,
            "predict_targets": labels[rows, cols]}


def encode_at(base: nn.Module, input_ids: Tensor, attention_mask: Tensor | None, index: dict[str, Tensor],
              **kwargs) -> Tensor:
    """The last hidden states of a BERT-layout encoder at the predicted positions of `index` (`prediction_index`),
    (N, H) in its row-major order, computing the last layer only there.

    The embeddings and every layer but the last run as transformers runs them (the attention mask made by its
    `create_bidirectional_mask`). The last layer computes keys and values at every position and its queries,
    attention, output projection, norms and feed-forward only at the kept ones; its attention is the eager
    formula (softmax(QK^T·scale + mask), dropout, ·V), which SDPA and FlashAttention compute too, with each
    sequence's queries padded to the longest row's count (about 19 of 128 at mask_prob 0.15)."""
    hidden = base.embeddings(input_ids=input_ids, **kwargs)  # (B, T, H)
    mask = create_bidirectional_mask(config=base.config, inputs_embeds=hidden, attention_mask=attention_mask)
    if mask is not None and base.config._attn_implementation == "flash_attention_2":
        raise ValueError("objective.sparse_last_layer: FlashAttention-2 takes no per-document mask; "
                         "set train.attention=sdpa")
    layers = base.encoder.layer
    for layer in layers[:-1]:
        out = layer(hidden, mask)
        hidden = out[0] if isinstance(out, tuple) else out  # transformers < 5 returned tuples
    return _layer_at(layers[-1], hidden, mask, index)


def _layer_at(layer: nn.Module, hidden: Tensor, mask: Tensor | None, index: dict[str, Tensor]) -> Tensor:
    """One BERT layer's output at the predicted positions (N, H), from its input at every position (B, T, H)."""
    attention = layer.attention.self
    B, T, _ = hidden.shape
    heads, size = attention.num_attention_heads, attention.attention_head_size
    rows, cols, slot, query_cols = (index[k] for k in ("predict_rows", "predict_cols", "predict_slot", "query_cols"))
    width = query_cols.shape[1]  # queries of the fullest row
    picked = hidden[rows, cols]  # (N, H)
    queries = attention.query(picked)  # (N, A)
    padded = queries.new_zeros(B, width, heads * size).index_put((rows, slot), queries)  # (B, M, A)
    q = padded.view(B, width, heads, size).transpose(1, 2)  # (B, heads, M, size)
    k = attention.key(hidden).view(B, T, heads, size).transpose(1, 2)  # (B, heads, T, size)
    v = attention.value(hidden).view(B, T, heads, size).transpose(1, 2)
    scores = torch.matmul(q, k.transpose(2, 3)) * getattr(attention, "scaling", size ** -0.5)  # (B, heads, M, T)
    if mask is not None:
        if mask.shape[-2] != 1:  # a row per query position: take the predicted positions' rows
            mask = mask.gather(2, query_cols[:, None, :, None].expand(B, mask.shape[1], width, mask.shape[-1]))
        scores = (scores.masked_fill(~mask, torch.finfo(scores.dtype).min) if mask.dtype == torch.bool
                  else scores + mask)
    probs = nn.functional.dropout(scores.softmax(-1), p=attention.dropout.p, training=attention.training)
    context = torch.matmul(probs, v).transpose(1, 2).reshape(B, width, heads * size)[rows, slot]  # (N, A)
    attended = layer.attention.output(context, picked)  # dense, dropout, LayerNorm(. + picked)
    return layer.output(layer.intermediate(attended), attended)  # (N, H)


def example_draws(seed: int, indices: list[int], length: int) -> Tensor:
    """(3, B, T) uniforms in [0, 1) for a batch of B examples of T tokens: row b drawn from example_generator(seed,
    indices[b]), so an example gets the same masks however it is batched, split across processes or resumed. The
    three draws are read by `mask_tokens` / `mask_whole_words` (selection) and `replace_selected` (which
    replacement, which random token). One call per example; the masking itself is whole-batch tensor work."""
    return torch.stack([torch.rand(3, length, generator=example_generator(seed, index)) for index in indices], 1)


def mask_tokens(ids: Tensor, cfg: MLMConfig, special_ids: Tensor, mask_id: int, random_pool: Tensor,
                draws: Tensor) -> tuple[Tensor, Tensor]:
    """Select each non-special token with probability mask_prob; of those, replace replace_with_mask by the mask
    token, replace_with_random by a random non-special token, and leave the rest. ids (..., T), draws (3, ..., T)
    (`example_draws`). Returns (inputs, labels) with labels -100 where nothing is predicted."""
    selected = (draws[0] < cfg.mask_prob) & ~torch.isin(ids, special_ids)
    return replace_selected(ids, selected, cfg, mask_id, random_pool, draws)


def mask_whole_words(ids: Tensor, word_starts: Tensor, cfg: MLMConfig, special_ids: Tensor, mask_id: int,
                     random_pool: Tensor, draws: Tensor) -> tuple[Tensor, Tensor]:
    """Whole-word masking: select each word with probability mask_prob and predict all its non-special tokens.

    A word is a token with `word_starts` set and the tokens after it up to the next start (the first token always
    starts one); it is selected when the draw at its first token is below mask_prob. Since every token belongs to
    exactly one word, each token is predicted with probability mask_prob, as with mask_tokens, so the expected
    masking rate is mask_prob in every document wherever it falls in a block; special tokens are words of their
    own and never predicted. The 80/10/10 replacement is drawn per token (as in Google's BERT-wwm and transformers'
    DataCollatorForWholeWordMask). ids and word_starts (..., T), draws (3, ..., T). Returns (inputs, labels)."""
    starts = word_starts.bool().clone()
    starts[..., 0] = True
    positions = torch.arange(ids.shape[-1]).expand_as(ids)
    first = torch.where(starts, positions, 0).cummax(-1).values  # (..., T) the position where each token's word starts
    selected = (draws[0].gather(-1, first) < cfg.mask_prob) & ~torch.isin(ids, special_ids)
    return replace_selected(ids, selected, cfg, mask_id, random_pool, draws)


def replace_selected(ids: Tensor, selected: Tensor, cfg: MLMConfig, mask_id: int, random_pool: Tensor,
                     draws: Tensor) -> tuple[Tensor, Tensor]:
    """Of the selected tokens, replace replace_with_mask by the mask token and replace_with_random by a random
    non-special token (drawn per token); the rest stay. Returns (inputs, labels), labels -100 where not selected."""
    labels = torch.where(selected, ids, -100)
    which = draws[1]
    to_mask = selected & (which < cfg.replace_with_mask)
    to_random = selected & (which >= cfg.replace_with_mask) & (which < cfg.replace_with_mask + cfg.replace_with_random)
    picks = random_pool[(draws[2] * len(random_pool)).long().clamp_(max=len(random_pool) - 1)]
    inputs = torch.where(to_mask, mask_id, ids)
    inputs = torch.where(to_random, picks, inputs)
    return inputs, labels


def _word_starts(examples: list[dict]) -> Tensor:
    """(B, T) bool word-start flags of a batch; a clear error when the blocks carry none."""
    if "word_starts" not in examples[0]:
        raise ConfigError("objective.whole_word is true but the blocks carry no word boundaries: the shards were "
                          "prepared without a segmenter; set data.segmenter to auto or pretokenizer (English) or "
                          "jieba (Chinese), not none, and prepare the data again (plm data prepare / plm pretrain)")
    return torch.stack([torch.as_tensor(e["word_starts"], dtype=torch.bool) for e in examples])
