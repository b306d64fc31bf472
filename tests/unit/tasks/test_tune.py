"""plmkit.tune on the tiny BERT and tiny classification data: trials run and write their outputs, best.yaml is the
best trial's config, drawn values lie in the space, pruning stops a trial early and leaves nothing behind, a
diverging trial fails while the search goes on, other errors stop it, and --param syntax errors are clear."""

from __future__ import annotations

import gc
import json
import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from transformers import PreTrainedModel

from plmkit import api, load_config
from plmkit.errors import ConfigError, Interrupted, PlmError
from plmkit.training.logging import read_metrics
from plmkit.tune import build_space, default_space, metric_key, parse_param, tune

TRAIN, BATCH = 64, 8
SEARCH = ["lr=1e-3:1e-2:log"]
"""The default space with a learning rate the tiny model learns at (epochs 1..3, batch 8..64, warm-up 0..0.2)."""


def _get(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _in(dist, value) -> bool:
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    if isinstance(dist, IntDistribution) and not isinstance(value, int):
        return False
    return dist.low <= value <= dist.high


def _live_models() -> int:
    gc.collect()
    return sum(type(o).__name__.startswith("Bert") and isinstance(o, PreTrainedModel) for o in gc.get_objects())


class PruneTrial:
    """An optuna pruner that prunes one trial at its first evaluation and lets every other one finish."""

    def __init__(self, number: int):
        self.number = number

    def prune(self, study, trial) -> bool:
        return trial.number == self.number


@pytest.fixture(scope="module")
def data(task_files, tmp_path_factory) -> tuple[Path, Path]:
    return task_files("classification", tmp_path_factory.mktemp("tune-data"), n_train=TRAIN, n_dev=24)


@pytest.fixture(scope="module")
def searched(finetune_cfg, data, tmp_path_factory):
    """(cfg, result, out) of one 3-trial search over the default space (3 epochs at most)."""
    folder = tmp_path_factory.mktemp("tune")
    cfg = finetune_cfg("classification", *data, folder / "run", "train.epochs=3")
    result = tune(cfg, trials=3, space=SEARCH, show_progress=False)
    return cfg, result, folder / "run-tune"


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "trials.jsonl").read_text(encoding="utf-8").splitlines()]


# --- a finished search -------------------------------------------------------------------------------------------


def test_search_writes_its_outputs(searched):
    _, result, out = searched
    assert result["output_dir"] == str(out) and result["metric"] == "accuracy" and result["direction"] == "maximize"
    assert result["trials"] == {"complete": 3, "pruned": 0, "failed": 0}
    for name in ("trials.jsonl", "results.md", "best.yaml", "tune.png", "config.yaml"):
        assert (out / name).is_file(), name
    assert (out / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["best_model"] == str(out / f"trial-{result['best_trial']:03d}" / "final")
    assert (Path(result["best_model"]) / "model.safetensors").is_file()
    for n in range(3):  # only the best trial keeps final/; nobody keeps checkpoints/
        trial = out / f"trial-{n:03d}"
        assert (trial / "config.yaml").is_file() and (trial / "metrics.jsonl").is_file()
        assert (trial / "final").exists() == (n == result["best_trial"])
        assert not (trial / "checkpoints").exists()
    json.dumps(result)  # one JSON line for the CLI


def test_trials_table_is_sorted_and_matches_the_runs(searched):
    _, result, out = searched
    rows = _rows(out)
    assert [r["number"] for r in rows] == [0, 1, 2] and all(r["state"] == "complete" for r in rows)
    for r in rows:  # the value is the trial's own best validation accuracy
        results = json.loads((out / f"trial-{r['number']:03d}" / "results.json").read_text())
        assert r["value"] == results["best_eval_accuracy"] and r["step"] == results["steps"] and r["seconds"] > 0
    assert result["best_value"] == max(r["value"] for r in rows)
    table = [line for line in (out / "results.md").read_text().splitlines() if line.startswith("| ")][1:]
    values = [float(line.split("|")[3]) for line in table]
    assert len(table) == 3 and values == sorted(values, reverse=True) and values[0] == result["best_value"]


def test_sampled_values_lie_in_the_space(searched):
    cfg, _, out = searched
    space = build_space(cfg, SEARCH)
    assert set(space) == {"train.lr", "train.batch_size", "train.epochs", "train.warmup_ratio"}
    rows = _rows(out)
    for r in rows:
        assert set(r["params"]) == set(space)
        trial_cfg = load_config(out / f"trial-{r['number']:03d}" / "config.yaml")
        for key, value in r["params"].items():
            assert _in(space[key], value), (key, value)
            assert _get(trial_cfg, key) == value, key
        assert trial_cfg.run.output_dir == str(out / f"trial-{r['number']:03d}")
        steps = r["params"]["train.epochs"] * math.ceil(TRAIN / r["params"]["train.batch_size"])
        assert r["step"] == steps  # the drawn epochs and batch size were trained with
    assert len({r["params"]["train.lr"] for r in rows}) == 3


def test_best_yaml_is_the_best_trials_config(searched):
    cfg, result, out = searched
    best = load_config(out / "best.yaml")
    for key, value in result["best_params"].items():
        assert _get(best, key) == value, key
    assert best.run.output_dir == cfg.run.output_dir  # `plm finetune best.yaml` trains into the original folder
    assert best.init.from_ == cfg.init.from_ and best.task.train == cfg.task.train
    trial_cfg = load_config(out / f"trial-{result['best_trial']:03d}" / "config.yaml")
    trial_cfg.run.output_dir = best.run.output_dir
    assert best == trial_cfg


def test_an_earlier_search_is_kept_unless_overwrite(searched):
    cfg, _, out = searched
    with pytest.raises(PlmError, match="already holds a search"):
        tune(cfg, trials=1, space=SEARCH, show_progress=False)
    assert len(_rows(out)) == 3
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ConfigError, match=rf"^--param train\.batch_size: .*must be > 0.*{out / 'config.yaml'}"):
        tune(cfg, trials=1, space=["batch_size=0,16"], overwrite=True, show_progress=False)  # a typo: keeps it all
    assert sorted(p.name for p in out.iterdir()) == before and len(_rows(out)) == 3


