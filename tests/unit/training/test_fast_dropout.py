"""train.fast_dropout: dropout masks from 16-bit slices of 64-bit random integers (plmkit.training.dropout) drop at
the rate asked for, scale as torch does, repeat with the seed, leave eval mode and other calls alone, and train to
the plain masks' loss within the tolerance that different random masks allow."""

from __future__ import annotations

import math

import pytest
import torch

from plmkit.api import pretrain
from plmkit.training.dropout import FastDropout, dropout, dropout_mask

STEPS = ["train.max_steps=6", "train.eval_every=0", "train.save_every=100", "train.lr_schedule=constant"]


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_masks_drop_at_the_rate_asked_and_scale_the_rest(p):
    torch.manual_seed(0)
    mask = dropout_mask(torch.Size([1000, 1000]), p, torch.float32, torch.device("cpu"))
    dropped = float((mask == 0).float().mean())
    assert abs(dropped - p) < 5 * math.sqrt(p * (1 - p) / mask.numel()) + 1 / 65536
    assert torch.allclose(mask[mask != 0], torch.tensor(1 / (1 - p)))


def test_rows_of_the_mask_are_not_correlated():
    """Four draws share each 64-bit integer: neighbouring elements must still be independent."""
    torch.manual_seed(1)
    kept = (dropout_mask(torch.Size([400_000]), 0.5, torch.float32, torch.device("cpu")) > 0).float()
    for lag in (1, 2, 3, 4):
        both = float((kept[:-lag] * kept[lag:]).mean())
        assert abs(both - 0.25) < 0.005, (lag, both)


def test_gradient_is_the_mask_and_the_seed_repeats_it():
    x = torch.randn(64, 128, dtype=torch.bfloat16, requires_grad=True)
    torch.manual_seed(3)
    y = dropout(x, 0.2)
    y.float().sum().backward()
    torch.manual_seed(3)
    mask = dropout_mask(x.shape, 0.2, x.dtype, x.device)
    assert torch.equal(y, x.detach() * mask)
    assert torch.equal(x.grad, mask)
    assert y.dtype == torch.bfloat16
    torch.manual_seed(4)
    assert not torch.equal(dropout_mask(x.shape, 0.2, x.dtype, x.device), mask)


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


def test_fast_and_plain_masks_train_to_the_same_loss(debug_cfg, metrics, tmp_path):
    """Same data, init and optimizer, different random masks: the first step's loss (before any update) within 2%,
    the sixth within 5%; and with dropout off the two give identical losses."""
    runs = {}
    for fast in (True, False):
        for rate in (0.1, 0.0):
            out = tmp_path / f"fast-{fast}-{rate}"
            pretrain(debug_cfg("mlm", out, *STEPS, "train.log_every=1", f"model.dropout={rate}",
                               f"train.fast_dropout={str(fast).lower()}"), show_progress=False)
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
