"""SDPA attention under torch.compile as plmkit runs it on CUDA (train.compiled_sdpa): no attention mask where a
batch has no padding, and (mode `operator`, not the default) attention with dropout and no mask as one operation
that torch.compile calls but does not trace into.

Two H200 profiles of BERT-base (dropout 0.1, benchmarks/README.md) showed SDPA running its unfused formula
(float32 batched products, a softmax and a dropout kernel: about 40% of the step's kernel time, where a fused kernel
would take a few percent), first compiled, then eagerly inside the operator below. The cause both times was the mask:
transformers 5.17, the GPU machine's, builds the attention mask while torch.compile traces even where there is no
padding (an all-true (B, 1, T, T) mask for an encoder, a causal one for a decoder), and SDPA with a mask and dropout
takes no fused kernel there; a causal mask also makes a fused kernel compute every block that `is_causal` would
skip. `mask_forward` returns no mask in these cases.

Two attention implementations share that mask function:
- `plmkit_sdpa` (mode `operator`): attention with dropout and no mask through the operator
  (`torch.library.custom_op`), which keeps the kernel choice the eager dispatcher's: a fused kernel for bf16
  attention with dropout and no mask (cuDNN's in the H200 profiles, torch 2.11). Its backward operator recomputes
  the forward pass from the saved inputs with the random state the forward pass started from (the same dropout
  mask: torch.utils.checkpoint does the same), then differentiates it: one more attention forward pass per layer, about a third of attention's share of the step.
- `plmkit_sdpa_graph` (mode `graph`): transformers' own SDPA function, traced into the compiled graph. torch.compile
  asks SDPA's dispatcher for the kernel while it traces, with the same inputs, so without a mask it can take the
  fused kernel (dropout included) and save the operator's recomputation. It did: on an H200 (2026-11-28,
  benchmarks/README.md) compiled BERT-base ran cuDNN's fused attention with dropout, at 30.6% MFU against the
  operator's 20.6% (micro-batch 32 x 512), and GPT-2 124M (no dropout) ran as fast with either. `graph` is the
  default; `operator` stays for a torch whose tracing picks a slower kernel than its eager dispatcher.

`register()` adds both to transformers. `plmkit_sdpa`'s attention function calls transformers' own SDPA function
where there is no dropout (evaluation, GPT-2), where there is a mask (padding, packed documents: with a mask and
dropout the eager dispatcher took the unfused formula on the H200, slower eager than compiled), and for calls the
operator does not cover. The names live only in the process: exported configs do not record them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

NAME = "plmkit_sdpa"
"""The transformers attention implementation of mode `operator` (its mask function and attention function)."""
GRAPH_NAME = "plmkit_sdpa_graph"
"""The transformers attention implementation of mode `graph` (the mask function, and transformers' SDPA)."""
MODES = ("operator", "graph", "off")
"""train.compiled_sdpa's choices."""

STATE_BYTES = {"cpu": torch.default_generator.get_state().numel(), "cuda": 16}
"""Bytes of a default generator's state: the CPU's Mersenne Twister; CUDA's Philox seed and offset."""


def generator_state_fits(device: torch.device) -> bool:
    """Whether `device`'s default generator has the state size the fake kernel promises (checked before a run
    switches to this implementation, not in its middle)."""
    return device.type in STATE_BYTES and _generator(device).get_state().numel() == STATE_BYTES[device.type]


def _generator(device: torch.device) -> torch.Generator:
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return torch.default_generator


def _like(t: Tensor, ref: Tensor) -> Tensor:
    """`t` in `ref`'s memory layout (what the fake kernels promise: torch.empty_like keeps a layout), copied only
    where the kernel wrote another."""
    return t if t.stride() == ref.stride() else torch.empty_like(ref).copy_(t)


def _attend(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None, dropout_p: float, is_causal: bool,
            scale: float) -> Tensor:
    # In the inputs' dtype: autocast, when on around the compiled call, must not change what the fake kernel said
    with torch.autocast(query.device.type, enabled=False):
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                                              is_causal=is_causal, scale=scale)


@torch.library.custom_op("plmkit::sdpa_dropout", mutates_args=())
def sdpa_dropout(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None, dropout_p: float,
                 is_causal: bool, scale: float) -> tuple[Tensor, Tensor]:
    """SDPA's output (B, heads, T, d; in query's memory layout) and the random state its dropout started from
    (uint8, on the CPU)."""
    state = _generator(query.device).get_state()
    if state.numel() != STATE_BYTES[query.device.type]:
        raise RuntimeError(f"plmkit::sdpa_dropout: a {query.device.type} generator state of {state.numel()} bytes, "
                           f"not {STATE_BYTES[query.device.type]}; set train.compiled_sdpa=graph")
    return _like(_attend(query, key, value, attn_mask, dropout_p, is_causal, scale), query), state


@sdpa_dropout.register_fake
def _(query, key, value, attn_mask, dropout_p, is_causal, scale):
    return torch.empty_like(query), torch.empty(STATE_BYTES[query.device.type], dtype=torch.uint8, device="cpu")


