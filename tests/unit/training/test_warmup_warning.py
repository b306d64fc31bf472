"""A warm-up as long as the run never lets the learning rate reach train.lr: the run says so."""

from __future__ import annotations


def test_a_warm_up_as_long_as_the_run_is_warned_about(debug_cfg, tmp_path, capsys, squash):
    from plmkit.api import pretrain

    pretrain(debug_cfg("mlm", tmp_path / "run", "train.max_steps=2", "train.warmup_steps=5"), show_progress=False)
    assert squash("train.warmup_steps (5) is not below the run's 2 steps") in squash(capsys.readouterr().err)
    pretrain(debug_cfg("mlm", tmp_path / "short", "train.max_steps=2", "train.warmup_steps=1"), show_progress=False)
    assert squash("is not below the run's") not in squash(capsys.readouterr().err)
