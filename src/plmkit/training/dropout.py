"""Cheaper dropout masks on a CPU (train.fast_dropout).

On a CPU, `torch.nn.functional.dropout` draws its mask with `bernoulli_`, about 5 ns per element on the 2-core
machine of benchmarks/README.md: a fifth of a bf16 training step of the benchmark BERT, whose attention
probabilities alone are 2 million elements per layer. Here every 64-bit integer of torch's generator gives four
16-bit draws, and an element is dropped when its draw is below round(p * 65536): the drop probability is p rounded
to a multiple of 1/65536 (0.1 -> 0.100006), the kept elements are scaled by 1 / (1 - p) as in torch, and the mask,
saved for the backward pass, is in the input's dtype as torch's is. Forward and backward together take about 40% of
`dropout`'s time for those tensors.

`FastDropout()` is a torch function mode: inside it every training-mode `torch.nn.functional.dropout` call (what
`nn.Dropout` and transformers' eager attention call) uses these masks, so no model is changed and checkpoints stay
what they were. The masks come from torch's default generator: a seeded run draws the same masks every time, and
the checkpointed RNG state resumes them. Like every torch function mode it is off inside the torch functions it
passes on (e.g. a reentrant `torch.utils.checkpoint` runs torch's dropout), and off in the backward pass: the loop
does not use it with gradient checkpointing, whose replayed forward pass must draw the masks the first one drew.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

LEVELS = 1 << 16
"""Each draw is one of 65,536 levels."""


def dropout_mask(shape: torch.Size, p: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A mask of `shape`: 0 with probability round(p * 65536) / 65536, else 1 / (1 - p); in `dtype`."""
    n = shape.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-(1 << 63), None)  # all 64 bits
    draws = words.view(torch.int16)[:n].view(shape)  # uniform over [-32768, 32767]
    threshold = round(p * LEVELS) - LEVELS // 2
    mask = torch.ge(draws, threshold, out=torch.empty(shape, dtype=dtype, device=device))  # 1 kept, 0 dropped
    return mask.mul_(1.0 / (1.0 - p))


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        mask = dropout_mask(x.shape, p, x.dtype, x.device)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: Tensor):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def dropout(x: Tensor, p: float) -> Tensor:
    """Training-mode dropout of `x` with the masks above."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability has to be in [0, 1), got {p}")
    return _Dropout.apply(x, p) if p > 0 else x


class FastDropout(TorchFunctionMode):
    """Within this context, training-mode `F.dropout` calls draw their masks as `dropout` above; in-place calls, and
    everything else, run as they are."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.dropout:
            names = ("input", "p", "training", "inplace")
            bound = {**dict(zip(names, args)), **kwargs}
            p, training = bound.get("p", 0.5), bound.get("training", True)
            if training and not bound.get("inplace", False) and 0.0 < p < 1.0:
                return dropout(bound["input"], p)
        return func(*args, **kwargs)
