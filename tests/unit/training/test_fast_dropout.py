"""train.fast_dropout: dropout masks from 16-bit slices of 64-bit random integers, or (train.compile_dropout) from a
compiled kernel hashing each element's index with a seed (plmkit.training.dropout), drop at the rate asked for, scale
as torch does, repeat with the seed, leave eval mode and other calls alone, and train to the plain masks' loss within
the tolerance that different random masks allow."""

from __future__ import annotations

import math

import pytest
import torch

from plmkit.api import pretrain
from plmkit.objectives.mlm import MaskedLM
from plmkit.tasks.classification import Classification
from plmkit.tasks.ner import NamedEntities
from plmkit.training import dropout as fast_dropout
from plmkit.training.dropout import COMPILED_MASKS, FastDropout, dropout, dropout_mask, use_compiled_masks
from plmkit.training.loop import wants_compiled_masks

STEPS = ["train.max_steps=6", "train.eval_every=0", "train.save_every=100", "train.lr_schedule=constant"]


@pytest.fixture(params=["slices", "compiled"])
def masks(request):
    """Each test once with the 16-bit slices and once with the compiled kernel; the process-wide switch restored."""
    before = COMPILED_MASKS["enabled"]
    use_compiled_masks(request.param == "compiled")
    yield request.param
    use_compiled_masks(before)


def draw_mask(shape: tuple, p: float, dtype=torch.float32) -> torch.Tensor:
    """The mask `dropout` applies (its gradient with respect to the input), by the path the switch selects."""
    x = torch.ones(shape, dtype=dtype, requires_grad=True)
    dropout(x, p).float().sum().backward()
    return x.grad


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_masks_drop_at_the_rate_asked_and_scale_the_rest(p, masks):
    torch.manual_seed(0)
    mask = draw_mask((1000, 1000), p)
    dropped = float((mask == 0).float().mean())
    assert abs(dropped - p) < 5 * math.sqrt(p * (1 - p) / mask.numel()) + 1 / 65536
    assert torch.allclose(mask[mask != 0], torch.tensor(1 / (1 - p)))


def test_rows_of_the_mask_are_not_correlated(masks):
    """Four draws share each 64-bit integer, or consecutive indices are hashed: neighbouring elements must still be
    independent, and so must the masks of two calls in a row."""
    torch.manual_seed(1)
    kept = (draw_mask((400_000,), 0.5) > 0).float()
    for lag in (1, 2, 3, 4, 64):
        both = float((kept[:-lag] * kept[lag:]).mean())
        assert abs(both - 0.25) < 0.005, (lag, both)
    after = (draw_mask((400_000,), 0.5) > 0).float()
    assert abs(float((kept * after).mean()) - 0.25) < 0.005


def test_gradient_is_the_mask_and_the_seed_repeats_it(masks):
    x = torch.randn(64, 128, dtype=torch.bfloat16, requires_grad=True)
    torch.manual_seed(3)
    y = dropout(x, 0.2)
    y.float().sum().backward()
    mask = x.grad
    assert torch.equal(y, x.detach() * mask)  # the output is the input times the mask the backward pass applies
    assert set(mask.unique().tolist()) == {0.0, torch.tensor(1 / 0.8, dtype=torch.bfloat16).item()}
    assert y.dtype == torch.bfloat16
    torch.manual_seed(3)
    assert torch.equal(dropout(x.detach(), 0.2), y)
    if masks == "slices":
        torch.manual_seed(3)
        assert torch.equal(dropout_mask(x.shape, 0.2, x.dtype, x.device), mask)
    torch.manual_seed(4)
    assert not torch.equal(draw_mask(x.shape, 0.2, x.dtype), mask)


def test_a_kernel_that_does_not_compile_leaves_the_slices(monkeypatch):
    """No C++ compiler (here: torch.compile raising): a warning once, then the slices for the rest of the process."""
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", broken)
    for key, value in {"function": None, "failed": None, "enabled": True, "verified": set()}.items():
        monkeypatch.setitem(COMPILED_MASKS, key, value)
    x = torch.randn(32, 32, requires_grad=True)
    with pytest.warns(UserWarning, match="dropout kernel could not be compiled"):
        y = dropout(x, 0.1)
    assert COMPILED_MASKS["failed"] == "no C++ compiler found"
    y.sum().backward()
    assert torch.equal(y, x.detach() * x.grad)
    torch.manual_seed(5)
    again = dropout(x.detach(), 0.1)  # no second attempt, no second warning: the slices, as dropout_mask draws them
    torch.manual_seed(5)
    assert torch.equal(again, x.detach() * dropout_mask(x.shape, 0.1, x.dtype, x.device))


