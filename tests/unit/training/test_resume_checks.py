"""What a resumed run checks before it trains: its config against the run's config.yaml, a run already at its
steps, a damaged newest checkpoint; and which tokenizer a run folder's tokenizer/ may lend a later run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from plmkit.api import prepare_data, pretrain, train_tokenizer_for
from plmkit.errors import ConfigError, DataError, PlmError, TrainingError

COMMON = ["train.lr_schedule=constant", "train.save_every=3", "train.eval_every=0"]


def _run(debug_cfg, out, *sets, resume=False, objective="mlm"):
    return pretrain(debug_cfg(objective, out, *COMMON, *sets), resume=resume, show_progress=False)


@pytest.fixture(scope="module")
def six_steps(tmp_path_factory, debug_cfg):
    """A finished 6-step run (checkpoints at steps 3 and 6), copied by each test that changes it."""
    out = tmp_path_factory.mktemp("six") / "run"
    _run(debug_cfg, out, "train.max_steps=6")
    return out


@pytest.fixture
def run_copy(six_steps, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(six_steps, out)
    config = (out / "config.yaml").read_text().replace(str(six_steps), str(out))
    (out / "config.yaml").write_text(config)
    return out


def test_a_changed_setting_that_decides_what_is_trained_is_refused_and_nothing_written(run_copy, debug_cfg):
    before = (run_copy / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"--resume: .* cannot go on with other run\.seed, model\.hidden_size "
                                          r"\(run\.seed: 13 in its config\.yaml, 99 now; model\.hidden_size: 32"):
        _run(debug_cfg, run_copy, "train.max_steps=8", "model.hidden_size=64", "run.seed=99", resume=True)
    assert (run_copy / "config.yaml").read_text() == before


def test_a_changed_step_count_and_rate_are_listed_and_the_run_goes_on(run_copy, debug_cfg, capsys, squash):
    result = _run(debug_cfg, run_copy, "train.max_steps=8", "train.lr=1e-4", resume=True)
    assert result.metrics["steps"] == 8
    assert squash("resuming with changed settings: train.max_steps 6 -> 8, train.lr 0.002 -> 0.0001") in squash(
        capsys.readouterr().err)


def test_a_run_at_its_steps_is_left_as_it_is(run_copy, debug_cfg, capsys):
    results = (run_copy / "results.json").read_text()
    card = (run_copy / "final" / "README.md").read_text()
    weights = (run_copy / "final" / "model.safetensors").stat().st_mtime_ns
    result = _run(debug_cfg, run_copy, "train.max_steps=6", resume=True)
    assert "nothing to train" in capsys.readouterr().err
    assert result.metrics == json.loads(results)
    assert (run_copy / "results.json").read_text() == results
    assert (run_copy / "final" / "README.md").read_text() == card
    assert (run_copy / "final" / "model.safetensors").stat().st_mtime_ns == weights


@pytest.mark.parametrize("damage", ["random_states_0.pkl", "model.safetensors", "trainer_state.json"])
def test_a_damaged_newest_checkpoint_gives_way_to_the_one_before(damage, run_copy, six_steps, debug_cfg, metrics,
                                                                 capsys, squash):
    """Truncated random states are the case accelerate itself lets pass (it logs them at INFO level and goes on):
    the run would resume with other draws. Resuming from step 3 instead repeats the unbroken run's losses."""
    newest = run_copy / "checkpoints" / "step-000006"
    path = newest / damage
    path.write_bytes(path.read_bytes()[:100])
    _run(debug_cfg, run_copy, "train.max_steps=6", resume=True)
    err = squash(capsys.readouterr().err)  # rich wraps long lines, paths too
    assert squash(f"{newest} cannot be loaded") in err and squash("resuming from step-000003") in err
    assert [r["loss"] for r in metrics(run_copy)] == [r["loss"] for r in metrics(six_steps)]