def test_a_lora_setting_without_lora_is_refused(finetune_cfg, data, tmp_path):
    cfg = finetune_cfg("classification", *data, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"--param adapter\.r: only LoRA uses it.*add --lora"):
        tune(cfg, trials=1, space=["lora_r=4,8"], show_progress=False)
    assert not (tmp_path / "run-tune").exists()


# --- pruning, divergence, errors ---------------------------------------------------------------------------------


def test_a_pruned_trial_stops_early_and_leaves_nothing_behind(finetune_cfg, data, tmp_path):
    cfg = finetune_cfg("classification", *data, tmp_path / "run")  # batch 8, 2 epochs: evaluations at 8 and 16
    live = _live_models()
    result = tune(cfg, trials=2, space=["lr=3e-3,1e-2", "batch_size=off", "epochs=off", "warmup_ratio=off"],
                  pruner=PruneTrial(0), show_progress=False)
    assert result["trials"] == {"complete": 1, "pruned": 1, "failed": 0} and result["best_trial"] == 1
    out = tmp_path / "run-tune"
    pruned, finished = _rows(out)
    full = 2 * TRAIN // BATCH
    assert pruned["state"] == "pruned" and pruned["value"] is None and pruned["step"] == full // 2
    evals = [r for r in read_metrics(out / "trial-000" / "metrics.jsonl") if "eval_accuracy" in r]
    assert [r["step"] for r in evals] == [full // 2] and evals[0]["eval_accuracy"] == pruned["last_score"]
    assert not (out / "trial-000" / "final").exists() and not (out / "trial-000" / "results.json").exists()
    assert finished["state"] == "complete" and finished["step"] == full
    assert _live_models() <= live  # no model kept by a pruned trial
    # the trial after the pruned one is exactly what a fresh run with its settings gives
    again = load_config(out / "trial-001" / "config.yaml", [f"run.output_dir={tmp_path / 'again'}"])
    assert api.finetune(again, show_progress=False).metrics["best_eval_accuracy"] == finished["value"]
    assert "pruned" in (out / "results.md").read_text()


def test_a_stopped_search_keeps_the_best_of_the_trials_that_finished(finetune_cfg, data, tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM during trial 1 (the loop raises Interrupted): the search ends with the signal's status,
    and best.yaml, results.md and trials.jsonl hold trial 0."""
    from plmkit import api

    real, calls = api.finetune, []

    def stopped_on_the_second(cfg, **kwargs):
        calls.append(cfg)
        if len(calls) == 2:
            raise Interrupted("stopped by SIGTERM at step 1 of 9; checkpoint c written", exit_code=143)
        return real(cfg, **kwargs)

    monkeypatch.setattr(api, "finetune", stopped_on_the_second)
    cfg = finetune_cfg("classification", *data, tmp_path / "run")
    with pytest.raises(Interrupted, match=r"^trial 1: stopped by SIGTERM.*the search stopped") as stopped:
        tune(cfg, trials=3, space=SEARCH, show_progress=False)
    assert stopped.value.exit_code == 143
    out = tmp_path / "run-tune"
    rows = {r["number"]: r for r in _rows(out)}
    assert rows[0]["state"] == "complete" and rows[1]["state"] == "failed" and "SIGTERM" in rows[1]["error"]
    assert (out / "best.yaml").is_file() and (out / "results.md").is_file()


def test_a_signal_in_a_trials_last_step_counts_the_trial_and_stops_the_search(finetune_cfg, data, tmp_path,
                                                                             monkeypatch):
    """The loop lets the run finish (final/ written) and raises Interrupted with the result: the trial is complete,
    no further trial starts, and the search ends with the signal's status."""
    from plmkit import api

    real, calls = api.finetune, []

    def signal_in_the_last_step_of_the_second(cfg, **kwargs):
        calls.append(cfg)
        result = real(cfg, **kwargs)
        if len(calls) == 2:
            raise Interrupted("stopped by SIGTERM during the last step; the run is complete", 143, completed=result)
        return result

    monkeypatch.setattr(api, "finetune", signal_in_the_last_step_of_the_second)
    cfg = finetune_cfg("classification", *data, tmp_path / "run")
    with pytest.raises(Interrupted, match=r"^trial 1: a stop signal came during its last step, so it finished; the "
                                          r"search stopped after it") as stopped:
        tune(cfg, trials=4, space=SEARCH, show_progress=False)
    assert stopped.value.exit_code == 143 and len(calls) == 2
    rows = _rows(tmp_path / "run-tune")
    assert [r["state"] for r in rows] == ["complete", "complete"] and rows[1]["value"] is not None
    assert (tmp_path / "run-tune" / "best.yaml").is_file()


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # BruteForceSampler
def test_a_diverging_trial_fails_and_the_search_goes_on(finetune_cfg, data, tmp_path):
    cfg = finetune_cfg("classification", *data, tmp_path / "run")
    result = tune(cfg, trials=2, space=["lr=1e30,3e-3", "batch_size=off", "epochs=off", "warmup_ratio=off"],
                  sampler=optuna.samplers.BruteForceSampler(seed=0), show_progress=False)
    assert result["trials"] == {"complete": 1, "pruned": 0, "failed": 1}
    assert result["best_params"] == {"train.lr": 3e-3}
    failed = next(r for r in _rows(tmp_path / "run-tune") if r["state"] == "failed")
    assert failed["params"] == {"train.lr": 1e30} and "the loss became nan" in failed["error"]
    assert "the loss became nan" in (tmp_path / "run-tune" / "results.md").read_text()


def test_when_every_trial_diverges_the_search_fails(finetune_cfg, data, tmp_path):
    cfg = finetune_cfg("classification", *data, tmp_path / "run", "train.epochs=1")
    with pytest.raises(PlmError, match="no trial completed"):
        tune(cfg, trials=1, space=["lr=1e29,1e30", "batch_size=off", "warmup_ratio=off"], show_progress=False)
    assert [r["state"] for r in _rows(tmp_path / "run-tune")] == ["failed"]


def test_a_data_error_stops_the_search(finetune_cfg, data, tmp_path):
    cfg = finetune_cfg("classification", tmp_path / "missing.tsv", data[1], tmp_path / "run")
    with pytest.raises(PlmError, match=r"^trial 0 \(train.lr=.*missing.tsv.*the search stopped"):
        tune(cfg, trials=3, show_progress=False)
    assert [r["state"] for r in _rows(tmp_path / "run-tune")] == ["failed"]  # no second trial was started


def test_the_draws_are_seeded(finetune_cfg, data, tmp_path):
    """The same run.seed draws the same values (checked on trials that stop before training: no data)."""
    def first_draw(seed: int, name: str) -> dict:
        cfg = finetune_cfg("classification", tmp_path / "missing.tsv", data[1], tmp_path / name, f"run.seed={seed}")
        with pytest.raises(PlmError):
            tune(cfg, trials=1, show_progress=False)
        return _rows(tmp_path / f"{name}-tune")[0]["params"]

    assert first_draw(13, "a") == first_draw(13, "b") != first_draw(14, "c")


def test_an_out_of_range_space_stops_before_trial_0(finetune_cfg, data, tmp_path):
    cfg = finetune_cfg("classification", *data, tmp_path / "run")
    for spec, message in (("warmup_ratio=0.0:1.5", "train.warmup_ratio must be in"),
                          ("train.nope=1:2", "unknown config key 'train.nope'"),
                          ("batch_size=8.0:64.0", "could not be converted to Integer")):
        with pytest.raises(ConfigError, match=rf"^--param .*{message}"):
            tune(cfg, trials=1, space=[spec], show_progress=False, overwrite=True)
    assert not list((tmp_path / "run-tune").glob("trial-*"))


# --- the space ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "key", "dist"), [
    ("lr=1e-5:1e-3:log", "train.lr", FloatDistribution(1e-5, 1e-3, log=True)),
    ("warmup_ratio=0:0.1", "train.warmup_ratio", FloatDistribution(0.0, 0.1)),
    ("epochs=1:3", "train.epochs", IntDistribution(1, 3)),
    ("batch_size=16,32", "train.batch_size", CategoricalDistribution([16, 32])),
    ("lora_r=4,8", "adapter.r", CategoricalDistribution([4, 8])),
    ("train.lr_schedule=linear,cosine", "train.lr_schedule", CategoricalDistribution(["linear", "cosine"])),
    ("train.head_lr=1e-4, 1e-3", "train.head_lr", CategoricalDistribution([1e-4, 1e-3])),
    ("epochs=off", "train.epochs", None),
])
def test_parse_param(text, key, dist):
    assert parse_param(text) == (key, dist)


