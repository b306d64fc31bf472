"""train.profile_steps: a real run records the steps asked for with torch.profiler and writes what it found."""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch
from torch.autograd import DeviceType

from plmkit.api import pretrain
from plmkit.training.profile import device_busy_seconds


def test_profile_records_the_steps_asked_for(tmp_path, debug_cfg):
    out = tmp_path / "run"
    pretrain(debug_cfg("clm", out, "train.max_steps=6", "train.eval_every=0", "train.profile_steps=2",
                       "train.profile_from=3"), show_progress=False)
    folder = out / "profile"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["first_step"] == 4
    assert summary["wall_s"] > 0 and summary["device"] == "cpu" and "device_busy" not in summary
    names = [op["name"] for op in summary["top_ops"]]
    assert any(name.startswith("aten::") for name in names)
    assert "Self CPU" in (folder / "ops.txt").read_text()
    trace = json.loads((folder / "trace.json").read_text())
    assert trace["traceEvents"]


def test_profile_past_the_last_step_stops_at_the_end(tmp_path, debug_cfg):
    """More steps asked for than the run has left: the profile covers those there are."""
    out = tmp_path / "run"
    pretrain(debug_cfg("clm", out, "train.max_steps=3", "train.eval_every=0", "train.profile_steps=5",
                       "train.profile_from=1"), show_progress=False)
    assert json.loads((out / "profile" / "summary.json").read_text())["steps"] == 2


def test_no_profile_by_default(tmp_path, debug_cfg):
    out = tmp_path / "run"
    pretrain(debug_cfg("clm", out, "train.max_steps=2", "train.eval_every=0"), show_progress=False)
    assert not (out / "profile").exists()


def test_device_busy_counts_overlapping_kernels_once():
    def event(device, start, end):
        return SimpleNamespace(device_type=device, time_range=SimpleNamespace(start=start, end=end))

    events = [event(DeviceType.CUDA, 0, 10), event(DeviceType.CUDA, 5, 20), event(DeviceType.CUDA, 30, 40),
              event(DeviceType.CUDA, 32, 35), event(DeviceType.CPU, 0, 100)]
    assert torch.isclose(torch.tensor(device_busy_seconds(events)), torch.tensor(30e-6))
