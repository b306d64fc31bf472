"""`plm estimate`: what pre-training a model on T tokens takes: FLOPs, device-hours, days, memory per device under
DDP / ZeRO-1/2/3 / FSDP with and without activation checkpointing, energy, cost, and the Chinchilla-optimal tokens.
Formulas and sources: docs/estimate.md.   Try it:  plm estimate qwen2-72b --tokens 7T --devices 1024
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from plmkit import flops
from plmkit.errors import ConfigError, PlmError


def _encoder(model_type: str, hidden: int, layers: int, heads: int, vocab: int, positions: int, type_vocab: int,
             published: float) -> dict[str, Any]:
    return {"model_type": model_type, "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "intermediate_size": 4 * hidden, "vocab_size": vocab, "max_position_embeddings": positions,
            "type_vocab_size": type_vocab, "seq_len": 512, "objective": "mlm", "published": published}


def _gpt2(hidden: int, layers: int, heads: int, published: float) -> dict[str, Any]:
    return {"model_type": "gpt2", "n_embd": hidden, "n_layer": layers, "n_head": heads, "vocab_size": 50257,
            "n_positions": 1024, "seq_len": 1024, "objective": "clm", "published": published}


def _decoder(model_type: str, hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, vocab: int,
             tied: bool, seq_len: int, published: float) -> dict[str, Any]:
    return {"model_type": model_type, "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv_heads, "intermediate_size": intermediate,
            "vocab_size": vocab, "tie_word_embeddings": tied, "seq_len": seq_len, "objective": "clm",
            "published": published}


# Each preset: the numbers of the model's config.json on the Hugging Face Hub (as config.json names them), its
# training sequence length (`seq_len`, from its paper), its objective and its published size (`published`).
PRESETS: dict[str, dict[str, Any]] = {
    # google-bert/bert-{base,large}-uncased config.json; Devlin et al. 2019, App. A.2: 90% of the steps at 128
    # tokens, the last 10% at 512 (512 here). Published: 110M, 340M.
    "bert-base": _encoder("bert", 768, 12, 12, 30522, 512, 2, 110e6),
    "bert-large": _encoder("bert", 1024, 24, 16, 30522, 512, 2, 340e6),
    # FacebookAI/roberta-{base,large} config.json; Liu et al. 2019, §3.1: sequences of at most 512 tokens.
    # Published: 125M, 355M.
    "roberta-base": _encoder("roberta", 768, 12, 12, 50265, 514, 1, 125e6),
    "roberta-large": _encoder("roberta", 1024, 24, 16, 50265, 514, 1, 355e6),
    # openai-community/gpt2{,-medium,-large,-xl} config.json; Radford et al. 2019, §2.3: a context of 1024
    # tokens. Published: 124M, 355M, 774M, 1.5B.
    "gpt2": _gpt2(768, 12, 12, 124e6),
    "gpt2-medium": _gpt2(1024, 24, 16, 355e6),
    "gpt2-large": _gpt2(1280, 36, 20, 774e6),
    "gpt2-xl": _gpt2(1600, 48, 25, 1.5e9),
    # meta-llama/Llama-2-{7b,70b}-hf config.json; Touvron et al. 2023 (Llama 2), §2.2: context 4096.
    # Published: 6.74B, 69.0B.
    "llama-2-7b": _decoder("llama", 4096, 32, 32, 32, 11008, 32000, False, 4096, 6.74e9),
    "llama-2-70b": _decoder("llama", 8192, 80, 64, 8, 28672, 32000, False, 4096, 69.0e9),
    # meta-llama/Meta-Llama-3-{8B,70B} and Llama-3.1-405B config.json; Dubey et al. 2024 (Llama 3), §3.4:
    # pre-training at 8K tokens before the long-context stage. Published: 8.03B, 70.6B, 405B.
    "llama-3-8b": _decoder("llama", 4096, 32, 32, 8, 14336, 128256, False, 8192, 8.03e9),
    "llama-3-70b": _decoder("llama", 8192, 80, 64, 8, 28672, 128256, False, 8192, 70.6e9),
    "llama-3.1-405b": _decoder("llama", 16384, 126, 128, 8, 53248, 128256, False, 8192, 405e9),
    # Qwen/Qwen2-{0.5B,1.5B,7B,72B} config.json; Yang et al. 2024 (Qwen2 technical report), §3.2: pre-trained at
    # 4,096 tokens, extended to 32,768 at the end. Published: 0.49B, 1.54B, 7.62B, 72.7B.
    "qwen2-0.5b": _decoder("qwen2", 896, 24, 14, 2, 4864, 151936, True, 4096, 0.49e9),
    "qwen2-1.5b": _decoder("qwen2", 1536, 28, 12, 2, 8960, 151936, True, 4096, 1.54e9),
    "qwen2-7b": _decoder("qwen2", 3584, 28, 28, 4, 18944, 152064, False, 4096, 7.62e9),
    "qwen2-72b": _decoder("qwen2", 8192, 80, 64, 8, 29568, 152064, False, 4096, 72.7e9),
}

MLM_MASK_PROB = 0.15
"""Share of tokens a masked-LM preset predicts (Devlin et al. 2019, §3.1; Liu et al. 2019): the head runs there."""


@dataclass(frozen=True)
class Hardware:
    device: str
    """Key into flops.PEAK_FLOPS."""
    name: str
    memory_gb: float
    tdp_w: float
    mfu: float | None
    """Default MFU where a large published run gives one (docs/estimate.md); None: pass --mfu or --measure."""


# Memory and TDP from the same datasheets as flops.PEAK_FLOPS. Default MFU: Llama 3 (Dubey et al. 2024, §3.3.2)
# reports 38-43% BF16 MFU on 8K-16K H100s -> 0.40; Korthikanti et al. 2022 report 42.1% MFU for a 530B model on
# 2240 A100s with full activation recomputation (54.2% with their selective recomputation) -> 0.42. H200 has the
# compute of H100 and gets H100's figure (an assumption).
HARDWARE: dict[str, Hardware] = {
    "h100": Hardware("h100-sxm", "NVIDIA H100 SXM 80GB", 80, 700, 0.40),
    "h100-pcie": Hardware("h100-pcie", "NVIDIA H100 PCIe 80GB", 80, 350, None),
    "h200": Hardware("h200", "NVIDIA H200 SXM 141GB", 141, 700, 0.40),
    "a100": Hardware("a100", "NVIDIA A100 SXM 80GB", 80, 400, 0.42),
    "a100-40gb": Hardware("a100", "NVIDIA A100 SXM 40GB", 40, 400, 0.42),
    "l4": Hardware("l4", "NVIDIA L4 24GB", 24, 72, None),
    "l40s": Hardware("l40s", "NVIDIA L40S 48GB", 48, 350, None),
    "a10": Hardware("a10", "NVIDIA A10 24GB", 24, 150, None),
    "rtx4090": Hardware("rtx4090", "NVIDIA GeForce RTX 4090 24GB", 24, 450, None),
    "rtx3090": Hardware("rtx3090", "NVIDIA GeForce RTX 3090 24GB", 24, 350, None),
    "v100": Hardware("v100-sxm", "NVIDIA V100 SXM2 32GB", 32, 300, None),
    "t4": Hardware("t4", "NVIDIA T4 16GB", 16, 70, None),
    "mi300x": Hardware("mi300x", "AMD Instinct MI300X 192GB", 192, 750, None),
}

STRATEGIES = ("ddp", "zero1", "zero2", "zero3", "fsdp")
USABLE_MEMORY = 0.9
"""A run fits when it needs at most this share of device memory; the rest is left to the CUDA context, allocator
fragmentation and communication buffers (an assumption, not a measurement)."""
DEFAULT_PUE = 1.1
"""Power usage effectiveness of the data centre: Google reports a fleet-wide PUE of 1.10 (Environmental Report
2023); the Uptime Institute's 2023 survey average is 1.58. Pass --pue for yours."""
CHINCHILLA_TOKENS_PER_PARAMETER = 20
"""Hoffmann et al. 2022 (Chinchilla), Table 3: compute-optimal training uses about 20 tokens per parameter."""


