"""Model FLOPs per trained token, parameter counts and device peaks: what MFU (model FLOPs utilisation) is measured
against. FLOPs per token = 6·N + 12·L·H·Q (Kaplan et al. 2020, §2.1; PaLM, Chowdhery et al. 2022, App. B), the LM
head counted only at the positions it computes. Formulas and sources: docs/estimate.md.
Try it:  python -c "from plmkit.flops import measured_peak_flops as p; print(p('fp32'))"
"""

from __future__ import annotations

import functools
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from plmkit.errors import ConfigError


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP and memory formulas need to know about a transformer (read from a transformers config)."""

    arch: str
    """bert | roberta | gpt2 | llama | qwen2 | mistral (the transformers model_type)."""
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    """Key/value heads: fewer than num_heads with grouped-query attention (GQA)."""
    head_dim: int
    intermediate_size: int
    vocab_size: int
    positions: int = 0
    """Rows of a learned position table (0: rotary positions, no table)."""
    type_vocab_size: int = 0
    tie_word_embeddings: bool = True
    glu: bool = False
    """SwiGLU feed-forward: three matrices (gate, up, down) instead of two."""
    qkv_bias: bool = True
    out_bias: bool = True
    mlp_bias: bool = True
    layer_norm: bool = True
    """LayerNorm (weight and bias) rather than RMSNorm (weight only)."""
    mlm_head: bool = False
    """BERT/RoBERTa masked-LM head: a dense + LayerNorm transform before the decoder, and a decoder bias."""
    dropout: bool = False
    """Dropout on hidden states (its masks are stored for the backward pass)."""

    @property
    def attention_width(self) -> int:
        """num_heads x head_dim: the width of the queries, and of the attention matmuls."""
        return self.num_heads * self.head_dim


@dataclass(frozen=True)
class ParameterCounts:
    total: int
    """Unique parameters, tied matrices once: what `model.num_parameters()` reports."""
    embedding: int
    """Input lookup tables (tokens, positions, token types): a lookup costs no FLOPs."""
    body: int
    """Parameters of the layers (and norms) every token passes through."""
    head: int
    """Parameters of the LM head as computed: the output matrix V x H (even when tied to the input embedding), its
    bias and, for BERT/RoBERTa, the transform before it."""

    @property
    def non_embedding(self) -> int:
        return self.total - self.embedding


LLAMA_LIKE = ("llama", "mistral", "qwen2")


def model_shape(config: Any) -> ModelShape:
    """A ModelShape from a transformers config object or a config.json dict (bert, roberta, gpt2, llama, mistral,
    qwen2); counts are those of the pre-training model class (…ForMaskedLM / …ForCausalLM)."""
    def get(key: str, default: Any = None) -> Any:
        value = config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)
        return default if value is None else value

    arch = get("model_type")
    if arch in ("bert", "roberta"):
        hidden, heads = get("hidden_size"), get("num_attention_heads")
        return ModelShape(arch, get("num_hidden_layers"), hidden, heads, heads, hidden // heads,
                          get("intermediate_size"), get("vocab_size"), positions=get("max_position_embeddings"),
                          type_vocab_size=get("type_vocab_size", 2), tie_word_embeddings=get("tie_word_embeddings", True),
                          mlm_head=True, dropout=get("hidden_dropout_prob", 0.1) > 0)
    if arch == "gpt2":
        hidden, heads = get("n_embd"), get("n_head")
        return ModelShape(arch, get("n_layer"), hidden, heads, heads, hidden // heads, get("n_inner", 4 * hidden),
                          get("vocab_size"), positions=get("n_positions"),
                          tie_word_embeddings=get("tie_word_embeddings", True), dropout=get("resid_pdrop", 0.1) > 0)
    if arch in LLAMA_LIKE:
        hidden, heads = get("hidden_size"), get("num_attention_heads")
        attention_bias = arch == "qwen2" or get("attention_bias", False)  # Qwen2: biases on q, k, v (not o)
        return ModelShape(arch, get("num_hidden_layers"), hidden, heads, get("num_key_value_heads", heads),
                          get("head_dim", hidden // heads), get("intermediate_size"), get("vocab_size"),
                          tie_word_embeddings=get("tie_word_embeddings", False), glu=True, qkv_bias=attention_bias,
                          out_bias=attention_bias and arch != "qwen2", mlp_bias=get("mlp_bias", False),
                          layer_norm=False)
    raise ConfigError(f"model_type {arch!r}: plmkit counts parameters and FLOPs for bert, roberta, gpt2, llama, "
                      f"mistral and qwen2 configs")


def parameter_counts(shape: ModelShape) -> ParameterCounts:
    """Parameters of the pre-training model, counted from its shape (equal to `num_parameters()` of the model
    transformers builds from the same config)."""
    h, v = shape.hidden_size, shape.vocab_size
    norm = 2 * h if shape.layer_norm else h
    layer = layer_parameters(shape)
    embedding = (v + shape.positions + shape.type_vocab_size) * h
    # BERT/RoBERTa normalise the embeddings; the others end with a final norm.
    body = shape.num_layers * layer + norm
    transform = (h * h + h + norm + v) if shape.mlm_head else 0  # dense, LayerNorm, decoder bias
    head_unique = transform + (0 if shape.tie_word_embeddings else v * h)
    return ParameterCounts(total=embedding + body + head_unique, embedding=embedding, body=body,
                           head=transform + v * h)


def layer_parameters(shape: ModelShape, keys_and_values: bool = True) -> int:
    """Parameters of one transformer layer (attention, feed-forward, two norms); without its key and value
    projections when `keys_and_values` is false."""
    h, i, a, kv = shape.hidden_size, shape.intermediate_size, shape.attention_width, shape.num_kv_heads * shape.head_dim
    norm = 2 * h if shape.layer_norm else h
    attention = h * a + 2 * h * kv + a * h + (a + 2 * kv) * shape.qkv_bias + h * shape.out_bias
    mlp = (3 if shape.glu else 2) * h * i + ((2 if shape.glu else 1) * i + h) * shape.mlp_bias
    projections = 0 if keys_and_values else 2 * kv * (h + shape.qkv_bias)
    return attention + mlp + 2 * norm - projections


def flops_per_token(shape: ModelShape, seq_len: int, head_fraction: float = 1.0,
                    last_layer_fraction: float = 1.0) -> float:
    """Training FLOPs per token (forward + backward = 3 x forward): 6 per parameter a token passes through, the LM
    head at `head_fraction` of the positions, plus 12·L·H·Q for attention (QK^T and AV over all Q positions, the
    PaLM / nanoGPT convention: causal masking is not discounted). With `last_layer_fraction` < 1 the last layer
    computes its outputs at that share of the positions only (plmkit's masked LM, objective.sparse_last_layer): its
    keys and values still run at every position, the rest of it and its attention products at that share."""
    counts = parameter_counts(shape)
    full = (6 * (counts.body + head_fraction * counts.head)
            + 12 * shape.num_layers * shape.attention_width * seq_len)
    query_side = 6 * layer_parameters(shape, keys_and_values=False) + 12 * shape.attention_width * seq_len
    return full - (1.0 - last_layer_fraction) * query_side


def parameter_flops(p: nn.Parameter) -> int:
    """Training FLOPs per token of one weight a token passes through: 2 forward, 2 for its input's gradient, 2 for
    its own gradient when it is trained. DeepSpeed ZeRO-3 partitions keep the full size in ds_numel."""
    return (4 + 2 * p.requires_grad) * getattr(p, "ds_numel", p.numel())


def embedding_tables(model: nn.Module) -> dict[int, nn.Parameter]:
    """The lookup tables' weights (nn.Embedding: tokens, positions, token types, relative position buckets) by id: a
    table shared by several modules (T5's encoder and decoder) once. Lookups cost no FLOPs; `plm estimate` counts
    their parameters apart."""
    return {id(m.weight): m.weight for m in model.modules() if isinstance(m, nn.Embedding)}


def embedding_parameters(model: nn.Module) -> int:
    """Parameters of the lookup tables (embedding_tables), each table once."""
    return sum(w.numel() for w in embedding_tables(model).values())


def module_flops_per_token(model: nn.Module, seq_len: float, head_fraction: float = 1.0) -> float:
    """Training FLOPs per token of a live transformers model (any head, LoRA adapters included).

    Per parameter a token passes through: 2 FLOPs forward, 2 for the gradient of its input and 2 more for its own
    gradient when it is trained (6 when all are; about 4 for frozen weights under LoRA). Embedding lookups cost
    nothing; a tied output matrix costs as an untied one. The parameters outside `model.base_model` (the LM head)
    run at `head_fraction` of the positions. Plus 12·L·H·Q for attention.

    An encoder-decoder (T5) counts per encoder token, `seq_len` being the encoder's length: the decoder and the LM
    head run at `head_fraction` (target length / input length) of the positions, and each decoder position attends
    to head_fraction·seq_len decoder and seq_len encoder positions."""
    base = getattr(model, "base_model", model)
    embedding = set(embedding_tables(model))
    in_base = {id(p) for p in base.parameters()}

    body = sum(parameter_flops(p) for p in model.parameters() if id(p) not in embedding and id(p) in in_base)
    head = sum(parameter_flops(p) for p in model.parameters() if id(p) not in embedding and id(p) not in in_base)
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None and id(output.weight) in embedding:  # tied: the matmul runs all the same
        head += parameter_flops(output.weight)
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = config.num_attention_heads
    width = heads * (getattr(config, "head_dim", None) or config.hidden_size // heads)
    decoder = getattr(model, "decoder", None) if getattr(config, "is_encoder_decoder", False) else None
    if isinstance(decoder, nn.Module):  # T5's base_model is the whole model: split it into encoder, decoder, head
        in_decoder = {id(p) for p in decoder.parameters()}
        in_head = {id(p) for p in output.parameters()} if output is not None else set()
        enc = sum(parameter_flops(p) for p in model.parameters() if id(p) not in embedding | in_decoder | in_head)
        dec = sum(parameter_flops(p) for p in model.parameters() if id(p) in in_decoder and id(p) not in embedding)
        out = sum(parameter_flops(p) for p in output.parameters()) if output is not None else 0
        layers = getattr(config, "num_decoder_layers", None) or config.num_hidden_layers
        attention = 12 * width * (config.num_hidden_layers * seq_len
                                  + layers * head_fraction * (head_fraction * seq_len + seq_len))
        return enc + head_fraction * (dec + out) + attention
    return body + head_fraction * head + 12 * config.num_hidden_layers * width * seq_len


def head_fraction(objective: Any) -> float:
    """Share of the positions at which an objective's training module runs the LM head: what the objective declares
    as `head_fraction`, else `mask_prob` for a masked-LM objective (SparseMaskedLM computes the head only at the
    selected tokens; special tokens are never selected, so the true share is slightly lower), else 1."""
    declared = getattr(objective, "head_fraction", None)
    if declared is not None:
        return float(declared)
    if getattr(objective, "model_kind", None) == "masked_lm":
        return float(getattr(getattr(objective, "cfg", None), "mask_prob", 1.0))
    return 1.0


def mean_length(dataset, limit: int = 1000) -> float:
    """Mean `input_ids` length over up to `limit` evenly spaced examples: the block size for packed blocks; for
    fine-tuning, the mean unpadded length (padding is wasted work, not model FLOPs)."""
    n = len(dataset)
    if n == 0:
        return 0.0
    picks = range(0, n, max(1, n // limit))
    return sum(len(dataset[i]["input_ids"]) for i in picks) / len(picks)


def sequence_length(dataset, objective: Any = None) -> float:
    """The mean length of what the model reads per example: mean_length(dataset), through the objective's
    `input_length` where it declares one (span corruption: the encoder input, shorter than the packed block it
    corrupts), so that FLOPs are per input token, the tokens the loop counts."""
    length = mean_length(dataset)
    convert = getattr(objective, "input_length", None)
    return float(convert(length)) if callable(convert) and length else length


# Dense peak FLOP/s per device and dtype (no 2:4 sparsity: datasheets headline the sparse figure, twice these).
# tf32 is what "fp32" matmuls run at on NVIDIA GPUs when torch allows TF32; fp32 is the non-tensor-core rate.
PEAK_FLOPS: dict[tuple[str, str], float] = {
    # NVIDIA H100 Tensor Core GPU datasheet and H100 architecture whitepaper, SXM5: BF16/FP16 989.4, TF32 494.7,
    # FP32 66.9 TFLOPS.
    ("h100-sxm", "bf16"): 989.4e12, ("h100-sxm", "fp16"): 989.4e12, ("h100-sxm", "tf32"): 494.7e12,
    ("h100-sxm", "fp32"): 66.9e12,
    # Same sources, H100 PCIe: BF16/FP16 756.5, TF32 378, FP32 51.2 TFLOPS.
    ("h100-pcie", "bf16"): 756.5e12, ("h100-pcie", "fp16"): 756.5e12, ("h100-pcie", "tf32"): 378e12,
    ("h100-pcie", "fp32"): 51.2e12,
    # NVIDIA H200 datasheet (SXM): the compute of H100 SXM (BF16 1,979 TFLOPS with sparsity), more memory.
    ("h200", "bf16"): 989.4e12, ("h200", "fp16"): 989.4e12, ("h200", "tf32"): 494.7e12, ("h200", "fp32"): 66.9e12,
    # NVIDIA A100 datasheet (SXM and PCIe alike): BF16/FP16 312, TF32 156, FP32 19.5 TFLOPS.
    ("a100", "bf16"): 312e12, ("a100", "fp16"): 312e12, ("a100", "tf32"): 156e12, ("a100", "fp32"): 19.5e12,
    # NVIDIA L4 datasheet: BF16/FP16 242 and TF32 120 TFLOPS with sparsity; FP32 30.3 TFLOPS.
    ("l4", "bf16"): 121e12, ("l4", "fp16"): 121e12, ("l4", "tf32"): 60e12, ("l4", "fp32"): 30.3e12,
    # NVIDIA L40S datasheet: BF16/FP16 362.05, TF32 183, FP32 91.6 TFLOPS.
    ("l40s", "bf16"): 362.05e12, ("l40s", "fp16"): 362.05e12, ("l40s", "tf32"): 183e12, ("l40s", "fp32"): 91.6e12,
    # NVIDIA A10 datasheet: BF16/FP16 125, TF32 62.5, FP32 31.2 TFLOPS. (AWS's A10G differs and NVIDIA publishes
    # no datasheet for it: it falls back to the measured probe.)
    ("a10", "bf16"): 125e12, ("a10", "fp16"): 125e12, ("a10", "tf32"): 62.5e12, ("a10", "fp32"): 31.2e12,
    # NVIDIA Ada Lovelace (AD102) architecture whitepaper, GeForce RTX 4090: FP16/BF16 tensor with FP32 accumulate
    # (what PyTorch uses) 165.2, TF32 82.6, FP32 82.6 TFLOPS.
    ("rtx4090", "bf16"): 165.2e12, ("rtx4090", "fp16"): 165.2e12, ("rtx4090", "tf32"): 82.6e12,
    ("rtx4090", "fp32"): 82.6e12,
    # NVIDIA Ampere GA102 whitepaper, GeForce RTX 3090: FP16/BF16 with FP32 accumulate 71, TF32 35.6, FP32 35.6.
    ("rtx3090", "bf16"): 71e12, ("rtx3090", "fp16"): 71e12, ("rtx3090", "tf32"): 35.6e12, ("rtx3090", "fp32"): 35.6e12,
    # NVIDIA V100 datasheet: tensor (FP16) 125 SXM2 / 112 PCIe, FP32 15.7 / 14 TFLOPS; no BF16 tensor cores.
    ("v100-sxm", "fp16"): 125e12, ("v100-sxm", "fp32"): 15.7e12,
    ("v100-pcie", "fp16"): 112e12, ("v100-pcie", "fp32"): 14e12,
    # NVIDIA T4 datasheet: FP16 tensor 65, FP32 8.1 TFLOPS.
    ("t4", "fp16"): 65e12, ("t4", "fp32"): 8.1e12,
    # AMD Instinct MI300X datasheet: BF16/FP16 1307.4, TF32 653.7, FP32 (matrix) 163.4 TFLOPS.
    ("mi300x", "bf16"): 1307.4e12, ("mi300x", "fp16"): 1307.4e12, ("mi300x", "tf32"): 653.7e12,
    ("mi300x", "fp32"): 163.4e12,
}

DEVICE_NAMES: list[tuple[str, str | None]] = [
    # (regular expression on the lower-cased torch.cuda.get_device_name(), PEAK_FLOPS device); None: a card with
    # another peak that is not in the table (measured instead). The first match wins.
    (r"h100.*nvl|h200.*nvl", None),
    (r"gh200|h200", "h200"),
    (r"h100.*pcie", "h100-pcie"),
    (r"h100", "h100-sxm"),  # "NVIDIA H100 80GB HBM3" is the SXM part
    (r"a100", "a100"),
    (r"l40s", "l40s"),
    (r"\bl4\b", "l4"),
    (r"a10g", None),
    (r"\ba10\b", "a10"),
    (r"4090", "rtx4090"),
    (r"3090", "rtx3090"),
    (r"v100.*pcie", "v100-pcie"),
    (r"v100", "v100-sxm"),
    (r"\bt4\b", "t4"),
    (r"mi300x", "mi300x"),
]


def device_key(name: str) -> str | None:
    """The PEAK_FLOPS device for a device name such as "NVIDIA H100 80GB HBM3" (None when not in the table)."""
    lowered = name.lower()
    for pattern, key in DEVICE_NAMES:
        if re.search(pattern, lowered):
            return key
    return None


def matmul_dtype(precision: str, device: torch.device | str = "cpu") -> str:
    """The dtype matmuls run in for train.precision: fp32 becomes tf32 on a GPU where torch allows TF32."""
    if precision == "fp32" and torch.device(device).type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return precision


def peak_flops(device: torch.device | str, precision: str) -> tuple[float, str]:
    """(peak FLOP/s of one device for train.precision, where the figure comes from): the datasheet table for a
    known GPU, else a short matmul probe on the device itself (CPUs, and GPUs not in the table)."""
    device = torch.device(device)
    dtype = matmul_dtype(precision, device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        key = device_key(name)
        if (key, dtype) in PEAK_FLOPS:
            return PEAK_FLOPS[key, dtype], f"{name}, {dtype} datasheet peak"
        return measured_peak_flops(dtype, str(device)), f"{name}, {dtype} measured by a matmul probe"
    return measured_peak_flops(dtype, str(device)), f"{device.type}, {dtype} measured by a matmul probe"


TORCH_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def measured_peak_flops(dtype: str = "fp32", device: str = "cpu") -> float:
    """Achieved FLOP/s of a square matmul in `dtype` on `device` (best of three ~0.1 s rounds); cached per process
    for the current number of torch threads, so a run pays for it once (well under a second)."""
    return _probe(dtype, device, torch.get_num_threads())


@functools.cache
def _probe(dtype: str, device: str, threads: int) -> float:
    n = 512 if device == "cpu" else 4096
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(device=device, dtype=TORCH_DTYPES[dtype]) for _ in range(2))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    torch.mm(a, b)  # warm-up: first-call allocations and kernel selection
    sync()
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while True:
            torch.mm(a, b)
            count += 1
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= 0.1:
                break
        best = max(best, 2 * n**3 * count / elapsed)
    return best


def utilisation(tokens_per_s: float, flops_per_token: float, peak: float) -> dict[str, float]:
    """The metrics row's `flops_per_s` (model FLOPs achieved, all devices) and `mfu` (that over the summed peak)."""
    achieved = tokens_per_s * flops_per_token
    return {"flops_per_s": float(f"{achieved:.4g}"), "mfu": float(f"{achieved / peak:.4g}")}


def mean_mfu(values: list[float]) -> float:
    return float(f"{math.fsum(values) / len(values):.4g}") if values else math.nan
