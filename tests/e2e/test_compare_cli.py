"""`plm compare` in a subprocess on a tiny randomly initialised BERT and tiny data: the JSON line, the files, the
capped size, a second call that reuses every run, and bad sizes as one clear line on stderr."""

from __future__ import annotations

import json
import random

import pytest

pytestmark = pytest.mark.slow

WORDS = ["the", "text", "is", "a", "new", "list", "of", "lines", "and", "words", "with", "tabs", "in", "each"]


def _write(path, n: int, seed: int):
    """sentence<TAB>label, `yes` iff the sentence holds `whitespace` (every second row)."""
    rng = random.Random(seed)
    rows = ["sentence\tlabel"]
    for i in range(n):
        words = rng.sample(WORDS, rng.randint(4, 7)) + (["whitespace"] if i % 2 == 0 else [])
        rng.shuffle(words)
        rows.append(f"{' '.join(words)}\t{'yes' if i % 2 == 0 else 'no'}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_compare_cli(plm, last_json, tiny_encoder, tmp_path):
    train, dev = _write(tmp_path / "train.tsv", 40, 1), _write(tmp_path / "dev.tsv", 16, 2)
    out = tmp_path / "cmp"
    args = ["compare", "--model", tiny_encoder, "--task", "classification", "--train", train, "--validation", dev,
            "--out", out, "--sizes", "8,16,1000", "--seeds", "2", "--min-steps", "4", "--epochs", "1", "-q",
            "--set", "train.batch_size=8", "--set", "train.lr=3e-3"]
    proc = plm(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.strip().splitlines()) == 1
    result = last_json(proc.stdout)
    assert result["metric"] == "accuracy" and result["output_dir"] == str(out)
    assert result["seeds"] == [13, 14] and result["arms"] == ["pretrained", "scratch"]
    assert [row["size"] for row in result["table"]] == [8, 16, 40]
    assert result["capped"] == {"1000": 40}
    assert "1,000 labeled examples requested, 40 available" in proc.stderr
    for row in result["table"]:
        for arm in ("pretrained", "scratch"):
            assert row[arm]["n"] == 2 and 0.0 <= row[arm]["mean"] <= 1.0 and row[arm]["std"] >= 0.0
        assert row["gain"] == pytest.approx(row["pretrained"]["mean"] - row["scratch"]["mean"])
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert len(rows) == 12 == result["runs"]
    assert sum(line.startswith(("pretrained ", "scratch ")) for line in proc.stderr.splitlines()) == 12
    assert json.loads((out / "compare.json").read_text())["table"] == result["table"]
    assert "| labeled examples |" in (out / "compare.md").read_text(encoding="utf-8")
    assert (out / "compare.png").stat().st_size > 5000
    assert (out / "scratch" / "n16-s14" / "results.json").is_file()

    again = plm(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    second = last_json(again.stdout)
    assert second["reused"] == 12 and second["table"] == result["table"]


def test_compare_bad_sizes_is_one_clear_error(plm, tiny_encoder, tmp_path):
    train = _write(tmp_path / "train.tsv", 20, 1)
    proc = plm("compare", "--model", tiny_encoder, "--task", "classification", "--train", train,
               "--out", tmp_path / "cmp", "--sizes", "0,8", "-q")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: sizes must be counts of labeled examples >= 1")
    assert not proc.stdout.strip() and not (tmp_path / "cmp").exists()
