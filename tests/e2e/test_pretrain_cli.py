"""`plm pretrain` on every configs/debug/*.yaml (a glob, so new configs are picked up), and the smaller
commands: `plm tokenizer train`, `plm data prepare`, `plm config show|check`, `plm list objectives`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from plmkit import load_config
from plmkit.config import to_dict
from plmkit.models.transformer import AUTO_CLASSES
from plmkit.objectives import objectives
from plmkit.training.logging import read_metrics

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

DEBUG_CONFIGS = sorted((ROOT / "configs" / "debug").glob("*.yaml"))


def _sets(**values) -> list[str]:
    return [a for key, value in values.items() for a in ("--set", f"{key.replace('__', '.')}={value}")]


@pytest.mark.parametrize("config", DEBUG_CONFIGS, ids=lambda p: p.stem)
def test_pretrain_debug_config(config, plm, last_json, tmp_path, e2e_cache):
    out = tmp_path / "run"
    proc = plm("pretrain", config, "-q", *_sets(run__output_dir=out, data__cache_dir=e2e_cache))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc.stdout)
    assert {"output_dir", "steps", "eval_loss"} <= result.keys()
    cfg = load_config(config)
    assert result["output_dir"] == str(out) and result["steps"] == cfg.train.max_steps
    for name in ("config.yaml", "metrics.jsonl", "checkpoints", "final", "loss.png"):
        assert (out / name).exists(), name
    saved = to_dict(load_config(out / "config.yaml"))  # the resolved config, saved with the run
    assert saved["train"] == to_dict(cfg)["train"] and saved["run"]["output_dir"] == str(out)

    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, cfg.train.max_steps + 1))
    assert rows[-1]["loss"] < rows[0]["loss"], [r["loss"] for r in rows]
    assert result["eval_loss"] < result["initial_eval_loss"]

    kind = objectives.get(cfg.objective.name).factory.model_kind
    _, info = AUTO_CLASSES[kind].from_pretrained(out / "final", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_tokenizer_train(plm, last_json, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    config = ROOT / "configs" / "debug" / "mlm.yaml"
    proc = plm("tokenizer", "train", config, "-q", *_sets(run__output_dir=out, data__cache_dir=cache))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc.stdout)
    assert result["tokenizer_dir"] == str(out / "tokenizer")
    assert 0 < result["vocab_size"] <= load_config(config).tokenizer.train.vocab_size
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    from transformers import AutoTokenizer

    assert len(AutoTokenizer.from_pretrained(out / "tokenizer")) == result["vocab_size"]


def test_data_prepare_reuses_its_cache(plm, last_json, tmp_path):
    sets = _sets(run__output_dir=tmp_path / "run", data__cache_dir=tmp_path / "cache")
    config = ROOT / "configs" / "debug" / "clm.yaml"
    first = plm("data", "prepare", config, "-q", *sets)
    assert first.returncode == 0, first.stderr[-3000:]
    result = last_json(first.stdout)
    folder = Path(result["shards"])
    assert folder.parent == tmp_path / "cache"
    assert result["train_tokens"] > 0 and result["validation_tokens"] > 0
    written = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert "meta.json" in written and any(name.endswith(".bin") for name in written)
    tokenizer = tmp_path / "run" / "tokenizer" / "tokenizer.json"
    tokenizer_mtime = tokenizer.stat().st_mtime_ns

    second = plm("data", "prepare", config, "-q", *sets)
    assert second.returncode == 0, second.stderr[-3000:]
    assert last_json(second.stdout) == result  # same folder, same report
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == written  # nothing rewritten
    assert tokenizer.stat().st_mtime_ns == tokenizer_mtime  # the run's tokenizer is reused, not retrained


def test_config_show(plm):
    config = ROOT / "configs" / "debug" / "mlm.yaml"
    proc = plm("config", "show", config, "--set", "train.lr=0.001", "--set", "model.num_layers=3")
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)
    want = to_dict(load_config(config, ["train.lr=0.001", "model.num_layers=3"]))
    assert shown == json.loads(json.dumps(want))
    assert shown["train"]["lr"] == 0.001 and shown["model"]["num_layers"] == 3

    doc = plm("config", "show", "--doc")
    assert doc.returncode == 0 and "train.lr (" in doc.stdout and "data.block_size (" in doc.stdout


def test_config_check(plm, last_json):
    proc = plm("config", "check", "configs")
    assert proc.returncode == 0, proc.stderr
    assert last_json(proc.stdout) == {"checked": len(list((ROOT / "configs").rglob("*.yaml")))}
    assert proc.stderr.count("ok  ") == len(list((ROOT / "configs").rglob("*.yaml")))


def test_list_objectives(plm):
    proc = plm("list", "objectives")
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    assert sorted(listed) == sorted(objectives.names())
    assert {"mlm", "clm"} <= set(listed)
