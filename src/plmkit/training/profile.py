"""train.profile_steps: where a training step's time goes, recorded with torch.profiler for a few steps of a real run.

On a GPU the question is whether its kernels keep it busy (then the kernels' table says which to make faster) or it
waits for the Python side (launches, synchronisations, data); summary.json answers it as `device_busy`, the kernels'
time over the wall-clock time of the recorded steps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from plmkit.training.logging import stderr


class StepProfiler:
    """Records optimizer steps `first + 1` to `first + steps` (the loop calls `before(step)` with the steps done so
    far at the start of each step and `after(step)` at its end) and writes `folder`."""

    def __init__(self, folder: Path, steps: int, first: int, device: torch.device):
        self.folder, self.steps, self.first, self.device = folder, steps, first, device
        self.prof: profile | None = None
        self.started = 0.0
        self.done = False

    def before(self, step: int) -> None:
        if self.done or self.prof is not None or step != self.first:
            return
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        self._sync()
        self.prof = profile(activities=activities)
        self.prof.start()
        self.started = time.perf_counter()

    def after(self, step: int, last: bool = False) -> None:
        if self.prof is None or (step < self.first + self.steps and not last):
            return
        self._sync()
        wall = time.perf_counter() - self.started
        self.prof.stop()
        self.done = True
        try:
            self._write(step - self.first, wall)
        except (OSError, RuntimeError, ValueError, AttributeError) as exc:  # a diagnosis: never stop the run
            stderr.print(f"[yellow]warning:[/] train.profile_steps: the profile could not be written ({exc!r})")
        self.prof = None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _write(self, steps: int, wall: float) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        events = self.prof.key_averages()
        gpu = self.device.type == "cuda"
        key = "self_device_time_total" if gpu else "self_cpu_time_total"
        (self.folder / "ops.txt").write_text(events.table(sort_by=key, row_limit=40, max_name_column_width=70))
        self.prof.export_chrome_trace(str(self.folder / "trace.json"))
        top = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:15]
        summary = {"steps": steps, "first_step": self.first + 1, "wall_s": round(wall, 4),
                   "wall_s_per_step": round(wall / max(steps, 1), 4), "device": str(self.device),
                   "top_ops": [{"name": e.key, "calls": e.count, "self_ms": round(getattr(e, key) / 1e3, 3)}
                               for e in top]}
        text = f"{steps} steps, {wall:.3f} s"
        if gpu:
            busy = device_busy_seconds(self.prof.events())
            summary.update({"device_kernel_s": round(busy, 4), "device_busy": round(busy / wall, 4)})
            text += f", GPU kernels busy {busy / wall:.0%} of it"
        (self.folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        stderr.print(f"profile: {text} -> {self.folder}")


def device_busy_seconds(events) -> float:
    """Seconds in which at least one GPU kernel or copy ran: the union of the device events' time ranges (kernels
    on several streams that overlap count once)."""
    spans = sorted((e.time_range.start, e.time_range.end) for e in events if e.device_type == DeviceType.CUDA)
    busy, end = 0.0, float("-inf")
    for start, stop in spans:
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    return busy / 1e6  # microseconds
