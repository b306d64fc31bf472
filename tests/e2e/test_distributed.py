"""Data parallel on CPU: `torchrun --nproc_per_node 2 -m plmkit pretrain` with 4 blocks per process gives the
same loss curve as one process with 8 blocks, and metrics.jsonl gets one row per step (rank 0 writes it)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from plmkit.training.logging import read_metrics

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "debug" / "mlm.yaml"
STEPS = 10
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sets(out: Path, cache: Path, batch_size: int) -> list[str]:
    values = [f"run.output_dir={out}", f"data.cache_dir={cache}", f"train.batch_size={batch_size}",
              "model.dropout=0.0", "train.lr_schedule=constant", f"train.max_steps={STEPS}"]
    return [a for v in values for a in ("--set", v)]


def test_two_processes_match_one(plm, last_json, tmp_path, e2e_cache):
    env = {"OMP_NUM_THREADS": "1"}
    single = plm("pretrain", CONFIG, "-q", *_sets(tmp_path / "one", e2e_cache, 8), env=env)
    assert single.returncode == 0, single.stderr[-3000:]  # also trains the tokenizer both runs share

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(_free_port()), "-m"]
    double = plm("pretrain", CONFIG, "-q", *_sets(tmp_path / "two", e2e_cache, 4), env=env, launcher=torchrun,
                 timeout=400)
    assert double.returncode == 0, double.stderr[-3000:]

    one = read_metrics(tmp_path / "one" / "metrics.jsonl")
    two = read_metrics(tmp_path / "two" / "metrics.jsonl")
    assert [r["step"] for r in one] == list(range(1, STEPS + 1))
    assert [r["step"] for r in two] == list(range(1, STEPS + 1))  # one row per step, not one per process
    assert [r["tokens_seen"] for r in two] == [r["tokens_seen"] for r in one]  # 2 x 4 blocks per step
    np.testing.assert_allclose([r["loss"] for r in two], [r["loss"] for r in one], rtol=1e-4)
    np.testing.assert_allclose(two[-1]["eval_loss"], one[-1]["eval_loss"], rtol=1e-4)
    result = last_json(double.stdout)
    assert result["steps"] == STEPS and result["tokens_seen"] == last_json(single.stdout)["tokens_seen"]
    assert (tmp_path / "two" / "final" / "model.safetensors").is_file()
    assert not list((tmp_path / "two" / "checkpoints").glob(".tmp-*"))
