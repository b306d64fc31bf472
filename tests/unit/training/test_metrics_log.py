"""metrics.jsonl: a row per logged step with the documented fields, eval rows, and the loss-curve PNG."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from plmkit import load_config
from plmkit.api import pretrain

DEBUG_CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "debug"
STEPS, ACCUM = 6, 2
FIELDS = {"step", "time", "loss", "lr", "grad_norm", "tokens_seen", "tokens_per_s"}


@pytest.fixture(scope="module")
def run(debug_cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("metrics") / "run"
    cfg = debug_cfg("mlm", out, f"train.max_steps={STEPS}", "train.eval_every=3", f"train.grad_accum={ACCUM}")
    result = pretrain(cfg, show_progress=False)
    return cfg, result


def test_every_step_has_one_row_with_all_fields(run, metrics):
    cfg, result = run
    rows = metrics(cfg.run.output_dir)
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # 1-based, the last is max_steps
    for row in rows:
        assert FIELDS <= row.keys(), FIELDS - row.keys()
        assert all(math.isfinite(row[k]) for k in FIELDS)
        assert row["lr"] == pytest.approx(cfg.train.lr)  # constant schedule, no warm-up
        assert row["grad_norm"] > 0 and row["tokens_per_s"] > 0
    times = [r["time"] for r in rows]
    assert times == sorted(times)
    assert result.metrics["loss"] == rows[-1]["loss"]


def test_tokens_seen_grows_by_one_global_batch_per_step(run, metrics):
    cfg, result = run
    per_step = cfg.train.batch_size * cfg.data.block_size * ACCUM
    seen = [r["tokens_seen"] for r in metrics(cfg.run.output_dir)]
    assert seen == [per_step * s for s in range(1, STEPS + 1)]
    assert result.metrics["tokens_seen"] == per_step * STEPS


def test_eval_rows(run, metrics):
    cfg, result = run
    rows = metrics(cfg.run.output_dir)
    evals = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in evals] == [3, 6]  # every eval_every steps and at the last step
    for row in evals:
        assert row["eval_ppl"] == pytest.approx(math.exp(row["eval_loss"]), rel=1e-4)
    assert result.metrics["eval_loss"] == evals[-1]["eval_loss"]
    assert result.metrics["initial_eval_ppl"] == pytest.approx(math.exp(result.metrics["initial_eval_loss"]))


def test_loss_curve_png(run):
    cfg, _ = run
    png = Path(cfg.run.output_dir) / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("path", sorted(DEBUG_CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_debug_configs_log_every_step(path):
    assert load_config(path).train.log_every == 1


def test_tensorboard_events_when_asked(debug_cfg, tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "tb"
    pretrain(debug_cfg("mlm", out, "train.max_steps=3", "log.to=[console,jsonl,tensorboard]"), show_progress=False)
    events = list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_objective_metrics_are_logged(debug_cfg, metrics, tmp_path):
    """An objective's LossOutput.metrics (ELECTRA: generator and discriminator parts) land in metrics.jsonl: means
    over the micro-batches since the last row, and over the evaluation batches with an eval_ prefix."""
    out = tmp_path / "electra"
    pretrain(debug_cfg("electra", out, "train.max_steps=2", "train.eval_every=2"), show_progress=False)
    rows = metrics(out)
    parts = ("generator_loss", "discriminator_loss", "discriminator_accuracy", "replaced_fraction")
    assert all(key in row for row in rows for key in parts)
    assert all(0 <= row["discriminator_accuracy"] <= 1 and row["generator_loss"] > 0 for row in rows)
    assert all(f"eval_{key}" in rows[-1] for key in parts)


def test_an_mfu_above_one_against_a_probed_peak_is_flagged_once(debug_cfg, tmp_path, monkeypatch, capsys, squash):
    """A matmul probe taken while the cores were busy gives too low a peak: the MFU rows read above 100%."""
    from plmkit import flops

    monkeypatch.setattr(flops, "peak_flops", lambda device, precision: (1.0, "cpu, fp32 measured by a matmul probe"))
    pretrain(debug_cfg("mlm", tmp_path / "run", "train.max_steps=3"), show_progress=False)
    err = squash(capsys.readouterr().err)
    assert err.count(squash("above 100%, so the matmul probe that measured the peak")) == 1
    assert squash("this run's MFU figures read high") in err
