"""Gradient accumulation: 1 x 8 blocks and 2 x 4 blocks per step give the same losses.

The loop divides the summed loss by the targets of all micro-batches together, so the split does not change
the gradient; averaging per micro-batch instead would weight the masked tokens of each half differently.
"""

from __future__ import annotations

import numpy as np
import pytest

from plmkit.api import pretrain

STEPS = 8


@pytest.mark.parametrize("objective", ["mlm", "clm"])
def test_accumulated_steps_match_one_big_batch(objective, debug_cfg, metrics, tmp_path):
    common = ["model.dropout=0.0", "train.lr_schedule=constant", f"train.max_steps={STEPS}",
              "train.eval_every=0"]
    runs = {"8x1": ["train.batch_size=8", "train.grad_accum=1"],
            "4x2": ["train.batch_size=4", "train.grad_accum=2"]}
    rows = {}
    for name, split in runs.items():
        pretrain(debug_cfg(objective, tmp_path / name, *common, *split), show_progress=False)
        rows[name] = metrics(tmp_path / name)
    one, accum = rows["8x1"], rows["4x2"]
    assert [r["step"] for r in one] == [r["step"] for r in accum] == list(range(1, STEPS + 1))
    np.testing.assert_allclose([r["loss"] for r in accum], [r["loss"] for r in one], rtol=1e-5)
    np.testing.assert_allclose([r["grad_norm"] for r in accum], [r["grad_norm"] for r in one], rtol=1e-4)
    assert [r["tokens_seen"] for r in accum] == [r["tokens_seen"] for r in one]
    np.testing.assert_allclose(accum[-1]["eval_loss"], one[-1]["eval_loss"], rtol=1e-5)