def parse_count(text: str | float) -> int:
    """7e12, 7T, 300B, 1.5M, 7_000 or 7,000 -> an integer count."""
    if isinstance(text, (int, float)):
        text = repr(text)
    match = re.fullmatch(r"\s*([0-9][0-9_,]*\.?[0-9]*(?:e[+-]?[0-9]+)?)\s*([kmbt]?)\s*", str(text).lower())
    if not match:
        raise ConfigError(f"token count {text!r}: write it like 7e12, 7T, 300B or 1.5M")
    number = float(match.group(1).replace("_", "").replace(",", "")) * {"": 1, "k": 1e3, "m": 1e6, "b": 1e9,
                                                                          "t": 1e12}[match.group(2)]
    if not 1 <= number < 1e30:
        raise ConfigError(f"token count {text!r}: give at least 1 token and fewer than 1e30")
    return round(number)


@dataclass(frozen=True)
class Stack:
    """One stack of transformer layers whose activations a training step keeps (ELECTRA's discriminator and
    generator, T5's encoder and decoder)."""

    shape: flops.ModelShape
    seq_len: float
    head_fraction: float
    """Share of its positions with vocabulary logits (0: its head is no vocabulary projection)."""
    cross_len: float = 0
    """Positions its cross-attention reads (T5's decoder: the encoder's); 0: no cross-attention."""