@torch.library.custom_op("plmkit::sdpa_dropout_backward", mutates_args=())
def sdpa_dropout_backward(grad: Tensor, query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None,
                          state: Tensor, dropout_p: float, is_causal: bool,
                          scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """The gradients of query, key and value: the forward pass again from `state` (the same dropout mask), then
    its backward pass. The generator is left as it was found."""
    generator = _generator(query.device)
    now = generator.get_state()
    generator.set_state(state)
    try:
        # torch.func's own autograd level: inside a custom operator, torch.autograd records nothing
        _, pullback = torch.func.vjp(lambda q, k, v: _attend(q, k, v, attn_mask, dropout_p, is_causal, scale),
                                     query, key, value)
        dq, dk, dv = pullback(grad)
    finally:
        generator.set_state(now)
    return _like(dq, query), _like(dk, key), _like(dv, value)


@sdpa_dropout_backward.register_fake
def _(grad, query, key, value, attn_mask, state, dropout_p, is_causal, scale):
    return torch.empty_like(query), torch.empty_like(key), torch.empty_like(value)


def _setup_context(ctx, inputs, output) -> None:
    query, key, value, attn_mask, ctx.dropout_p, ctx.is_causal, ctx.scale = inputs
    ctx.save_for_backward(query, key, value, attn_mask, output[1])


def _backward(ctx, grad, _state_grad):
    query, key, value, attn_mask, state = ctx.saved_tensors
    dq, dk, dv = torch.ops.plmkit.sdpa_dropout_backward(grad, query, key, value, attn_mask, state, ctx.dropout_p,
                                                        ctx.is_causal, ctx.scale)
    return dq, dk, dv, None, None, None, None


sdpa_dropout.register_autograd(_backward, setup_context=_setup_context)


def attention_forward(module: torch.nn.Module, query: Tensor, key: Tensor, value: Tensor,
                      attention_mask: Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      is_causal: bool | None = None, **kwargs) -> tuple[Tensor, None]:
    """A transformers attention function (the `plmkit_sdpa` implementation): attention with dropout and no mask
    through `plmkit::sdpa_dropout`; transformers' SDPA function elsewhere: without dropout, with a mask (padding,
    packed documents: with a mask and dropout the eager dispatcher took the unfused formula on an H200, which
    compiled is at least fused), and for what the operator does not cover (grouped key/value heads, position
    biases, soft-capping, attention weights, devices other than CPU and CUDA)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    plain = (dropout == 0 or attention_mask is not None or query.device.type not in STATE_BYTES
             or getattr(module, "num_key_value_groups", 1) > 1
             or value.shape[-1] != query.shape[-1]
             or any(kwargs.get(k) is not None for k in ("position_bias", "softcap", "head_mask"))
             or kwargs.get("output_attentions", False))
    if plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    is_causal = bool(query.shape[2] > 1 and is_causal)  # as transformers' SDPA decides where there is no mask
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out, _ = torch.ops.plmkit.sdpa_dropout(query, key, value, None, float(dropout), is_causal, float(scale))
    return out.transpose(1, 2).contiguous(), None  # (B, T, heads, d), as transformers' attention functions return


def mask_forward(*args, attention_mask: Tensor | None = None, allow_is_causal_skip: bool = True,
                 allow_is_bidirectional_skip: bool = False, local_size: int | None = None, **kwargs) -> Tensor | None:
    """transformers' SDPA mask (`sdpa_mask`), except that without a padding mask there is no mask under
    torch.compile either: none for a bidirectional mask, and none for a causal one whose queries and keys are the
    same positions (SDPA's `is_causal` then does it). transformers 5.17 builds them while tracing, where its test
    for skipping them cannot run: an all-true or causal (B, 1, T, T) mask, with which SDPA runs the unfused formula
    (an H200 profile of BERT-base showed it) or a masked kernel that computes every block of a causal product.
    transformers 5.24 skips the bidirectional one as this does. The mask functions that need more than these
    patterns (packed documents, sliding windows) come with the skips off or a local size, and get transformers'."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None and local_size is None:
        if allow_is_bidirectional_skip:
            return None
        q_length, kv_length = kwargs.get("q_length"), kwargs.get("kv_length")
        if (allow_is_causal_skip and q_length is not None and q_length == kv_length
                and not kwargs.get("q_offset", 0) and not kwargs.get("kv_offset", 0)):
            return None
    return sdpa_mask(*args, attention_mask=attention_mask, allow_is_causal_skip=allow_is_causal_skip,
                     allow_is_bidirectional_skip=allow_is_bidirectional_skip, local_size=local_size, **kwargs)


def register(mode: str = "graph") -> str:
    """Make `plmkit_sdpa` and `plmkit_sdpa_graph` attention implementations transformers models can be switched to;
    returns the name of `mode`'s (operator or graph)."""
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface

    if mode not in ("operator", "graph"):
        raise ValueError(f"compiled_sdpa.register: mode operator or graph, not {mode!r}")
    AttentionInterface.register(NAME, attention_forward)
    AttentionInterface.register(GRAPH_NAME, sdpa_attention_forward)
    AttentionMaskInterface.register(NAME, mask_forward)
    AttentionMaskInterface.register(GRAPH_NAME, mask_forward)
    return NAME if mode == "operator" else GRAPH_NAME
