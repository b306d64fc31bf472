"""benchmarks/gpu_attention.py on a CPU: it names the kernel family SDPA ran, says how far the operator and compiled
SDPA are from eager SDPA, and prints one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_attention.py"


@pytest.mark.slow
def test_cpu_smoke_run_names_the_kernels():
    run = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--shape", "2,2,32,16"],
                         capture_output=True, text=True, check=True, timeout=300)
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    result = json.loads(lines[0])
    families = {(c["backend"], c["dropout"], c["compile"]): c["family"] for c in result["cases"]}
    # torch's CPU flash kernel has no dropout: SDPA runs the math formula with it, the fused kernel without; a CPU
    # has no cudnn or memory-efficient kernel, and limited to those (or to flash with dropout) a case reports the
    # error instead of a family
    assert families == {
        ("auto", 0.0, False): "flash", ("cudnn", 0.0, False): None, ("flash", 0.0, False): "flash",
        ("efficient", 0.0, False): None, ("math", 0.0, False): "math",
        ("auto", 0.1, False): "math", ("cudnn", 0.1, False): None, ("flash", 0.1, False): None,
        ("efficient", 0.1, False): None, ("math", 0.1, False): "math",
        ("auto", 0.0, True): "flash", ("auto", 0.1, True): "math", ("fused", 0.1, True): None,
        ("operator", 0.1, True): "math"}  # plmkit's operator runs SDPA's eager choice: math on a CPU, with dropout
    assert all(c["step_ms"] > 0 and c["tflops"] >= 0 and c["kernels"] for c in result["cases"] if c["family"])
    assert all(c["error"] for c in result["cases"] if c["family"] is None)
    # the operator reproduces eager SDPA's dropout mask from the same seed; compiled, inductor draws its own
    agreement = result["agreement"]
    assert agreement["operator_max_diff"] == 0.0 and agreement["eager_max_abs"] > 0
    assert isinstance(agreement["compiled_max_diff"], float)
