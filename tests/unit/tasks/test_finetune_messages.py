"""What a fine-tuning run says and leaves: model.* settings that the starting model overrides are named (once by
plm compare and plm tune too, whose runs do not say it), early stopping is not announced at the last step, and
final/'s files are readable as the umask allows (safetensors writes 0600)."""

from __future__ import annotations

import os
import stat

import pytest

from plmkit import api
from plmkit.compare import compare
from plmkit.errors import ConfigError
from plmkit.tune import build_space, tune


def test_unused_model_settings_are_named_and_final_is_readable(task_files, finetune_cfg, tmp_path, capsys, squash):
    train, dev = task_files("classification", tmp_path / "data", n_train=32, n_dev=8)
    # learning rates of 1e-12: the second (last) evaluation scores as the first, so patience 1 runs out there
    cfg = finetune_cfg("classification", train, dev, tmp_path / "run", "train.epochs=2", "model.dropout=0.0",
                       "eval.patience=1", "train.lr=1e-12", "train.head_lr=1e-12")
    old = os.umask(0o022)
    try:
        api.finetune(cfg, show_progress=True)
    finally:
        os.umask(old)
    err = squash(capsys.readouterr().err)
    assert squash("so these settings are not used: model.dropout 0.0") in err
    assert squash("early stopping") not in err  # patience 1 met at the last evaluation stops nothing
    weights = tmp_path / "run" / "final" / "model.safetensors"
    assert stat.S_IMODE(weights.stat().st_mode) == 0o644


def test_patience_that_runs_out_before_the_last_step_is_announced(task_files, finetune_cfg, tmp_path, capsys, squash):
    """The run above with a third epoch: the same evaluation now stops the run, and says so (so the test above
    shows the last step's silence, not a patience that never ran out)."""
    train, dev = task_files("classification", tmp_path / "data", n_train=32, n_dev=8)
    cfg = finetune_cfg("classification", train, dev, tmp_path / "run", "train.epochs=3", "model.dropout=0.0",
                       "eval.patience=1", "train.lr=1e-12", "train.head_lr=1e-12")
    result = api.finetune(cfg, show_progress=True)
    assert squash("early stopping") in squash(capsys.readouterr().err)
    assert result.metrics["steps"] == 8  # 32 examples in batches of 8: stopped after the second of three epochs


UNUSED = "so these settings are not used: model.dropout 0.0"


def test_compare_names_unused_model_settings_once(task_files, finetune_cfg, tmp_path, capsys, squash):
    train, dev = task_files("classification", tmp_path / "data", n_train=16, n_dev=8)
    cfg = finetune_cfg("classification", train, dev, tmp_path / "run", "model.dropout=0.0")
    compare(cfg, sizes=(8,), seeds=2, arms=("pretrained",), min_steps=1, show_progress=False)
    assert squash(capsys.readouterr().err).count(squash(UNUSED)) == 1  # two runs, one warning


def test_tune_names_unused_model_settings_once_and_refuses_to_search_them(task_files, finetune_cfg, tmp_path,
                                                                         capsys, squash):
    train, dev = task_files("classification", tmp_path / "data", n_train=16, n_dev=8)
    cfg = finetune_cfg("classification", train, dev, tmp_path / "run", "model.dropout=0.0", "train.epochs=1")
    tune(cfg, trials=2, space=["lr=1e-3:1e-2:log"], show_progress=False)
    assert squash(capsys.readouterr().err).count(squash(UNUSED)) == 1
    with pytest.raises(ConfigError, match=r"--param model.dropout: fine-tuning takes the model .* as init.from has"):
        build_space(cfg, ["model.dropout=0.0:0.3"])
    with pytest.raises(ConfigError, match=r"--param tokenizer.train.vocab_size: fine-tuning takes"):
        build_space(cfg, ["tokenizer.train.vocab_size=1000,2000"])
    assert "tokenizer.pretrained" in build_space(cfg, ["tokenizer.pretrained=a,b"])  # fine-tuning does use this one
