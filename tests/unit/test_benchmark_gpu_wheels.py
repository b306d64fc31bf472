"""benchmarks/gpu_wheels.sh, which gpu.sh and gpu_all.sh source before anything imports plmkit: on a machine
without omegaconf and without .gpu_wheels/ it stops at once and says how to make the wheels. (A GPU session whose
first step imported plmkit before the wheels were installed lost that step.)"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_wheels.sh"


def test_missing_omegaconf_without_wheels_stops_with_the_command(tmp_path):
    (tmp_path / "omegaconf.py").write_text("raise ImportError('not installed here')\n")  # shadows the real one
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = subprocess.run(["bash", "-c", f"source {SCRIPT}; echo after"], check=False, cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "after" not in run.stdout
    assert "pip wheel --no-deps -w .gpu_wheels omegaconf" in run.stderr


def test_present_omegaconf_installs_nothing(tmp_path):
    run = subprocess.run(["bash", "-c", f"source {SCRIPT}; echo after"], check=False, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == "after" and not run.stderr