@dataclass(frozen=True)
class Built:
    """What is counted on the model itself (built on the meta device, so no memory) where it is more than one stack:
    ELECTRA (generator and discriminator sharing embeddings) and T5 (encoder and decoder)."""

    parameters: int
    embedding_parameters: int
    flops_per_token: float
    """What the training loop logs MFU against (flops.module_flops_per_token on the same modules)."""
    unit: int
    """Parameters of the largest unit ZeRO-3 / FSDP gathers at once: a layer or the word-embedding matrix."""
    stacks: tuple[Stack, ...]
    note: str
    """What was counted, in words (the table shows it)."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    shape: flops.ModelShape
    seq_len: int
    head_fraction: float
    source: str
    last_layer_fraction: float = 1.0
    """Share of the positions at which the last layer computes its outputs: mask_prob for a masked LM, whose
    objective.sparse_last_layer runs it only where a token is predicted."""
    built: Built | None = None
    """Set for ELECTRA and T5: counts from the built model, which `shape` (the discriminator's or the encoder's
    stack) alone does not give."""


def load_model_spec(model: str, seq_len: int | None = None, objective: Any = None) -> ModelSpec:
    """A preset name, a plmkit run config YAML (its model:, data.block_size and objective:), or a Hugging Face
    config.json or model folder (for ELECTRA and T5, counted with the `objective` section's settings, default its
    defaults)."""
    if model in PRESETS:
        preset = PRESETS[model]
        fraction = MLM_MASK_PROB if preset["objective"] == "mlm" else 1.0
        return ModelSpec(model, flops.model_shape(preset), seq_len or preset["seq_len"], fraction, "preset",
                         last_layer_fraction=fraction)
    path = Path(model).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return _spec_from_run_config(path, seq_len)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" and path.is_file():
        config = json.loads(path.read_text(encoding="utf-8"))
        if config.get("model_type") in TWO_STACKS:
            return _two_stack_spec(str(model), str(path), config, seq_len or config.get("max_position_embeddings")
                                   or config.get("n_positions"), objective,
                                   generator_config=path.parent / "generator" / "config.json")
        shape = flops.model_shape(config)
        fraction = MLM_MASK_PROB if shape.mlm_head else 1.0
        length = seq_len or config.get("max_position_embeddings") or config.get("n_positions")
        if not length:
            raise ConfigError(f"{path} gives no sequence length; pass --seq-len")
        return ModelSpec(str(model), shape, int(length), fraction, str(path), last_layer_fraction=fraction)
    raise ConfigError(f"unknown model {model!r}: give a preset ({', '.join(PRESETS)}), a run config YAML, or a "
                      "Hugging Face config.json or model folder")


class _VocabOnly:
    """Stands in for a tokenizer where only the vocabulary size is known (models.build_model_config needs len())."""

    pad_token_id = bos_token_id = eos_token_id = None

    def __init__(self, size: int):
        self.size = size

    def __len__(self) -> int:
        return self.size


def _spec_from_run_config(path: Path, seq_len: int | None) -> ModelSpec:
    from plmkit.config import load_config
    from plmkit.models import build_model_config

    cfg = load_config(path)
    fraction = flops.head_fraction(SimpleNamespace(model_kind="masked_lm" if cfg.objective.name == "mlm" else "",
                                                   cfg=cfg.objective))
    length = seq_len or cfg.data.block_size
    sparse_layer = cfg.objective.name == "mlm" and cfg.objective.sparse_head and cfg.objective.sparse_last_layer
    last = fraction if sparse_layer else 1.0
    if cfg.init.from_:
        spec = load_model_spec(cfg.init.from_, length, objective=cfg.objective)
        if spec.built is not None:  # ELECTRA, T5: counted with the run's objective settings already
            return spec
        return dataclasses.replace(spec, head_fraction=fraction, last_layer_fraction=last)
    vocab = cfg.model.vocab_size
    if vocab is None and cfg.tokenizer.pretrained:
        from plmkit.tokenization import load_tokenizer

        vocab = len(load_tokenizer(cfg.tokenizer.pretrained))
    if vocab is None:  # a trained tokenizer has at most this many tokens, plus the sentinels span corruption adds
        vocab = cfg.tokenizer.train.vocab_size + (cfg.objective.num_sentinels
                                                  if cfg.objective.name == "span_corruption" else 0)
    config = build_model_config(cfg.model, _VocabOnly(vocab))
    if config.model_type in TWO_STACKS:
        return _two_stack_spec(str(path), f"{path} (model:, data.block_size, objective:)", config.to_dict(), length,
                               objective=cfg.objective)
    shape = flops.model_shape(config)
    return ModelSpec(str(path), shape, length, fraction, f"{path} (model:, data.block_size, objective:)",
                     last_layer_fraction=last)


TWO_STACKS = ("electra", "t5")
"""Model types counted on the built model (Built): ELECTRA's generator and discriminator, T5's encoder and decoder."""


def _two_stack_spec(name: str, source: str, config: dict, seq_len: int | None, objective: Any = None,
                    generator_config: Path | None = None) -> ModelSpec:
    """A ModelSpec for an ELECTRA or T5 config (a config.json dict): parameters and FLOPs counted on the models the
    objective trains, built on the meta device. `objective` is the run's objective section (None: its defaults);
    `generator_config`, where that file exists, is the ELECTRA generator a plmkit run saved next to final/."""
    import torch
    import transformers

    if not seq_len:
        raise ConfigError(f"{name} gives no sequence length; pass --seq-len")
    seq_len = int(seq_len)
    config = {k: v for k, v in config.items() if k not in ("architectures", "transformers_version")}
    if config["model_type"] == "electra":
        from plmkit.models.electra import build_generator_config
        from plmkit.objectives.electra import ElectraObjectiveConfig

        settings = objective or ElectraObjectiveConfig()
        disc_config = transformers.ElectraConfig(**config)
        gen_config = (transformers.ElectraConfig.from_pretrained(str(generator_config.parent))
                      if generator_config is not None and generator_config.is_file()
                      else build_generator_config(disc_config, settings.generator_size))
        with torch.device("meta"):
            disc = transformers.ElectraForPreTraining(disc_config)
            gen = transformers.ElectraForMaskedLM(gen_config)
        shared = sum(p.numel() for p in gen.electra.embeddings.parameters())  # the discriminator's, once
        parameters = disc.num_parameters() + gen.num_parameters() - shared
        embedding = flops.embedding_parameters(disc)
        per_token = (flops.module_flops_per_token(disc, seq_len)  # as the training loop counts them
                     + flops.module_flops_per_token(gen, seq_len, head_fraction=settings.mask_prob))
        stacks = (Stack(_stack_shape(disc_config), seq_len, 0.0),
                  Stack(_stack_shape(gen_config), seq_len, settings.mask_prob))
        models, head, vocab_matrix = (disc, gen), 1.0, disc_config.vocab_size * disc_config.embedding_size
        shape = stacks[0].shape
        note = (f"discriminator (hidden {disc_config.hidden_size}) + generator (hidden {gen_config.hidden_size}, LM "
                f"head at {settings.mask_prob:.0%} of positions), embeddings shared")
    else:
        from plmkit.objectives.span_corruption import SpanCorruptionConfig, raw_length_for

        settings = objective or SpanCorruptionConfig()
        targets = raw_length_for(seq_len, settings.noise_density, settings.mean_noise_span_length)[1]
        head = targets / seq_len  # decoder positions per encoder position, as the objective declares
        t5_config = transformers.T5Config(**config)
        with torch.device("meta"):
            t5 = transformers.T5ForConditionalGeneration(t5_config)
        parameters, embedding = t5.num_parameters(), flops.embedding_parameters(t5)
        per_token = flops.module_flops_per_token(t5, seq_len, head_fraction=head)
        encoder = _stack_shape(t5_config, t5_config.num_layers)
        decoder = _stack_shape(t5_config, t5_config.num_decoder_layers or t5_config.num_layers)
        stacks = (Stack(encoder, seq_len, 0.0), Stack(decoder, targets, 1.0, cross_len=seq_len))
        models, vocab_matrix, shape = (t5,), t5_config.vocab_size * t5_config.d_model, encoder
        note = (f"encoder ({seq_len} input tokens) + decoder and LM head ({targets} target tokens) per example; "
                "tokens are encoder input tokens")
    layers = [sum(p.numel() for p in layer.parameters()) for model in models for module in model.modules()
              if isinstance(module, torch.nn.ModuleList) for layer in module]
    built = Built(parameters, embedding, per_token, max([vocab_matrix, *layers]), stacks, note)
    return ModelSpec(name, shape, seq_len, head, source, built=built)


def _stack_shape(config, num_layers: int | None = None) -> flops.ModelShape:
    """What activation_bytes needs of one ELECTRA or T5 stack (`num_layers`: T5's encoder or decoder depth)."""
    if config.model_type == "electra":
        heads = config.num_attention_heads
        return flops.ModelShape("electra", config.num_hidden_layers, config.hidden_size, heads, heads,
                                config.hidden_size // heads, config.intermediate_size, config.vocab_size,
                                dropout=config.hidden_dropout_prob > 0)
    # T5: RMS norms, no biases, ReLU or gated-GELU feed-forward
    return flops.ModelShape("t5", num_layers, config.d_model, config.num_heads, config.num_heads, config.d_kv,
                            config.d_ff, config.vocab_size, glu=config.is_gated_act, qkv_bias=False,
                            out_bias=False, mlp_bias=False, layer_norm=False, dropout=config.dropout_rate > 0)


def activation_bytes(shape: flops.ModelShape, seq_len: float, micro_batch: int, head_fraction: float = 1.0,
                     checkpointing: bool = False, fused_attention: bool = True, cross_len: float = 0) -> float:
    """Activation memory of one micro-batch, 16-bit activations (Korthikanti et al. 2022, §4.1, generalised to
    GQA, SwiGLU and models without dropout; for GPT-3-like layers it is their s·b·h·(34 + 5·a·s/h) per layer).

    Per layer, in units of s·b·h bytes: the attention block stores its input (2), Q (2), K and V (4·kv/h), the
    attention output (2) and a dropout mask (1); the MLP its input (2), 4·I/h for the two I-wide tensors of GELU
    (8·I/h for SwiGLU's four) and a dropout mask (1); the two norms their inputs (4). Materialised attention scores
    add 5·a·s²·b (2·a·s²·b without attention dropout); fused kernels (FlashAttention, SDPA) store none. With
    activation checkpointing each layer keeps only its input (2·s·b·h) and one layer is rebuilt at a time. The LM
    head keeps bf16 logits and their float32 copy for the loss: 6·b·s·V bytes at the positions it computes.
    A decoder layer with cross-attention over `cross_len` encoder positions (T5) adds a second attention block: its
    input, queries, output and dropout mask and a norm input at its own positions, keys and values at the encoder's."""
    s, b, h = seq_len, micro_batch, shape.hidden_size
    drop = 1 if shape.dropout else 0
    width, kv = shape.attention_width / h, shape.num_kv_heads * shape.head_dim / h
    attention = 2 + 2 * width + 4 * kv + 2 * width + drop
    mlp = 2 + (8 if shape.glu else 4) * shape.intermediate_size / h + drop
    layer = s * b * h * (attention + mlp + 4)
    if cross_len:
        layer += s * b * h * (2 + 4 * width + drop + 2) + 4 * kv * cross_len * b * h
    if not fused_attention:
        layer += (5 if shape.dropout else 2) * shape.num_heads * s * s * b
    layers = shape.num_layers * 2 * s * b * h + layer if checkpointing else shape.num_layers * layer
    return layers + 6 * b * s * head_fraction * shape.vocab_size


def state_bytes(shape: flops.ModelShape, devices: int, strategy: str) -> float:
    """Weights, gradients and AdamW state per device in mixed precision (Rajbhandari et al. 2020, ZeRO, §3.1):
    2 bytes of bf16 weights + 2 of bf16 gradients + 12 of float32 master weights and the two Adam moments per
    parameter, partitioned over the devices as each ZeRO stage does. ZeRO-3 / FSDP also hold, unsharded, the bf16
    weights of two units (the one computing and the one prefetched) and the gradients of one, a unit being a layer
    or a vocabulary matrix."""
    counts = flops.parameter_counts(shape)
    return _state_bytes(counts.total, max(counts.body / shape.num_layers, shape.vocab_size * shape.hidden_size),
                        devices, strategy)


def _state_bytes(p: float, unit: float, n: int, strategy: str) -> float:
    """state_bytes for `p` parameters whose largest ZeRO-3 / FSDP unit holds `unit` of them, over `n` devices."""
    weights, grads, optimizer = 2 * p, 2 * p, 12 * p
    if strategy == "ddp":
        return weights + grads + optimizer
    if strategy == "zero1":
        return weights + grads + optimizer / n
    if strategy == "zero2":
        return weights + (grads + optimizer) / n
    if strategy in ("zero3", "fsdp"):
        return (weights + grads + optimizer) / n + 3 * 2 * unit
    raise ConfigError(f"strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")


def estimate(model: str, *, tokens: str | float | None = None, hardware: str = "h100", devices: int = 8,
             mfu: float | None = None, mfu_source: str | None = None, seq_len: int | None = None,
             micro_batch: int = 1, price: float | None = None, pue: float = DEFAULT_PUE) -> dict:
    """FLOPs, time, memory, energy and cost of pre-training `model` on `tokens` (default: Chinchilla-optimal).

    Returns one flat-ish dict (what `plm estimate --json` prints): flops, device_hours, days,
    memory_per_device_gb[strategy][no_checkpointing|checkpointing], fits[...] and the inputs it used."""
    hardware = hardware.lower()  # H100 is h100
    if hardware not in HARDWARE:
        raise ConfigError(f"unknown hardware {hardware!r}; choose one of {', '.join(HARDWARE)}")
    for flag, value in (("--devices", devices), ("--micro-batch", micro_batch)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1; got {value}")
    if seq_len is not None and seq_len < 1:
        raise ConfigError(f"--seq-len must be >= 1; got {seq_len}")
    if price is not None and not 0 <= price < math.inf:
        raise ConfigError(f"--price must be >= 0 ($ per device-hour); got {price}")
    if not 1 <= pue < math.inf:
        raise ConfigError(f"--pue must be >= 1 (facility power over IT power); got {pue}")
    hw = HARDWARE[hardware]
    spec = load_model_spec(model, seq_len)
    if spec.built is None:
        counts = flops.parameter_counts(spec.shape)
        parameters, non_embedding = counts.total, counts.non_embedding
    else:
        parameters = spec.built.parameters
        non_embedding = parameters - spec.built.embedding_parameters
    chinchilla = CHINCHILLA_TOKENS_PER_PARAMETER * parameters
    n_tokens = parse_count(tokens) if tokens is not None else chinchilla
    if mfu is not None:
        mfu_source = mfu_source or "given"
    else:
        if hw.mfu is None:
            raise ConfigError(f"no published MFU for {hardware}: pass --mfu (e.g. 0.3) or --measure CONFIG")
        mfu, mfu_source = hw.mfu, f"the {hardware} default, docs/estimate.md"
    if not 0 < mfu <= 1:
        raise ConfigError(f"--mfu must be in (0, 1]; got {mfu}")
    dtype = "bf16" if (hw.device, "bf16") in flops.PEAK_FLOPS else "fp16"
    peak = flops.PEAK_FLOPS[hw.device, dtype]
    per_token = (spec.built.flops_per_token if spec.built is not None
                 else flops.flops_per_token(spec.shape, spec.seq_len, spec.head_fraction, spec.last_layer_fraction))
    total = per_token * n_tokens
    device_hours = total / (peak * mfu) / 3600
    memory, fits = {}, {}
    for strategy in STRATEGIES:
        states = (state_bytes(spec.shape, devices, strategy) if spec.built is None
                  else _state_bytes(parameters, spec.built.unit, devices, strategy))
        memory[strategy], fits[strategy] = {}, {}
        for label, ckpt in (("no_checkpointing", False), ("checkpointing", True)):
            stacks = spec.built.stacks if spec.built is not None else (Stack(spec.shape, spec.seq_len,
                                                                              spec.head_fraction),)
            need = states + sum(activation_bytes(stack.shape, stack.seq_len, micro_batch, stack.head_fraction, ckpt,
                                                 cross_len=stack.cross_len) for stack in stacks)
            memory[strategy][label] = round(need / 1e9, 2)
            fits[strategy][label] = need <= USABLE_MEMORY * hw.memory_gb * 1e9
    energy_mwh = device_hours * hw.tdp_w * pue / 1e6
    return {
        "model": spec.name, "model_source": spec.source, "arch": spec.shape.arch,
        "counted": spec.built.note if spec.built is not None else None,
        "parameters": parameters, "non_embedding_parameters": non_embedding,
        "seq_len": spec.seq_len, "head_fraction": spec.head_fraction,
        "last_layer_fraction": spec.last_layer_fraction, "flops_per_token": per_token,
        "tokens": n_tokens, "flops": total,
        "hardware": hardware, "device": hw.name, "devices": devices, "dtype": dtype, "peak_flops_per_device": peak,
        "mfu": mfu, "mfu_source": mfu_source,
        "device_hours": device_hours, "days": device_hours / devices / 24,
        "micro_batch": micro_batch, "device_memory_gb": hw.memory_gb,
        "memory_per_device_gb": memory, "fits": fits,
        "price_per_device_hour": price, "cost_usd": device_hours * price if price is not None else None,
        "tdp_w": hw.tdp_w, "pue": pue, "energy_mwh": energy_mwh,
        "chinchilla_tokens": chinchilla, "tokens_per_parameter": n_tokens / parameters,
    }


def measure_mfu(config: str | Path, steps: int = 20) -> tuple[float, str]:
    """Run `steps` steps of `plm pretrain` on `config` here, in a temporary folder, and return (the mean MFU of the
    logged windows after the first, which pays for warm-up; a line saying where it comes from)."""
    import torch

    from plmkit.api import pretrain
    from plmkit.config import load_config
    from plmkit.training.logging import read_metrics

    with tempfile.TemporaryDirectory(prefix="plm-measure-") as tmp:
        overrides = [f"run.output_dir={tmp}/run", f"train.max_steps={steps}", "train.epochs=null",
                     "eval.at_start=false", "train.eval_every=0", f"train.save_every={steps}"]
        pretrain(load_config(config, overrides), show_progress=False)
        rows = read_metrics(Path(tmp) / "run" / "metrics.jsonl")
    values = [r["mfu"] for r in rows if "mfu" in r]
    if not values:
        raise PlmError(f"--measure {config}: the run logged no MFU")
    mfu = statistics.fmean(values[1:] if len(values) > 2 else values)
    where = torch.cuda.get_device_name() if torch.cuda.is_available() else "this machine's CPU"
    return mfu, f"measured: {mfu:.3g} over {steps} steps of {config} on {where}"


def _si(value: float, unit: str = "") -> str:
    for factor, prefix in ((1e24, "Y"), (1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"),
                           (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".strip()


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def render(result: dict):
    """The estimate as rich tables (for people; --json prints the dict)."""
    from rich.console import Group
    from rich.table import Table

    r = result
    summary = Table(title=f"plm estimate: {r['model']} on {r['devices']} x {r['device']}", show_header=False)
    summary.add_column(style="bold")
    summary.add_column()
    cost = (f"${_num(r['cost_usd'])} at ${r['price_per_device_hour']}/device-hour" if r["cost_usd"] is not None
            else "pass --price $/device-hour")
    length = f"{r['seq_len']:,}" + (f" (LM head{' and last layer' if r['last_layer_fraction'] < 1 else ''} at "
                                    f"{r['head_fraction']:.0%} of positions)" if r["head_fraction"] < 1 else "")
    for key, value in [
        ("parameters", f"{_si(r['parameters'])} ({_si(r['non_embedding_parameters'])} non-embedding)"),
        ("sequence length", length) if r.get("counted") is None else ("counted", r["counted"]),
        ("FLOPs per token", f"{_si(r['flops_per_token'])} (6·N + 12·L·H·Q)"),
        ("tokens", (f"{_si(r['tokens'])} ({_num(r['tokens_per_parameter'])} per parameter; Chinchilla-optimal "
                    f"{_si(r['chinchilla_tokens'])})")),
        ("total FLOPs", f"{r['flops']:.3e}"),
        ("peak / MFU", (f"{r['peak_flops_per_device'] / 1e12:.1f} TFLOP/s {r['dtype']} per device; "
                        f"MFU {r['mfu']:.3g} ({r['mfu_source']})")),
        ("device-hours", _num(r["device_hours"])),
        ("wall-clock", f"{_num(r['days'])} days"),
        ("energy", f"{_num(r['energy_mwh'])} MWh ({r['tdp_w']:.0f} W TDP x PUE {r['pue']})"),
        ("cost", cost),
    ]:
        summary.add_row(key, value)
    memory = Table(title=f"memory per device, GB (micro-batch {r['micro_batch']}; ✓: fits in 90% of "
                         f"{r['device_memory_gb']:g} GB)")
    for column in ("strategy", "no checkpointing", "activation checkpointing"):
        memory.add_column(column, justify="right" if column != "strategy" else "left")
    for strategy, values in r["memory_per_device_gb"].items():
        cells = [f"{_num(values[k])} {'✓' if r['fits'][strategy][k] else '✗'}"
                 for k in ("no_checkpointing", "checkpointing")]
        memory.add_row(strategy + (" (= zero3)" if strategy == "fsdp" else ""), *cells)
    return Group(summary, memory)
