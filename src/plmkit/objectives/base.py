"""What every objective provides (a Protocol, for typing only), the loss it returns, and the objectives registry.

An objective turns packed blocks into a batch (`collate`) and a batch into a summed loss (`loss`).
The loop divides by the number of targets across all micro-batches and processes, so gradients don't depend on
how a global batch is split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor, nn

from plmkit.compiled import kernel_off, run_compiled
from plmkit.registry import Registry

objectives = Registry("objective")

EVAL_INDEX_OFFSET = 1 << 48
"""Added to a validation block's index when seeding its masks, so eval masks never repeat training masks."""


@dataclass
class LossOutput:
    loss_sum: Tensor
    """Sum of the per-target losses in the micro-batch (a scalar that requires grad in training)."""
    num_targets: Tensor
    """Number of targets that loss_sum adds up (an integer scalar)."""
    metrics: dict[str, Tensor] = field(default_factory=dict)
    outputs: dict[str, list] | None = None
    """Per-example predictions and references (tasks), collected during evaluation for the task's metrics."""


class Objective(Protocol):
    model_kind: str
    """Which model class the objective trains: masked_lm | causal_lm | electra | seq2seq_lm."""
    needs: tuple[str, ...]
    """Tokenizer roles the objective cannot work without, e.g. ("mask", "sep")."""

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the loop trains: the transformers model itself, or a thin module around it that keeps its
        parameters (named `hf_model.*`) and computes the objective's loss in its forward."""
        ...

    def collate(self, examples: list[dict]) -> dict[str, Tensor]: ...

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> LossOutput:
        """Summed loss of a batch; `module` is what `wrap` returned (possibly wrapped again by DDP/FSDP)."""
        ...

    # Optional hooks, looked up with hasattr by api.pretrain:
    #   raw_block_size(block_size) -> int: how many packed tokens one example reads when the objective reshapes them
    #       (T5's span corruption reads more than the encoder input it produces).
    #   save_extra(weights, folder, tokenizer): save what the objective trains beyond the exported model (the module
    #       from `wrap` keeps that model under hf_model.*; `weights` is the wrapped module's full state dict) into
    #       final/ before it is moved into place (ELECTRA's generator/).
    #   load_extra(init_from): read back what save_extra wrote, when init.from continues such a run.
    # looked up by the training loop:
    #   perplexity = False: exp(eval loss) is no perplexity (ELECTRA's weighted sum), so no eval_ppl is logged.
    #   extra_flops_per_token(seq_len) -> float, on the module `wrap` returns: training FLOPs per token of what the
    #       module runs beyond the exported model (ELECTRA's generator), added to the model's count for MFU.


def example_generator(seed: int, index: int) -> torch.Generator:
    """A torch.Generator keyed by (run seed, example index): the same example always gets the same randomness,
    however the data is batched, split across processes or resumed."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


def block_attention_mask(segment_ids: Tensor, causal: bool) -> Tensor:
    """Boolean (B, 1, T, T) mask that lets a token attend only to tokens of its own document (and, when causal,
    only to earlier ones). transformers' SDPA attention takes it as the attention_mask as it is."""
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # (B, T, T)
    if causal:
        T = segment_ids.shape[1]
        same &= torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()
    return same[:, None]  # (B, 1, T, T)


