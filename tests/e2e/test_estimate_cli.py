"""`plm estimate --measure CONFIG`: runs 20 steps of the debug MLM config here and uses the MFU it measured."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_estimate_with_measured_mfu(plm, last_json, tmp_path, e2e_cache):
    debug = yaml.safe_load((ROOT / "configs" / "debug" / "mlm.yaml").read_text(encoding="utf-8"))
    debug["data"]["cache_dir"] = str(e2e_cache)  # never ~/.cache
    config = tmp_path / "mlm.yaml"
    config.write_text(yaml.safe_dump(debug))
    proc = plm("estimate", "gpt2", "--tokens", "300B", "--devices", "8", "--measure", config, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc.stdout)
    assert len(proc.stdout.strip().splitlines()) == 1
    assert 0 < result["mfu"] < 1 and result["mfu_source"].startswith("measured")
    assert "MFU measured" in proc.stderr  # says that it measured
    # the measured MFU is the one the time estimate uses
    assert result["device_hours"] == pytest.approx(result["flops"] / (989.4e12 * result["mfu"]) / 3600, rel=1e-9)


def test_measure_and_mfu_together_are_refused(plm):
    proc = plm("estimate", "gpt2", "--mfu", "0.4", "--measure", "configs/debug/mlm.yaml")
    assert proc.returncode == 2 and "not both" in proc.stderr