@pytest.mark.parametrize("threads", [1, 2])
def test_the_kernel_hashes_indices_as_splitmix64(threads):
    """The draws are SplitMix64's (its mixing function at state (seed + i) x the increment, top 16 bits), checked
    against a pure-Python SplitMix64, eager and compiled, on one thread and two, over a vectorised body and a tail."""
    mask64 = 2**64 - 1

    def splitmix64(state: int) -> int:
        z = state & mask64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask64
        return z ^ (z >> 31)

    seed, threshold, n = -0x0123456789ABCDEF, 1 << 15, 1000  # p = 0.5; a negative seed, as torch draws half the time
    expected = [2.0 if splitmix64((seed + i) * 0x9E3779B97F4A7C15) >> 48 >= threshold else 0.0 for i in range(n)]
    compiled = torch.compile(fast_dropout._hashed_dropout, dynamic=True)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for function in (fast_dropout._hashed_dropout, compiled):
            for dtype in (torch.float32, torch.bfloat16):
                x = torch.ones(n, dtype=dtype)
                out, mask = function(x, torch.tensor(seed), threshold, torch.tensor(2.0))
                assert mask.tolist() == expected, (function, dtype)
                assert torch.equal(out, x * mask)
    finally:
        torch.set_num_threads(before)


def test_a_miscompiled_kernel_is_caught_and_the_slices_run(monkeypatch):
    """A kernel whose masks differ from the formula's (here: one that keeps everything) fails its check on first use:
    a warning, then the slices."""
    def wrong(*args, **kwargs):
        return lambda x, seed, threshold, scale: (x.clone(), torch.ones_like(x))

    monkeypatch.setattr(torch, "compile", wrong)
    for key, value in {"function": None, "failed": None, "enabled": True, "verified": set()}.items():
        monkeypatch.setitem(COMPILED_MASKS, key, value)
    x = torch.randn(4096)
    with pytest.warns(UserWarning, match="masks differ from the formula's"):
        y = dropout(x, 0.5)
    assert float((y == 0).float().mean()) > 0.4  # dropped after all: the slices ran


def test_mode_reroutes_only_training_dropout():
    layer, x = torch.nn.Dropout(0.3), torch.ones(256, 256, requires_grad=True)
    with FastDropout():
        trained = layer(x)
        assert type(trained.grad_fn).__name__ == "_DropoutBackward"
        layer.eval()
        assert layer(x) is x or torch.equal(layer(x), x)  # eval mode: torch's identity
        layer.train()
        inplace = torch.nn.functional.dropout(x.detach().clone(), 0.3, True, True)  # torch's own, in place
        assert type(inplace.grad_fn).__name__ != "_DropoutBackward"
        assert torch.equal(torch.nn.functional.dropout(x, 0.0), x)
    assert type(layer(x).grad_fn).__name__ != "_DropoutBackward"  # outside the context: torch's again
    with pytest.raises(ValueError, match="dropout probability"):
        dropout(x, 1.0)


@pytest.mark.parametrize("compiled", ["true", "false"])
def test_fast_and_plain_masks_train_to_the_same_loss(debug_cfg, metrics, tmp_path, compiled):
    """Same data, init and optimizer, different random masks: the first step's loss (before any update) within 2%,
    the sixth within 5%; and with dropout off the two give identical losses."""
    runs = {}
    for fast in (True, False):
        for rate in (0.1, 0.0):
            out = tmp_path / f"fast-{fast}-{rate}"
            pretrain(debug_cfg("mlm", out, *STEPS, "train.log_every=1", f"model.dropout={rate}",
                               f"train.fast_dropout={str(fast).lower()}", f"train.compile_dropout={compiled}"),
                     show_progress=False)
            runs[fast, rate] = [row["loss"] for row in metrics(out)]
    fast, plain = runs[True, 0.1], runs[False, 0.1]
    assert len(fast) == 6 and fast != plain  # the masks did differ
    assert math.isclose(fast[0], plain[0], rel_tol=0.02), (fast, plain)
    assert math.isclose(fast[-1], plain[-1], rel_tol=0.05), (fast, plain)
    assert runs[True, 0.0] == runs[False, 0.0]


def test_gradient_checkpointing_keeps_torchs_masks(debug_cfg, metrics, tmp_path):
    """Checkpointing replays the forward pass in the backward pass, outside the mode: the loop then keeps torch's
    masks, so a checkpointed run gives the losses of a run without fast masks, step for step."""
    runs = {}
    for name, extra in {"checkpointed": ["train.gradient_checkpointing=true"],
                        "plain": ["train.fast_dropout=false"]}.items():
        out = tmp_path / name
        pretrain(debug_cfg("mlm", out, *STEPS, "train.log_every=1", *extra), show_progress=False)
        runs[name] = [row["loss"] for row in metrics(out)]
    for a, b in zip(runs["checkpointed"], runs["plain"]):
        assert math.isclose(a, b, rel_tol=1e-5), runs


def test_the_kernel_is_on_for_pretraining_and_off_for_tasks_unless_set():
    """train.compile_dropout null: pre-training objectives (a loss only) use the kernel, fine-tuning tasks (they
    have metrics) keep the slices; true and false apply to both."""
    assert wants_compiled_masks(None, MaskedLM)
    assert not wants_compiled_masks(None, Classification) and not wants_compiled_masks(None, NamedEntities)
    assert wants_compiled_masks(True, Classification) and not wants_compiled_masks(False, MaskedLM)