def summed_cross_entropy(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy of (..., V) logits summed over the positions whose label is not -100, in float32 (with
    `fused_cross_entropy`, so no float32 copy of the logits is made on a CPU), and the number of those positions."""
    labels = labels.reshape(-1)
    return fused_cross_entropy(logits.reshape(-1, logits.shape[-1]), labels), (labels != -100).sum()


def fused_cross_entropy(logits: Tensor, targets: Tensor, chunk_rows: int = 64) -> Tensor:
    """Summed cross-entropy of (N, V) logits over the rows whose target is not -100, computed in float32 a chunk of
    rows at a time.

    With gradients on, the gradient (softmax - one-hot, in the logits' dtype; zero on ignored rows) is written during
    the forward pass, so neither a float32 copy of the logits nor the log-probabilities are kept for the backward
    pass, and no (N, V) float32 tensor is allocated. For the 30,522-token vocabulary of benchmarks/mlm_throughput.py
    (bf16, one CPU thread) the LM decoder and its loss took about 40% less time, forward and backward, than with
    `cross_entropy(logits.float())` (docs/pretraining.md, "Speed"). With gradients on, the loss and gradient come
    from one inductor-compiled kernel instead where it compiles (`_loss_and_gradient`, train.compile_loss; faster
    again: causal LM +12% tokens/s); without gradients (evaluation) the chunks compute the loss alone.

    The chunks are a CPU path. Elsewhere, and under torch.compile, this is `cross_entropy(logits.float())`: on a GPU
    the float32 copy is cheap and 64-row chunks are small kernels each; compiled, inductor fuses the upcast into the
    loss, and the loop over chunks would make every new count of rows a new graph (a BERT-base run on a GPU
    recompiled until dynamo's limit, benchmarks/README.md)."""
    if torch.compiler.is_compiling() or logits.device.type != "cpu":
        return nn.functional.cross_entropy(logits.float(), targets, ignore_index=-100, reduction="sum")
    if torch.is_grad_enabled() and logits.requires_grad:
        return _FusedCrossEntropy.apply(logits, targets, chunk_rows)
    return sum((_chunk_loss(logits[i:i + chunk_rows], targets[i:i + chunk_rows])[0]
                for i in range(0, len(targets), chunk_rows)), logits.new_zeros((), dtype=torch.float32))


def _chunk_loss(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """(summed loss, float32 logits of the chunk (a fresh copy), their log-sum-exp, the kept rows or None when all
    are kept) for one chunk of rows."""
    rows = logits.to(torch.float32, copy=True)  # (n, V); a copy: the caller overwrites it
    lse = torch.logsumexp(rows, dim=-1)  # (n,)
    kept = targets != -100
    if bool(kept.all()):
        return (lse - rows.gather(1, targets[:, None]).squeeze(1)).sum(), rows, lse, None
    picked = rows.gather(1, targets.clamp(min=0)[:, None]).squeeze(1)
    return ((lse - picked) * kept).sum(), rows, lse, kept


def _loss_and_gradient(logits: Tensor, targets: Tensor, bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(summed float32 loss, its gradient in the logits' dtype) of (N, V) logits (plus a (V,) bias, added in float32
    when given), written for torch.compile: inductor turns it into a loop over rows that reads each row of logits a
    few times while it is in cache, with no (N, V) float32 tensor in memory. Rows whose target is -100 add nothing
    and get a zero gradient."""
    rows = logits.float() if bias is None else logits.float() + bias.float()
    kept = targets != -100
    safe = targets.clamp(min=0)
    top = rows.amax(-1, keepdim=True)  # (N, 1)
    exp = (rows - top).exp()
    total = exp.sum(-1, keepdim=True)
    picked = rows.gather(1, safe[:, None]).squeeze(1)
    loss = ((total.log() + top).squeeze(1) - picked) * kept
    onehot = torch.arange(rows.shape[1], device=rows.device)[None, :] == safe[:, None]
    grad = (exp / total - onehot.float()) * kept[:, None]
    return loss.sum(), grad.to(logits.dtype)


COMPILED_LOSS: dict = {"enabled": True, "function": None, "failed": None}
"""Process-wide state of the compiled loss kernel: whether to use it (train.compile_loss), the compiled function
once it has worked, and why it could not be compiled if it could not (then the chunks run for the rest of the
process)."""


def use_compiled_loss(enabled: bool) -> None:
    """Switch the compiled kernel of `fused_cross_entropy` on or off for this process (the loop does, per run)."""
    COMPILED_LOSS["enabled"] = enabled


def _compiled_loss_off(targets: Tensor) -> bool:
    """Whether the compiled kernel is not to be tried for these targets: off (`kernel_off`) or nothing to score."""
    return kernel_off(COMPILED_LOSS) or len(targets) == 0


def _compiled_loss_and_gradient(logits: Tensor, targets: Tensor,
                                bias: Tensor | None = None) -> tuple[Tensor, Tensor] | None:
    """`_loss_and_gradient` compiled by inductor (shapes dynamic: one compilation per process, dtype and with or
    without a bias), or None where it is switched off or cannot compile (no C++ compiler; Python without dynamo): a
    warning once, then the chunked path."""
    if _compiled_loss_off(targets):
        return None
    return run_compiled(COMPILED_LOSS, _loss_and_gradient, (logits, targets, bias),
                        failure="the cross-entropy kernel could not be compiled", fallback="the slower chunked loss",
                        switch="train.compile_loss")


def _chunked_loss_and_gradient(logits: Tensor, targets: Tensor, chunk_rows: int) -> tuple[Tensor, Tensor]:
    """(summed float32 loss, its gradient in the logits' dtype) of (N, V) logits, a chunk of rows at a time in
    float32 (the path without the compiled kernel)."""
    loss = logits.new_zeros((), dtype=torch.float32)
    grad = torch.empty_like(logits)  # (N, V), d loss_sum / d logits
    with torch.autocast(logits.device.type, enabled=False):  # float32 throughout, whatever the precision
        for i in range(0, len(targets), chunk_rows):
            part, rows, lse, kept = _chunk_loss(logits[i:i + chunk_rows], targets[i:i + chunk_rows])
            loss += part
            probs = rows.sub_(lse[:, None]).exp_()  # (n, V) softmax, in place of the float32 copy
            if kept is None:
                probs[torch.arange(len(probs)), targets[i:i + chunk_rows]] -= 1.0
            else:
                probs[kept.nonzero().squeeze(1), targets[i:i + chunk_rows][kept]] -= 1.0
                probs[~kept] = 0.0  # an ignored row has no loss, so no gradient
            grad[i:i + chunk_rows] = probs
    return loss, grad


class _FusedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, chunk_rows: int) -> Tensor:
        out = _compiled_loss_and_gradient(logits, targets)
        loss, grad = out if out is not None else _chunked_loss_and_gradient(logits, targets, chunk_rows)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        if getattr(ctx, "used", False):
            raise RuntimeError("fused_cross_entropy's backward runs once: its gradient is scaled in place")
        ctx.used = True
        (grad,) = ctx.saved_tensors
        # In place, by a Python float (computed in float32, rounded once to grad's dtype): about 4x faster on a CPU
        # than `grad * grad_loss`, which allocates another (N, V) tensor.
        return grad.mul_(float(grad_loss)), None, None


def linear_cross_entropy(x: Tensor, linear: nn.Linear, targets: Tensor) -> Tensor:
    """Summed cross-entropy of the logits `linear(x)` ((N, V), e.g. an LM decoder at the predicted positions) over
    the rows whose target is not -100: `fused_cross_entropy(linear(x), targets)`, with the same loss and gradients
    up to rounding, for less memory traffic where the fused path runs.

    With gradients on, on a CPU, not under torch.compile and with the compiled loss kernel available
    (train.compile_loss), the projection runs without its bias, the kernel adds the bias in float32 as it computes
    the loss and the gradient of the logits, and the backward pass applies the upstream gradient (a scalar) to the
    small operands, the (N, H) input and gradient, rather than to the (N, V) gradient of the logits: no bias copied
    into the logits, no pass over them to scale their gradient. Under CPU autocast the products run in its dtype, as
    `linear` would. Elsewhere, `fused_cross_entropy(linear(x), targets)`."""
    if (torch.compiler.is_compiling() or x.device.type != "cpu" or not torch.is_grad_enabled()
            or _compiled_loss_off(targets)):
        return fused_cross_entropy(linear(x), targets)
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    return _LinearCrossEntropy.apply(x, linear.weight, linear.bias, targets, dtype)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, dtype: torch.dtype) -> Tensor:
        with torch.autocast("cpu", enabled=False):
            inputs, matrix = x.to(dtype), weight.to(dtype)
            logits = inputs @ matrix.t()  # (N, V), no bias
            out = _compiled_loss_and_gradient(logits, targets, bias)
            if out is None:  # the kernel failed to compile just now: the chunks, with the bias added first
                out = _chunked_loss_and_gradient(logits if bias is None else logits.add_(bias.to(dtype)), targets, 64)
        loss, grad = out  # grad: (N, V) in dtype
        ctx.save_for_backward(inputs, matrix, grad)
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        inputs, matrix, grad = ctx.saved_tensors
        scale = float(grad_loss)
        x_dtype, weight_dtype, bias_dtype = ctx.dtypes
        with torch.autocast("cpu", enabled=False):
            grad_x = (grad @ matrix).mul_(scale).to(x_dtype) if ctx.needs_input_grad[0] else None
            grad_weight = (grad.t() @ (inputs * scale)).to(weight_dtype) if ctx.needs_input_grad[1] else None
            grad_bias = (grad.sum(0).to(torch.float32).mul_(scale).to(bias_dtype)  # summed in float32 inside
                         if bias_dtype is not None and ctx.needs_input_grad[2] else None)
        return grad_x, grad_weight, grad_bias, None, None


WRAPPED_PREFIX = "hf_model."
"""The state-dict prefix of the transformers model inside a module returned by an objective's `wrap`: export strips
it, and a checkpoint of an older plmkit that trained the bare model gets it added on resume."""


def unwrap_training_module(module: nn.Module) -> nn.Module:
    """The transformers model inside a module returned by an objective's `wrap` (or the module itself)."""
    return getattr(module, "hf_model", module)
