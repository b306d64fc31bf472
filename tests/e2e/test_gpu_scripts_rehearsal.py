"""benchmarks/gpu_all.sh (and the gpu.sh it runs) rehearsed on the CPU: a GPU session gets a few minutes of device
time, so the script it runs must work the first time. Tiny models, 8 steps, every JSON line and archive checked."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_all_rehearsal_reports_every_variant(tmp_path):
    env = {**os.environ, "CPU_REHEARSAL": "1", "OUT": str(tmp_path), "ATTENTION": "gpt2",
           "RUNS": "gpt2=gpt2|;bert-fused-sdpa=bert|--set train.sdpa_backends=[flash,efficient,cudnn]"}
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_all.sh")], env=env, capture_output=True, text=True,
                         timeout=600, check=True)
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    attention = [line for line in lines if "cases" in line]
    assert len(attention) == 1 and attention[0]["causal"] and attention[0]["cases"]
    runs = {line["variant"]: line for line in lines if "variant" in line}
    assert set(runs) == {"gpt2", "bert-fused-sdpa"}
    for name, result in runs.items():
        assert result["rc"] == 0 and result["limit_rc"] == 0, (name, result)
        assert result["tokens_per_s_median"] > 0 and result["profile"]["steps"] == 3, (name, result)
        with tarfile.open(tmp_path / f"{name}.tgz") as archive:
            assert f"{name}/profile/summary.json" in archive.getnames()
    # a CPU has no fused attention with dropout: the rehearsal swaps in [flash, math], which it can run
    assert runs["bert-fused-sdpa"]["extra"] == "--set train.sdpa_backends=[flash,math]"
    assert (tmp_path / "attention_gpt2.json").is_file()


@pytest.mark.slow
def test_gpu_sh_sums_up_a_run_its_limit_stopped(tmp_path):
    """A BERT-base run on an H200 was stopped by its limit while it wrote final/, after all its logged rows, and
    gpu.sh printed nothing for it: its medians had to be worked out by hand. RUN_LIMIT now stops the run, not gpu.sh,
    which sums up the rows logged before the stop."""
    env = {**os.environ, "CPU_REHEARSAL": "1", "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"),
           "MODELS": "gpt2", "STEPS": "100000", "LOG_EVERY": "2", "RUN_LIMIT": "120"}
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["rc"] == 124 and result["stopped_by_limit_s"] == 120, result
    assert result["windows"] >= 3 and result["tokens_per_s_median"] > 0, result


def test_gpu_sh_refuses_a_limit_that_is_not_whole_seconds(tmp_path):
    env = {**os.environ, "CPU_REHEARSAL": "1", "OUT": str(tmp_path), "RUN_LIMIT": "2m"}
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 2 and "RUN_LIMIT is whole seconds" in run.stderr and not run.stdout
