"""plm compare (plmkit.compare) on a tiny BERT and tiny classification data: the runs of every arm, size and seed,
paired training subsets, capped and deduplicated sizes, the min-steps epochs rule, aggregation, the files written,
resuming and --overwrite; and api.finetune(train_limit=N) itself."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest
import yaml

from plmkit import api
from plmkit import compare as compare_module
from plmkit.compare import aggregate, compare, count_training_examples, epochs_for, run_config
from plmkit.errors import PlmError

TRAIN, DEV, BATCH, MIN_STEPS = 40, 16, 8, 6
SIZES = (8, 16, 60, 100)  # 60 and 100 are capped to the 40 training examples: one run size of 40
USED = (8, 16, 40)
SEEDS = (3, 4)
ARMS = ("pretrained", "scratch")


class Recorder:
    """Wraps api.finetune (the real one runs): each call's run folder, scratch flag, train_limit and the training
    examples it drew (read where api.finetune hands them to _warn_overlap)."""

    def __init__(self, mp: pytest.MonkeyPatch):
        self.calls: list[dict] = []
        finetune, warn = api.finetune, api._warn_overlap

        def recording_finetune(cfg, **kwargs):
            self.calls.append({"out": Path(cfg.run.output_dir), "scratch": kwargs.get("scratch"),
                               "train_limit": kwargs.get("train_limit"), "seed": cfg.run.seed})
            return finetune(cfg, **kwargs)

        def recording_warn(train_raw, valid_raw, *args):
            self.calls[-1]["train"] = [(e.text, tuple(e.labels)) for e in train_raw]
            return warn(train_raw, valid_raw, *args)

        mp.setattr(api, "finetune", recording_finetune)
        mp.setattr(api, "_warn_overlap", recording_warn)


@pytest.fixture(scope="module")
def data(task_files, tmp_path_factory) -> tuple[Path, Path]:
    return task_files("classification", tmp_path_factory.mktemp("compare-data"), n_train=TRAIN, n_dev=DEV)


@pytest.fixture(scope="module")
def compared(data, finetune_cfg, tmp_path_factory):
    """One compare over sizes 8, 16, 60, 100 (-> 8, 16, 40) x seeds 3, 4 x both arms, with every call recorded.

    Scored by the validation loss, which differs from run to run (on so little training the tiny model's accuracy
    is 0.5 everywhere)."""
    train, dev = data
    out = tmp_path_factory.mktemp("compare") / "out"
    cfg = finetune_cfg("classification", train, dev, out, "train.epochs=2", "eval.patience=2",
                       "eval.select_best_by=loss")
    with pytest.MonkeyPatch.context() as mp:
        recorder = Recorder(mp)
        summary = compare(cfg, sizes=SIZES, seeds=SEEDS, min_steps=MIN_STEPS, out=out, show_progress=False)
    return summary, recorder.calls, out, cfg


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]


def test_every_arm_size_and_seed_runs_once(compared):
    summary, calls, out, _ = compared
    planned = {(arm, size, seed) for arm in ARMS for size in USED for seed in SEEDS}
    assert len(calls) == len(planned) == summary["runs"] == 12
    ran = {("scratch" if c["scratch"] else "pretrained", c["train_limit"], c["seed"]) for c in calls}
    assert ran == planned
    for c in calls:
        arm = "scratch" if c["scratch"] else "pretrained"
        assert c["out"] == out / arm / f"n{c['train_limit']}-s{c['seed']}"
        assert len(c["train"]) == c["train_limit"]
    rows = _rows(out)
    assert {(r["arm"], r["size"], r["seed"]) for r in rows} == planned and len(rows) == 12
    assert not any(r["reused"] for r in rows) and summary["reused"] == 0


def test_the_same_seed_draws_the_same_subset_for_both_arms(compared):
    _, calls, _, _ = compared
    drawn = {("scratch" if c["scratch"] else "pretrained", c["train_limit"], c["seed"]): c["train"] for c in calls}
    for size in (8, 16):
        for seed in SEEDS:
            assert drawn["pretrained", size, seed] == drawn["scratch", size, seed]
        assert Counter(drawn["pretrained", size, SEEDS[0]]) != Counter(drawn["pretrained", size, SEEDS[1]])
    # the capped size is the whole training file, for every seed
    assert Counter(drawn["pretrained", 40, SEEDS[0]]) == Counter(drawn["scratch", 40, SEEDS[1]])


def test_sizes_over_the_training_set_are_capped_once(compared):
    summary, _, out, _ = compared
    assert summary["available"] == TRAIN
    assert [row["size"] for row in summary["table"]] == list(USED)
    assert summary["capped"] == {"60": TRAIN, "100": TRAIN}
    assert summary["sizes_requested"] == list(SIZES)
    assert "60 requested, 40 available; 100 requested, 40 available" in (out / "compare.md").read_text()


def test_small_sets_get_epochs_for_min_steps(compared):
    summary, _, out, _ = compared
    # batch 8, 2 configured epochs, 6 updates at least: 8 examples -> 6 epochs, 16 -> 3, 40 -> 2 (10 updates)
    expected = {8: 6.0, 16: 3.0, 40: 2}
    assert {row["size"]: row["epochs"] for row in summary["table"]} == expected
    for row in _rows(out):
        assert row["epochs"] == expected[row["size"]]
        assert row["steps"] == math.ceil(expected[row["size"]] * row["size"] / BATCH) >= MIN_STEPS
        saved = yaml.safe_load((out / row["arm"] / f"n{row['size']}-s{row['seed']}" / "config.yaml").read_text())
        assert saved["train"]["epochs"] == expected[row["size"]] and saved["run"]["seed"] == row["seed"]
        assert saved["eval"]["patience"] == (2 if row["size"] == 40 else 0)  # no early stop before min_steps


def test_available_examples_leave_out_held_out_validation(data, finetune_cfg, tmp_path):
    train, dev = data
    assert count_training_examples(finetune_cfg("classification", train, dev, tmp_path)) == TRAIN
    assert count_training_examples(finetune_cfg("classification", train, None, tmp_path)) == TRAIN - TRAIN // 10


def test_epochs_rule(finetune_cfg, data, tmp_path):
    cfg = finetune_cfg("classification", *data, tmp_path, "train.epochs=0.5", "train.batch_size=32")
    assert epochs_for(cfg, 8000, 100) == 0.5  # 125 updates: enough
    assert epochs_for(cfg, 4000, 100) == 1.0  # 63 updates: one whole pass makes 125
    assert epochs_for(cfg, 250, 100) == 13.0  # ceil(100 * 32 / 250)
    assert epochs_for(cfg, 250, 0) == 0.5
    by_steps = finetune_cfg("classification", *data, tmp_path, "train.epochs=null", "train.max_steps=20")
    assert epochs_for(by_steps, 250, 100) is None
    assert run_config(by_steps, "scratch", 250, 7, 100, tmp_path).train.max_steps == 100
    assert run_config(by_steps, "scratch", 250, 7, 10, tmp_path).train.max_steps == 20
    assert run_config(by_steps, "scratch", 250, 7, 100, tmp_path).eval.patience == 0
    assert run_config(by_steps, "scratch", 250, 7, 10, tmp_path).eval.patience == by_steps.eval.patience == 2
    assert by_steps.train.max_steps == 20 and by_steps.run.seed != 7  # a copy: the config is left as it was


def test_table_is_mean_and_std_of_runs_jsonl(compared):
    summary, _, out, _ = compared
    rows = _rows(out)
    for entry in summary["table"]:
        for arm in ARMS:
            values = [r["value"] for r in rows if r["arm"] == arm and r["size"] == entry["size"]]
            assert len(values) == len(SEEDS) == entry[arm]["n"]
            assert entry[arm]["mean"] == pytest.approx(sum(values) / len(values))
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            assert entry[arm]["std"] == pytest.approx(std)
        assert entry["gain"] == pytest.approx(entry["pretrained"]["mean"] - entry["scratch"]["mean"])
    for row in rows:
        results = json.loads((out / row["arm"] / f"n{row['size']}-s{row['seed']}" / "results.json").read_text())
        assert row["value"] == results["best_eval_loss"] and row["metric"] == "loss"
        assert row["steps"] == results["steps"] and row["train_seconds"] == results["train_seconds"]


def test_aggregate_by_hand():
    rows = [{"arm": arm, "size": size, "seed": seed, "value": value} for arm, size, seed, value in [
        ("pretrained", 10, 1, 0.8), ("pretrained", 10, 2, 0.9), ("pretrained", 10, 3, 0.7),
        ("scratch", 10, 1, 0.5), ("scratch", 10, 2, 0.6), ("scratch", 10, 3, 0.4),
        ("pretrained", 20, 1, 0.9), ("scratch", 20, 1, 0.75)]]
    table = aggregate(rows, ARMS, {10: 3.0, 20: 1.0})
    assert [e["size"] for e in table] == [10, 20]
    assert table[0]["pretrained"] == {"mean": pytest.approx(0.8), "std": pytest.approx(0.1), "n": 3}
    assert table[0]["scratch"] == {"mean": pytest.approx(0.5), "std": pytest.approx(0.1), "n": 3}
    assert table[0]["gain"] == pytest.approx(0.3) and table[0]["epochs"] == 3.0
    assert table[1]["scratch"] == {"mean": 0.75, "std": None, "n": 1}  # one seed: no spread
    assert table[1]["gain"] == pytest.approx(0.15)
    assert "gain" not in aggregate(rows, ("scratch",), {})[0]


def test_files_written_and_models_deleted(compared):
    summary, _, out, _ = compared
    assert summary["metric"] == "loss" and summary["output_dir"] == str(out)
    assert json.loads((out / "compare.json").read_text())["table"] == summary["table"]
    md = (out / "compare.md").read_text(encoding="utf-8").splitlines()
    assert "| labeled examples | epochs | pretrained | scratch | gain (pretrained - scratch) |" in md
    first = next(line for line in md if line.startswith("| 8 |"))
    row = summary["table"][0]
    assert f"{row['pretrained']['mean']:.4f} ± {row['pretrained']['std']:.4f}" in first
    assert first.rstrip(" |").endswith(f"{row['gain']:+.4f}")
    assert (out / "compare.png").stat().st_size > 5000
    for run in (out / arm / f"n{size}-s{seed}" for arm in ARMS for size in USED for seed in SEEDS):
        assert (run / "results.json").is_file() and (run / "metrics.jsonl").is_file()
        assert not (run / "checkpoints").exists() and not (run / "final").exists()


def test_resume_reuses_finished_runs_and_overwrite_reruns(data, finetune_cfg, tmp_path):
    out = tmp_path / "out-compare"
    cfg = finetune_cfg("classification", *data, tmp_path / "out", "train.epochs=1", "eval.patience=0")

    def run(**kwargs) -> tuple[dict, list[dict]]:
        with pytest.MonkeyPatch.context() as mp:
            recorder = Recorder(mp)
            summary = compare(cfg, **{"sizes": (8,), "seeds": (5,), "min_steps": 2, "show_progress": False,
                                      **kwargs})  # out: run.output_dir + "-compare"
        return summary, recorder.calls

    first, calls = run()
    assert len(calls) == 2 and first["metric"] == "accuracy"  # the task's main metric when select_best_by is null
    (out / "pretrained" / "n8-s5" / "results.json").unlink()  # as if killed during that run
    again, calls = run()
    assert [c["out"].parent.name for c in calls] == ["pretrained"]
    assert [r["reused"] for r in _rows(out)] == [False, True]
    assert again["table"] == first["table"]  # the same seed gives the same score
    resumed, calls = run()
    assert calls == [] and resumed["reused"] == 2 and resumed["table"] == first["table"]
    _, calls = run(overwrite=True)
    assert len(calls) == 2 and not any(r["reused"] for r in _rows(out))
    _, calls = run(min_steps=3)  # other settings (epochs 3, not 2): nothing to reuse
    assert len(calls) == 2
    finished = (out / "runs.jsonl").read_text()
    with pytest.MonkeyPatch.context() as mp:  # a rerun stopped at its second run leaves the finished files alone
        real = api.finetune
        calls = []

        def stops_at_the_second(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        mp.setattr(api, "finetune", stops_at_the_second)
        with pytest.raises(KeyboardInterrupt):
            compare(cfg, sizes=(8,), seeds=(6,), min_steps=2, show_progress=False)
    assert (out / "runs.jsonl").read_text() == finished


def test_unknown_arm_is_a_clear_error(data, finetune_cfg, tmp_path):
    cfg = finetune_cfg("classification", *data, tmp_path / "out")
    with pytest.raises(PlmError, match=r"unknown arm\(s\) \['static'\]; choose from: pretrained, scratch"):
        compare(cfg, arms=("pretrained", "static"), show_progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out-compare").exists()
    assert set(compare_module.ARMS) == set(ARMS)


def test_finetune_train_limit(finetune_cfg, task_files, tmp_path, monkeypatch):
    train, dev = task_files("classification", tmp_path / "data", n_train=TRAIN, n_dev=DEV)
    limit, seed = 6, 13
    picked = set(random.Random(seed).sample(range(TRAIN), limit))
    rare = next(i for i in range(TRAIN) if i not in picked)
    lines = train.read_text().splitlines()  # a header, then one row per example
    text = lines[rare + 1].split("\t")[0]
    lines[rare + 1] = f"{text}\tmaybe"  # the only row of a third label, outside the drawn subset
    train.write_text("\n".join(lines) + "\n")
    recorder = Recorder(monkeypatch)
    cfg = finetune_cfg("classification", train, dev, tmp_path / "run", "train.epochs=2", f"run.seed={seed}")
    result = api.finetune(cfg, show_progress=False, train_limit=limit)
    drawn = recorder.calls[0]["train"]
    assert len(drawn) == limit
    rows = [tuple(line.split("\t")) for line in lines[1:]]
    assert Counter((t, lab[0]) for t, lab in drawn) <= Counter(rows)
    assert "maybe" not in {lab for _, labels in drawn for lab in labels}
    assert result.metrics["steps"] == math.ceil(2 * limit / BATCH)
    config = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert sorted(config["id2label"].values()) == ["maybe", "no", "yes"]  # the label set of the whole file


@pytest.mark.parametrize(("seeds", "shown"), [(0, "got 0"), ([3, 3], r"got \[3, 3\]")])
def test_bad_seeds_are_echoed_as_given(seeds, shown, data, finetune_cfg, tmp_path):
    cfg = finetune_cfg("classification", *data, tmp_path / "out")
    with pytest.raises(PlmError, match=rf"seeds must be a count >= 1 or distinct numbers in \[0, 2\*\*32 - 1\]; {shown}"):
        compare(cfg, seeds=seeds, show_progress=False)


def test_a_seed_count_that_runs_past_the_largest_seed_names_run_seed(data, finetune_cfg, tmp_path):
    cfg = finetune_cfg("classification", *data, tmp_path / "out", f"run.seed={2**32 - 2}")
    with pytest.raises(PlmError, match=r"seeds 3 counts up from run.seed \(4294967294\) past 2\*\*32 - 1; lower "
                                       r"run.seed or give the seeds themselves"):
        compare(cfg, seeds=3, show_progress=False)


def test_a_stopped_run_says_to_run_the_same_compare_again(data, finetune_cfg, tmp_path, monkeypatch):
    """Not `plm finetune ... --resume`: that would train the run on the whole file (no train_limit) and compare
    would then reuse the wrong score."""
    from plmkit.errors import Interrupted

    def stopped(cfg, **kwargs):
        assert kwargs["resumable"] is False
        raise Interrupted("stopped by SIGINT at step 2 of 9; checkpoint c written")

    monkeypatch.setattr(api, "finetune", stopped)
    cfg = finetune_cfg("classification", *data, tmp_path / "out")
    with pytest.raises(Interrupted, match=r"^pretrained n=8 seed=5: stopped by SIGINT at step 2 of 9; checkpoint c "
                                          r"written; run the same plm compare command again"):
        compare(cfg, sizes=(8,), seeds=(5,), min_steps=2, show_progress=False)