def test_no_loadable_checkpoint_is_one_error(run_copy, debug_cfg):
    for folder in (run_copy / "checkpoints").glob("step-*"):
        (folder / "optimizer.bin").unlink()
    with pytest.raises(TrainingError, match=r"step-000006 cannot be loaded \(FileNotFoundError.*no checkpoint "
                                            r"before it loads either.*--overwrite"):
        _run(debug_cfg, run_copy, "train.max_steps=6", resume=True)


def test_a_tokenizer_left_from_other_settings_is_not_used(tmp_path, debug_cfg, capsys, squash):
    out = tmp_path / "run"
    train_tokenizer_for(debug_cfg("mlm", out, "tokenizer.train.vocab_size=280"), show_progress=False)
    capsys.readouterr()
    _run(debug_cfg, out, "train.max_steps=1")
    assert squash(capsys.readouterr().err).count(squash("not made from this config's data and tokenizer settings: "
                                                         "training the configured tokenizer in its place")) == 1
    assert json.loads((out / "final" / "config.json").read_text())["vocab_size"] == 300
    assert len(json.loads((out / "final" / "tokenizer.json").read_text())["model"]["vocab"]) == 300


def test_a_tokenizer_left_from_the_same_settings_is_used(tmp_path, debug_cfg, capsys):
    out = tmp_path / "run"
    train_tokenizer_for(debug_cfg("mlm", out), show_progress=False)
    capsys.readouterr()
    _run(debug_cfg, out, "train.max_steps=1")
    assert "not made from this config" not in capsys.readouterr().err


@pytest.mark.parametrize("how", ["run", "overwrite", "tokenizer-train", "run-with-tokenizer-pretrained"])
def test_a_tokenizer_plmkit_did_not_write_is_never_deleted_or_written_over(how, tmp_path, debug_cfg):
    """A user's own tokenizer/ in run.output_dir (no stamp): a run, --overwrite and `plm tokenizer train` all stop
    before they touch it."""
    out = tmp_path / "run"
    train_tokenizer_for(debug_cfg("mlm", out), show_progress=False)
    (out / "tokenizer" / "plmkit_made_from.json").unlink()
    before = {p.name: p.read_bytes() for p in (out / "tokenizer").iterdir()}
    pattern = r"run/tokenizer holds a tokenizer without plmkit's stamp.*move it out of run\.output_dir"
    with pytest.raises(PlmError, match=pattern):
        if how == "tokenizer-train":
            train_tokenizer_for(debug_cfg("mlm", out, "tokenizer.train.vocab_size=280"), show_progress=False)
        elif how == "run-with-tokenizer-pretrained":  # it names the tokenizer, but the run would save over it
            pretrain(debug_cfg("mlm", out, "train.max_steps=1", f"tokenizer.pretrained={out / 'tokenizer'}"),
                     show_progress=False)
        else:
            pretrain(debug_cfg("mlm", out, "train.max_steps=1"), overwrite=how == "overwrite", show_progress=False)
    assert {p.name: p.read_bytes() for p in (out / "tokenizer").iterdir()} == before


@pytest.mark.parametrize("stage", ["tokenizer-train", "data-prepare"])
def test_a_runs_tokenizer_is_not_replaced_by_a_stage_run_with_other_settings(stage, run_copy, debug_cfg):
    """Its checkpoints were trained with it: a resume on another vocabulary would train on wrong ids."""
    before = (run_copy / "tokenizer" / "tokenizer.json").read_bytes()
    cfg = debug_cfg("mlm", run_copy, *COMMON, "tokenizer.train.vocab_size=280")
    with pytest.raises(PlmError, match=r"holds a run \(metrics\.jsonl, checkpoints, final\) whose tokenizer/ was "
                                       r"made from other data or tokenizer settings.*another folder"):
        (train_tokenizer_for if stage == "tokenizer-train" else prepare_data)(cfg, show_progress=False)
    assert (run_copy / "tokenizer" / "tokenizer.json").read_bytes() == before
    same = train_tokenizer_for(debug_cfg("mlm", run_copy, *COMMON), show_progress=False)  # its own settings: kept
    assert (run_copy / "tokenizer" / "tokenizer.json").read_bytes() == before and len(same) == 300