@pytest.mark.parametrize(("text", "message"), [
    ("lr", "must look like NAME=SPEC"),
    ("lr=", "must look like NAME=SPEC"),
    ("lr=3e-4", "to fix one value use --set train.lr=3e-4"),
    ("lr=1e-3:1e-5", "LOW must be below HIGH"),
    ("lr=0:1e-3:log", "needs LOW > 0"),
    ("lr=1e-5:1e-3:ln", "LOW:HIGH or LOW:HIGH:log"),
    ("lr=a:b", "'a' is not a number"),
    ("batch_size=8,8", "two or more different choices"),
    ("rate=1:2", "unknown name 'rate'"),
    ("run.output_dir=a,b", "use --out"),
])
def test_bad_param_syntax_is_a_clear_error(text, message):
    with pytest.raises(ConfigError, match="^--param ") as e:
        parse_param(text)
    assert message in str(e.value)


def test_default_space_follows_the_config(finetune_cfg, data, tmp_path):
    cfg = finetune_cfg("classification", *data, tmp_path, "train.epochs=3")
    assert default_space(cfg) == {"train.lr": FloatDistribution(1e-5, 1e-3, log=True),
                                  "train.batch_size": CategoricalDistribution([8, 16, 32, 64]),
                                  "train.warmup_ratio": FloatDistribution(0.0, 0.2),
                                  "train.epochs": IntDistribution(1, 3)}
    one = finetune_cfg("classification", *data, tmp_path, "train.epochs=1", "adapter.name=lora")
    assert "train.epochs" not in default_space(one)
    assert default_space(one)["adapter.r"] == CategoricalDistribution([4, 8, 16, 32])
    assert set(build_space(one, ["lora_r=off", "warmup_ratio=off"])) == {
        "train.lr", "train.batch_size"}
    with pytest.raises(ConfigError, match="search space is empty"):
        build_space(one, ["lr=off", "batch_size=off", "warmup_ratio=off", "lora_r=off"])


@pytest.mark.parametrize(("task", "overrides", "key"), [
    ("classification", (), "eval_accuracy"), ("multilabel", (), "eval_micro_f1"), ("ner", (), "eval_f1"),
    ("classification", ("eval.select_best_by=macro_f1",), "eval_macro_f1"),
    ("classification", ("eval.select_best_by=eval_loss",), "eval_loss"),
])
def test_metric_key(finetune_cfg, tmp_path, task, overrides, key):
    cfg = finetune_cfg(task, tmp_path / "train", None, tmp_path, *overrides)
    assert metric_key(cfg) == key
