"""Checkpoints: atomic saves (a kill mid-save leaves only an ignored `.tmp-*` folder), rotation, contents, and
what resume does with metrics.jsonl and with a run that has no checkpoint yet."""

from __future__ import annotations

import json
import shutil

from plmkit.api import pretrain
from plmkit.training import checkpoint


def _fake_checkpoint(root, name, complete=True):
    folder = root / "checkpoints" / name
    folder.mkdir(parents=True)
    if complete:
        (folder / checkpoint.STATE_FILE).write_text(json.dumps({"step": 0}))
    return folder


def test_latest_only_returns_complete_checkpoints(tmp_path):
    assert checkpoint.latest(tmp_path) is None  # no checkpoints/ folder at all
    _fake_checkpoint(tmp_path, "step-000003")
    step6 = _fake_checkpoint(tmp_path, "step-000006")
    _fake_checkpoint(tmp_path, ".tmp-step-000009")  # killed before the rename, state file already written
    _fake_checkpoint(tmp_path, "step-000012", complete=False)  # no trainer_state.json
    _fake_checkpoint(tmp_path, "step-000015.tmp")  # a .tmp anywhere in the name is never a checkpoint
    assert checkpoint.latest(tmp_path) == step6
    assert [p.name for p in checkpoint.checkpoint_dirs(tmp_path)] == ["step-000003", "step-000006"]


def test_kill_during_save_resumes_from_last_complete_checkpoint(debug_cfg, metrics, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["train.save_every=3", "train.keep_checkpoints=5"]
    pretrain(debug_cfg("mlm", run, "train.max_steps=6", *common), show_progress=False)
    before = metrics(run)
    # Simulate a kill while step 9 was being saved: a partial temporary folder, even with a state file in it.
    torn = run / "checkpoints" / ".tmp-step-000009"
    shutil.copytree(run / "checkpoints" / "step-000006", torn)
    (torn / "model.safetensors").write_bytes(b"\0" * 16)
    (torn / checkpoint.STATE_FILE).write_text(json.dumps({"step": 9, "micro_step": 9, "tokens_seen": 0}))
    assert checkpoint.latest(run).name == "step-000006"
    capsys.readouterr()

    result = pretrain(debug_cfg("mlm", run, "train.max_steps=9", *common), resume=True, show_progress=False)

    assert "step-000006 (step 6)" in capsys.readouterr().err.replace("\n", "")
    rows = metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 10))
    assert rows[:6] == before  # kept as written (same wall-clock times): the run did not start over
    assert result.metrics["steps"] == 9
    assert not torn.exists()  # cleaned up by the next save
    assert [p.name for p in checkpoint.checkpoint_dirs(run)] == ["step-000003", "step-000006", "step-000009"]
    state = json.loads((run / "checkpoints" / "step-000009" / checkpoint.STATE_FILE).read_text())
    assert state["step"] == 9


def test_rotation_and_contents(debug_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = debug_cfg("mlm", run, "train.max_steps=6", "train.save_every=1", "train.keep_checkpoints=2",
                    "train.grad_accum=2")
    pretrain(cfg, show_progress=False)
    root = run / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step-000005", "step-000006"]  # no .tmp-* left either
    newest = root / "step-000006"
    files = {p.name for p in newest.iterdir()}
    assert "model.safetensors" in files
    assert any(name.startswith("optimizer") for name in files), files
    assert any(name.startswith("random_states") for name in files), files  # dropout RNG, for exact resume
    state = json.loads((newest / checkpoint.STATE_FILE).read_text())
    assert state["step"] == 6
    assert state["micro_step"] == 6 * 2
    assert state["tokens_seen"] == 6 * 2 * cfg.train.batch_size * cfg.data.block_size
    assert state["scheduler"]["last_epoch"] == 6  # the scheduler was stepped once per optimizer step


def test_resume_without_checkpoints_starts_fresh(debug_cfg, metrics, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # What a run that died before its first save leaves behind: metrics rows but no checkpoint.
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 123.0}) + "\n")
    (run / "checkpoints").mkdir()
    result = pretrain(debug_cfg("mlm", run, "train.max_steps=4"), resume=True, show_progress=False)
    rows = metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["loss"] != 123.0
    assert result.metrics["steps"] == 4
    assert (run / "final" / "model.safetensors").is_file()


def test_resume_drops_metrics_rows_after_the_checkpoint(debug_cfg, metrics, tmp_path):
    run = tmp_path / "run"
    common = ["train.save_every=2", "train.keep_checkpoints=5"]
    pretrain(debug_cfg("mlm", run, "train.max_steps=4", *common), show_progress=False)
    shutil.rmtree(run / "checkpoints" / "step-000004")  # resume from step 2: rows 3 and 4 are stale
    with (run / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 99, "time": 0.0, "loss": 1.0}) + "\n")
        f.write('{"step": 100, "lo')  # a torn last line
    first_two = metrics(run)[:2]

    pretrain(debug_cfg("mlm", run, "train.max_steps=6", *common), resume=True, show_progress=False)

    rows = metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[:2] == first_two
    assert all(r.get("loss") != 1.0 for r in rows)