@pytest.mark.parametrize("key", ["tokenizer.pretrained", "init.from"])
def test_tokenizer_train_refuses_a_config_whose_tokenizer_is_given(key, tmp_path, debug_cfg):
    with pytest.raises(ConfigError, match=rf"{key} is set, so the run uses that tokenizer and none is trained"):
        train_tokenizer_for(debug_cfg("mlm", tmp_path / "run", f"{key}={tmp_path}"), show_progress=False)
    assert not (tmp_path / "run").exists()


def test_a_tokenizer_that_leaves_most_of_the_text_unknown_is_refused(tmp_path, debug_cfg):
    english = tmp_path / "en"
    train_tokenizer_for(debug_cfg("mlm", english), show_progress=False)
    chinese = json.dumps([str(Path(__file__).parents[2] / "fixtures" / "tiny_zh.txt")])
    cfg = debug_cfg("mlm", tmp_path / "zh", f"tokenizer.pretrained={english / 'tokenizer'}", f"data.paths={chinese}")
    with pytest.raises(DataError, match=r"\d+% of the training tokens are the unknown token '\[UNK\]'.*does not "
                                        r"cover this text"):
        pretrain(cfg, show_progress=False)


def test_no_validation_fraction_trains_on_everything_and_evaluates_nothing(tmp_path, debug_cfg, metrics):
    result = _run(debug_cfg, tmp_path / "run", "train.max_steps=3", "data.validation_fraction=0")
    assert result.metrics["steps"] == 3 and "eval_loss" not in result.metrics
    assert not any("eval_loss" in row for row in metrics(tmp_path / "run"))
    assert json.loads((tmp_path / "run" / "data_report.json").read_text())["validation_documents"] == 0


def test_strip_accents_left_null_keeps_the_tokenizer_key_it_had_before_the_setting(debug_cfg, tmp_path):
    """Runs and cached tokenizers from before `tokenizer.train.strip_accents` keep matching (a new key would retrain
    WordPiece, which the trainer does not repeat exactly, and refuse the runs' own tokenizers)."""
    import dataclasses
    import hashlib

    from plmkit.api import _tokenizer_key
    from plmkit.data.pack import KEYED_SETTINGS, input_fingerprint

    cfg = debug_cfg("mlm", tmp_path / "run")
    before = dataclasses.asdict(cfg.tokenizer)
    del before["train"]["strip_accents"]
    parts = {"input": input_fingerprint(cfg.data), "seed": cfg.run.seed, "arch": cfg.model.arch,
             "data": {k: getattr(cfg.data, k) for k in KEYED_SETTINGS}, "tokenizer": before}
    old = hashlib.blake2b(json.dumps(parts, sort_keys=True, default=str).encode(), digest_size=12).hexdigest()
    assert _tokenizer_key(cfg) == old
    assert _tokenizer_key(debug_cfg("mlm", tmp_path / "run", "tokenizer.train.strip_accents=false")) != old


def test_a_t5_run_made_by_an_earlier_plmkit_keeps_its_tokenizer(tmp_path, debug_cfg, capsys, squash):
    """T5 tokenizers got </s> at the end of every text, and a new key with it: a run folder whose stamp carries the
    key an earlier plmkit gave the same settings is still its own, for data prepare and for a resume."""
    from plmkit.api import _tokenizer_key

    out = tmp_path / "run"
    cfg = debug_cfg("span_corruption", out, *COMMON, "train.max_steps=2")
    pretrain(cfg, show_progress=False)
    stamp = out / "tokenizer" / "plmkit_made_from.json"
    earlier = _tokenizer_key(cfg, earlier=True)
    assert earlier != _tokenizer_key(cfg)
    stamp.write_text(json.dumps({"key": earlier}))
    capsys.readouterr()
    prepare_data(cfg, show_progress=False)
    assert squash("was made from these settings by an earlier plmkit") in squash(capsys.readouterr().err)
    pretrain(debug_cfg("span_corruption", out, *COMMON, "train.max_steps=3"), resume=True, show_progress=False)
    assert json.loads(stamp.read_text())["key"] == earlier  # the stamp still says what made it
