"""T5 span corruption: T5's length arithmetic, noise density and span lengths within tolerance, sentinels in order,
inputs + targets restore the block, fixed shapes, seeded determinism, the summed loss and the T5 plumbing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers.tokenization_utils_base import VERY_LARGE_INTEGER

from plmkit.config import ModelConfig, TokenizerConfig, TokenizerTrainConfig, load_config
from plmkit.errors import ConfigError
from plmkit.flops import module_flops_per_token
from plmkit.models import build_model
from plmkit.objectives.span_corruption import (
    SpanCorruption,
    SpanCorruptionConfig,
    corrupt,
    corrupted_lengths,
    random_spans_noise_mask,
    raw_length_for,
    sentinel_tokens,
    span_counts,
)
from plmkit.tokenization import check_compatibility, max_positions, train_tokenizer

B = 4
TINY = Path(__file__).resolve().parents[2] / "fixtures" / "tiny.txt"


def _docs() -> list[str]:
    return [p.strip() for p in TINY.read_text(encoding="utf-8").split("\n\n") if p.strip()]


@pytest.fixture(scope="module")
def t5_tokenizer(tmp_path_factory):
    """A Unigram tokenizer with T5's special tokens (pad, unk, eos), trained on the tiny corpus; module-scoped, since
    the objective adds its sentinels to it."""
    cfg = TokenizerConfig(train=TokenizerTrainConfig(algorithm="unigram", vocab_size=300))
    return train_tokenizer(_docs(), cfg, "t5", tmp_path_factory.mktemp("tok-t5"), show_progress=False)


def _objective(tokenizer, seed: int = 13, **kwargs) -> SpanCorruption:
    return SpanCorruption(SpanCorruptionConfig(**kwargs), tokenizer, seed)


def _blocks(tokenizer, length: int, n: int = B, first_index: int = 0) -> list[dict]:
    ids = tokenizer("\n".join(_docs()), add_special_tokens=False)["input_ids"]
    assert len(ids) >= n * length
    return [{"input_ids": torch.tensor(ids[i * length:(i + 1) * length]), "index": first_index + i}
            for i in range(n)]


def _tiny_t5(tokenizer):
    torch.manual_seed(0)
    cfg = ModelConfig(arch="t5", hidden_size=32, num_layers=2, num_heads=2, dropout=0.0)
    return build_model(cfg, tokenizer, "seq2seq_lm")


def _runs(mask: torch.Tensor) -> list[tuple[bool, int]]:
    """(value, length) of each run of equal values."""
    values, counts = torch.unique_consecutive(mask, return_counts=True)
    return list(zip(values.tolist(), counts.tolist(), strict=True))


# --- length arithmetic -------------------------------------------------------------------------------------------

def test_lengths_match_t5():
    # T5 (Raffel et al. 2020) pre-trains on 512 input tokens: 568 packed tokens, 114 target tokens.
    assert raw_length_for(512, 0.15, 3.0) == (568, 114)
    assert span_counts(568, 0.15, 3.0) == (85, 28)
    assert corrupted_lengths(568, 0.15, 3.0) == (512, 114)


@pytest.mark.parametrize(("density", "mean"), [(0.15, 3.0), (0.3, 2.0), (0.45, 8.0), (0.05, 1.0)])
def test_every_block_size_gets_an_exact_input_length(density, mean):
    # Below density 0.5 a longer block gains at most one input token, so every block size is reached.
    for block_size in range(3, 700):
        raw, targets = raw_length_for(block_size, density, mean)
        assert corrupted_lengths(raw, density, mean) == (block_size, targets), block_size
        assert corrupted_lengths(raw + 1, density, mean)[0] > block_size  # the longest raw length that fits


def test_an_unreachable_block_size_is_a_clear_error():
    # At density 0.5 a kept token and a span can be gained at once: some input lengths are skipped.
    reached = 0
    for block_size in range(3, 300):
        try:
            raw, targets = raw_length_for(block_size, 0.5, 8.0)
        except ConfigError as e:
            low, high = (int(v) for v in str(e).rsplit("data.block_size to ", 1)[1].split(" or "))
            assert low < block_size < high
            assert raw_length_for(low, 0.5, 8.0) and raw_length_for(high, 0.5, 8.0)  # the suggestions work
            continue
        reached += 1
        assert corrupted_lengths(raw, 0.5, 8.0) == (block_size, targets)
    assert 250 < reached < 297


def test_tiny_block_size_is_rejected():
    with pytest.raises(ConfigError, match="block_size must be >= 3"):
        raw_length_for(2, 0.15, 3.0)


# --- the noise mask --------------------------------------------------------------------------------------------

def test_noise_density_and_mean_span_length_within_tolerance():
    length, n = 568, 1000
    noise_total, spans, span_lengths = 0, 0, []
    for i in range(n):
        mask, count = random_spans_noise_mask(length, 0.15, 3.0, torch.Generator().manual_seed(i))
        assert mask.shape == (length,) and mask.dtype == torch.bool
        runs = _runs(mask)
        assert not runs[0][0] and runs[-1][0]  # starts with kept tokens, ends with a corrupted span (as T5)
        noisy = [k for value, k in runs if value]
        assert len(noisy) == count and all(k >= 1 for k in noisy)
        noise_total += int(mask.sum())
        spans += count
        span_lengths += noisy
    assert abs(noise_total / (n * length) - 0.15) < 0.005
    assert abs(sum(span_lengths) / len(span_lengths) - 3.0) < 0.1
    assert spans == n * 28
    # The span lengths vary (a random segmentation, not fixed runs of 3): short and long spans both occur.
    assert min(span_lengths) == 1 and max(span_lengths) >= 8


def test_other_settings_within_tolerance():
    length = 1000
    mask, count = random_spans_noise_mask(length, 0.3, 5.0, torch.Generator().manual_seed(0))
    assert int(mask.sum()) == 300 and count == 60
    assert sum(k for v, k in _runs(mask) if v) / count == 5.0


# --- corrupt(): inputs and targets ---------------------------------------------------------------------------

def test_corrupt_hand_example():
    ids = torch.tensor([10, 11, 12, 13, 14, 15])  # a b c d e f
    noise = torch.tensor([0, 1, 1, 0, 0, 1], dtype=torch.bool)
    inputs, targets = corrupt(ids, noise, torch.tensor([90, 91]), eos_id=1)
    assert inputs.tolist() == [10, 90, 13, 14, 91, 1]  # a X d e Y </s>
    assert targets.tolist() == [90, 11, 12, 91, 15, 1]  # X b c Y f </s>


def _restore(inputs: list[int], targets: list[int], sentinels: list[int], eos: int) -> list[int]:
    """The original block from an encoder input and its target: each sentinel in the input is replaced by what
    follows the same sentinel in the target."""
    assert inputs[-1] == eos and targets[-1] == eos
    spans, current = {}, None
    for token in targets[:-1]:
        if token in sentinels:
            current = token
            spans[current] = []
        else:
            spans[current].append(token)
    out = []
    for token in inputs[:-1]:
        out.extend(spans[token] if token in sentinels else [token])
    return out


def test_collate_fixed_shapes_sentinels_in_order_and_restores_the_block(t5_tokenizer):
    obj = _objective(t5_tokenizer)
    block_size = 64
    raw = obj.raw_block_size(block_size)
    target_length = raw_length_for(block_size, 0.15, 3.0)[1]
    examples = _blocks(t5_tokenizer, raw)
    batch = obj.collate(examples)
    assert set(batch) == {"input_ids", "labels"}  # packed blocks: nothing padded, no attention mask
    assert batch["input_ids"].shape == (B, block_size) and batch["input_ids"].dtype == torch.int64
    assert batch["labels"].shape == (B, target_length) and batch["labels"].dtype == torch.int64
    assert (batch["labels"] != -100).all()
    sentinels = obj.sentinel_ids.tolist()
    for row, example in enumerate(examples):
        inputs, targets = batch["input_ids"][row].tolist(), batch["labels"][row].tolist()
        in_order = [t for t in inputs if t in sentinels]
        assert in_order == sentinels[:len(in_order)]  # <extra_id_0>, <extra_id_1>, ... in order
        assert [t for t in targets if t in sentinels] == in_order  # the same sentinels, in the same order
        assert targets[0] == sentinels[0]
        assert inputs[-1] == targets[-1] == t5_tokenizer.eos_token_id
        assert _restore(inputs, targets, sentinels, t5_tokenizer.eos_token_id) == example["input_ids"].tolist()


def test_sentinel_tokens_decode(t5_tokenizer):
    obj = _objective(t5_tokenizer)
    batch = obj.collate(_blocks(t5_tokenizer, obj.raw_block_size(32), n=1))
    text = t5_tokenizer.decode(batch["labels"][0])
    assert text.startswith("<extra_id_0>") and text.endswith("</s>")


def test_same_seed_same_batch_other_seed_or_index_other_masks(t5_tokenizer):
    obj = _objective(t5_tokenizer)
    examples = _blocks(t5_tokenizer, obj.raw_block_size(64))
    first = obj.collate(examples)
    again = _objective(t5_tokenizer).collate(examples)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(_objective(t5_tokenizer, seed=14).collate(examples)["input_ids"], first["input_ids"])
    # Masks are keyed by example index, not by batch position: reordering the batch reorders the rows.
    reordered = obj.collate(examples[::-1])
    assert torch.equal(reordered["input_ids"], first["input_ids"].flip(0))
    shifted = [{**e, "index": e["index"] + 100} for e in examples]
    assert not torch.equal(obj.collate(shifted)["input_ids"], first["input_ids"])


def test_blocks_of_unequal_length_are_padded(t5_tokenizer):
    obj = _objective(t5_tokenizer)
    examples = _blocks(t5_tokenizer, 70, n=2)
    examples[1] = {**examples[1], "input_ids": examples[1]["input_ids"][:40]}
    batch = obj.collate(examples)
    long_in, long_out = corrupted_lengths(70, 0.15, 3.0)
    short_in, short_out = corrupted_lengths(40, 0.15, 3.0)
    assert batch["input_ids"].shape == (2, long_in) and batch["labels"].shape == (2, long_out)
    assert batch["attention_mask"].tolist()[1] == [1] * short_in + [0] * (long_in - short_in)
    assert (batch["input_ids"][1, short_in:] == t5_tokenizer.pad_token_id).all()
    assert (batch["labels"][1, short_out:] == -100).all() and (batch["labels"][1, :short_out] != -100).all()


# --- the tokenizer: sentinels --------------------------------------------------------------------------------

def test_sentinels_added_once_as_special_tokens(t5_tokenizer):
    obj = _objective(t5_tokenizer)
    size = len(t5_tokenizer)
    assert size >= 300 + 100
    names = sentinel_tokens(100)
    assert t5_tokenizer.convert_tokens_to_ids(names) == obj.sentinel_ids.tolist()
    assert set(obj.sentinel_ids.tolist()) <= set(t5_tokenizer.all_special_ids)
    assert obj.sentinel_ids[0] == size - 1  # T5's order: <extra_id_0> has the highest id
    assert t5_tokenizer.tokenize("a <extra_id_7> b").count("<extra_id_7>") == 1  # never split
    _objective(t5_tokenizer)
    assert len(t5_tokenizer) == size  # a second objective (a resumed run) adds nothing


def test_missing_eos_is_a_clear_error(tokenizers_by_arch):
    with pytest.raises(ConfigError, match="needs a eos token but the tokenizer has none"):
        _objective(tokenizers_by_arch["bert"])  # [PAD] [UNK] [CLS] [SEP] [MASK]: no eos


# --- config and errors --------------------------------------------------------------------------------------

def test_config_section_and_validation():
    cfg = load_config(None, ["objective.name=span_corruption", "objective.noise_density=0.3",
                             "model.arch=t5"]).objective
    assert isinstance(cfg, SpanCorruptionConfig)
    assert (cfg.noise_density, cfg.mean_noise_span_length, cfg.num_sentinels) == (0.3, 3.0, 100)
    for bad, match in (("noise_density=1.5", "noise_density"), ("mean_noise_span_length=0.5", "mean_noise_span"),
                       ("num_sentinels=0", "num_sentinels")):
        with pytest.raises(ConfigError, match=f"objective.{match}"):
            load_config(None, ["objective.name=span_corruption", f"objective.{bad}"])


def test_too_few_sentinels_is_a_clear_error(t5_tokenizer):
    obj = _objective(t5_tokenizer, num_sentinels=3)
    with pytest.raises(ConfigError, match="raise objective.num_sentinels to >= 28"):
        obj.raw_block_size(512)


def test_doc_attention_is_refused(t5_tokenizer):
    obj = _objective(t5_tokenizer)
    examples = [{**e, "segment_ids": torch.zeros(34, dtype=torch.long)} for e in _blocks(t5_tokenizer, 34)]
    with pytest.raises(ConfigError, match="doc_attention"):
        obj.collate(examples)


# --- the model: loss, T5 plumbing -------------------------------------------------------------------------------

def test_summed_loss_matches_t5s_own_loss(t5_tokenizer):
    obj = _objective(t5_tokenizer)
    model = _tiny_t5(t5_tokenizer).eval()
    batch = obj.collate(_blocks(t5_tokenizer, obj.raw_block_size(32)))
    out = obj.loss(obj.wrap(model), batch)
    assert out.num_targets == batch["labels"].numel()
    with torch.no_grad():
        reference = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss  # mean over the targets
    torch.testing.assert_close(out.loss_sum / out.num_targets, reference, rtol=1e-5, atol=1e-6)
    assert 0.5 < reference.item() / math.log(len(t5_tokenizer)) < 1.5


def test_t5_model_and_compatibility(t5_tokenizer):
    obj = _objective(t5_tokenizer)
    model = _tiny_t5(t5_tokenizer)
    config = model.config
    assert type(model).__name__ == "T5ForConditionalGeneration"
    assert config.vocab_size == len(t5_tokenizer)  # the sentinels are embedded
    assert (config.d_model, config.d_kv, config.num_layers, config.num_decoder_layers, config.d_ff) == (32, 16, 2, 2,
                                                                                                       128)
    assert config.decoder_start_token_id == config.pad_token_id == t5_tokenizer.pad_token_id
    assert config.eos_token_id == t5_tokenizer.eos_token_id
    assert max_positions(config) == VERY_LARGE_INTEGER  # relative positions: no table, no limit
    check_compatibility(t5_tokenizer, config, block_size=4096, needs=obj.needs)


def test_flops_count_the_decoder_at_the_target_positions(t5_tokenizer):
    obj = _objective(t5_tokenizer)
    obj.raw_block_size(128)
    fraction = obj.head_fraction
    assert fraction == pytest.approx(29 / 128)
    model = _tiny_t5(t5_tokenizer)
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    decoder = {id(p) for p in model.decoder.parameters()}
    enc = sum(p.numel() for p in model.parameters() if id(p) not in embeddings | decoder)
    dec = sum(p.numel() for p in model.parameters() if id(p) in decoder and id(p) not in embeddings)
    head = model.lm_head.weight.numel()  # tied to the shared embedding: the matmul still runs
    seq, width, layers = 128, 32, 2
    want = (6 * enc + fraction * 6 * (dec + head)
            + 12 * width * layers * (seq + fraction * (fraction * seq + seq)))
    assert module_flops_per_token(model, seq, head_fraction=fraction) == pytest.approx(want)


def test_flops_within_10pct_of_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForSeq2SeqLM, T5Config

    from plmkit.objectives.span_corruption import Seq2SeqLM

    config = T5Config(vocab_size=4000, d_model=128, d_ff=512, d_kv=32, num_layers=2, num_heads=4, dropout_rate=0.0,
                      pad_token_id=0, eos_token_id=2, decoder_start_token_id=0)
    model = AutoModelForSeq2SeqLM.from_config(config, attn_implementation="eager")
    block_size = 128
    targets = raw_length_for(block_size, 0.15, 3.0)[1]
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randint(3, 4000, (2, block_size), generator=gen)
    labels = torch.randint(3, 4000, (2, targets), generator=gen)
    with FlopCounterMode(display=False) as counter:
        loss_sum, _ = Seq2SeqLM(model)(input_ids=inputs, labels=labels)
        loss_sum.backward()
    measured = counter.get_total_flops() / inputs.numel()  # per encoder token, as the loop counts tokens
    assert module_flops_per_token(model, block_size, head_fraction=targets / block_size) == pytest.approx(
        measured, rel=0.1)


def test_doc_attention_is_refused_when_the_config_loads():
    """Before a tokenizer is trained or data prepared: nothing is left in the run folder."""
    with pytest.raises(ConfigError, match="span_corruption does not support data.doc_attention"):
        load_config(Path(__file__).resolve().parents[3] / "configs" / "debug" / "span_corruption.yaml",
                    ["data.doc_attention=true"])
