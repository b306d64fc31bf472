"""`plm tune` in a subprocess on the tiny BERT and a tiny classification file: two trials, one JSON line on stdout,
the search folder's files, and a bad --param as one clear line on stderr."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from plmkit import load_config

pytestmark = pytest.mark.slow

WORDS = ["the", "text", "is", "a", "new", "list", "of", "lines", "and", "words", "with", "tabs", "in", "each"]


def _write_tsv(path: Path, n: int, seed: int) -> Path:
    """`sentence<TAB>label`: yes iff the sentence holds the word `whitespace` (every second one does)."""
    rng = random.Random(seed)
    rows = ["sentence\tlabel"]
    for i in range(n):
        words = rng.sample(WORDS, rng.randint(4, 7)) + (["whitespace"] if i % 2 == 0 else [])
        rng.shuffle(words)
        rows.append(f"{' '.join(words)}\t{'yes' if i % 2 == 0 else 'no'}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_tune_two_trials(plm, last_json, tiny_encoder, tmp_path):
    train, dev = _write_tsv(tmp_path / "train.tsv", 48, 1), _write_tsv(tmp_path / "dev.tsv", 16, 2)
    out = tmp_path / "search"
    proc = plm("tune", "--model", tiny_encoder, "--task", "classification", "--train", train, "--validation", dev,
               "--out", out, "--epochs", "2", "--trials", "2", "-q", "--param", "lr=1e-3:1e-2:log",
               "--param", "batch_size=8,16", "--set", "train.warmup_ratio=0.0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.strip().splitlines()) == 1, proc.stdout
    result = last_json(proc.stdout)
    assert result["output_dir"] == str(out) and result["metric"] == "accuracy"
    assert result["trials"] == {"complete": 2, "pruned": 0, "failed": 0}
    assert set(result["best_params"]) == {"train.lr", "train.batch_size", "train.epochs", "train.warmup_ratio"}
    assert 1e-3 <= result["best_params"]["train.lr"] <= 1e-2 and result["best_params"]["train.batch_size"] in (8, 16)
    assert 0.0 <= result["best_value"] <= 1.0
    rows = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert [r["number"] for r in rows] == [0, 1] and result["best_value"] == max(r["value"] for r in rows)
    for name in ("results.md", "tune.png", "config.yaml", "trial-000/metrics.jsonl", "trial-001/metrics.jsonl"):
        assert (out / name).is_file(), name
    assert (Path(result["best_model"]) / "model.safetensors").is_file()
    best = load_config(result["best_config"])
    assert best.train.lr == result["best_params"]["train.lr"] and best.task.train == str(train)

    proc = plm("tune", "--model", tiny_encoder, "--task", "classification", "--train", train, "--out", out,
               "--trials", "2", "-q", "--param", "lr=3e-4")
    assert proc.returncode == 2 and not proc.stdout.strip()
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --param 'lr=3e-4': SPEC must be"), proc.stderr
