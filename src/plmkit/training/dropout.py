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

With train.compile_dropout (by default on for pre-training, off for fine-tuning tasks), one kernel that
torch.compile (inductor) generates draws the mask and applies it in one pass (`_hashed_dropout`). Each element's
16-bit draw is the top 16 bits of SplitMix64 (Steele, Lea and Flood 2014) at (seed + the element's index) x its
increment, and the seed is one draw from torch's default generator per call, so seeded runs still repeat and resume
exactly. The drop probability, the scale and the saved mask are as above; only the random stream differs. The
forward pass is about 1.7-1.9x faster than the slices for the benchmark's tensors. Each dtype's kernel is checked
against the eager formula before its first use; where it cannot compile (no C++ compiler) or fails the check, a
warning and the slices.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from plmkit.compiled import kernel_off, run_compiled

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


def _signed(value: int) -> int:
    """A 64-bit constant as torch's int64 holds it."""
    return value - (1 << 64) if value >= 1 << 63 else value


SPLITMIX = (_signed(0x9E3779B97F4A7C15), _signed(0xBF58476D1CE4E5B9), _signed(0x94D049BB133111EB))
"""SplitMix64's increment and its two multipliers."""


def _shift_right(z: Tensor, k: int) -> Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic: it copies the sign bit)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def _hashed_dropout(x: Tensor, seed: Tensor, threshold: int, scale: Tensor) -> tuple[Tensor, Tensor]:
    """(x * mask, mask) of a 1-D x, written for torch.compile: element i draws the top 16 bits of SplitMix64 at the
    state (seed + i) x the increment, and is dropped when that draw is below `threshold` (round(p * 65536)); kept elements
    are scaled by `scale` (0-dim; a value that x's dtype holds exactly, so the output is x times the returned mask)."""
    gamma, mix1, mix2 = SPLITMIX
    z = (torch.arange(x.numel(), dtype=torch.int64, device=x.device) + seed) * gamma  # SplitMix64 from seed x gamma
    z = (z ^ _shift_right(z, 30)) * mix1  # int64 products wrap around, as SplitMix64's unsigned ones do
    z = (z ^ _shift_right(z, 27)) * mix2
    z = z ^ _shift_right(z, 31)
    mask = ((_shift_right(z, 48) >= threshold).to(torch.float32) * scale).to(x.dtype)  # (n,), 0 or scale
    return x * mask, mask


COMPILED_MASKS: dict = {"enabled": True, "function": None, "failed": None, "verified": set()}
"""Process-wide state of the compiled dropout kernel: whether to use it (train.compile_dropout), the compiled function
once it has worked, the dtypes whose masks it was checked to give (`_verify`), and why it could not be compiled or
checked if it could not (then the slices run for the rest of the process)."""


def use_compiled_masks(enabled: bool) -> None:
    """Switch the compiled dropout kernel on or off for this process (the loop does, per run)."""
    COMPILED_MASKS["enabled"] = enabled


def _compiled_dropout(x: Tensor, p: float) -> tuple[Tensor, Tensor] | None:
    """(x * mask, mask) from the compiled kernel, or None where it is switched off, failed to compile or to give the
    eager formula's masks, or a dispatch mode is active (e.g. FlopCounterMode)."""
    if kernel_off(COMPILED_MASKS) or x.device.type != "cpu":
        return None
    seed = torch.empty((), dtype=torch.int64).random_(-(1 << 63), None)  # one draw of torch's generator
    # The scale rounded to x's dtype here: inductor would multiply by the float32 one, not by the saved mask's.
    scale = torch.tensor(1.0 / (1.0 - p), dtype=x.dtype).double()  # a tensor: no recompilation per value
    check = None if x.dtype in COMPILED_MASKS["verified"] else (lambda function: _verify(function, x.dtype))
    args = (x.reshape(-1), seed, round(p * LEVELS), scale)  # 1-D: one graph per dtype, whatever the rank
    out = run_compiled(COMPILED_MASKS, _hashed_dropout, args, failure="the dropout kernel could not be compiled or "
                       "checked", fallback="the slower masks from 16-bit slices", switch="train.compile_dropout",
                       check=check)
    return None if out is None else (out[0].view(x.shape), out[1].view(x.shape))


def _verify(function, dtype: torch.dtype) -> None:
    """Raise RuntimeError unless the compiled kernel gives the eager formula's output and mask for `dtype`, on one
    thread and on all: an inductor build once vectorised the index hash wrongly on one thread (half the lanes
    always dropped), and a miscompiled kernel must not train."""
    probe, seed, scale = torch.linspace(-1, 1, 4099, dtype=dtype), torch.tensor(SPLITMIX[1]), torch.tensor(2.0)
    expected = _hashed_dropout(probe, seed, 1 << 15, scale)  # 4,099 elements: a vectorised body and a tail
    threads = torch.get_num_threads()
    try:
        for count in sorted({1, threads}):
            torch.set_num_threads(count)
            got = function(probe, seed, 1 << 15, scale)
            if not (torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])):
                raise RuntimeError(f"the compiled kernel's {dtype} masks differ from the formula's on {count} "
                                   "thread(s)")
    finally:
        torch.set_num_threads(threads)
    COMPILED_MASKS["verified"].add(dtype)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        out = _compiled_dropout(x, p)
        if out is None:
            mask = dropout_mask(x.shape, p, x.dtype, x.device)
            out = x * mask, mask
        ctx.save_for_backward(out[1])
        return out[0]

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
