"""train.heap_allocations: glibc's mmap and trim thresholds are raised once per process where glibc is the C library,
a large tensor freed and allocated again then costs no page faults, nothing happens elsewhere, and the loop asks for
it only when the switch is on (on a CPU)."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from plmkit.api import pretrain
from plmkit.training import allocator

STEPS = ["train.max_steps=2", "train.eval_every=0", "train.save_every=100"]


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError):
        return False
    return sys.platform.startswith("linux")


class FakeGlibc:
    """What heap_for_large_tensors looks up in the C library, recording the mallopt calls."""

    def __init__(self):
        self.calls = []
        self.gnu_get_libc_version = lambda: b"2.99"

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


def test_threshold_is_raised_once_with_malloc_hs_parameter(monkeypatch):
    libc = FakeGlibc()
    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    assert allocator.heap_for_large_tensors() is True
    assert allocator.heap_for_large_tensors() is True
    assert libc.calls == [(-3, 1 << 30), (-1, 1 << 30)]  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD: 1 GiB; once


@pytest.mark.skipif(not _glibc(), reason="glibc only")
def test_this_glibc_accepts_it(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", False)
    assert allocator.heap_for_large_tensors() is True


FAULTS = """
import resource, sys, torch
from plmkit.training import allocator
assert allocator.heap_for_large_tensors()
def cycle():  # a 64 MiB tensor, written and freed, as a step's logits are
    t = torch.empty(16 << 20)
    t.fill_(1.0)
    del t
for _ in range(5):  # the block settles at its place in the heap within the first three
    cycle()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


@pytest.mark.skipif(not _glibc(), reason="glibc only")
def test_a_freed_large_tensor_is_reused_without_page_faults():
    # In a fresh process (the setting is process-wide). With the mmap threshold alone, each cycle faults in all
    # 16,384 pages again: glibc trims the freed block off the top of the heap.
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True)
    assert int(out.stdout.strip()) < 1_000


def test_nothing_happens_off_linux(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.heap_for_large_tensors() is False


def test_a_c_library_without_mallopt_is_left_alone(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: object())  # musl-like: no glibc symbols
    assert allocator.heap_for_large_tensors() is False


@pytest.mark.parametrize("on", [True, False])
def test_the_loop_asks_only_when_switched_on(on, debug_cfg, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "heap_for_large_tensors", lambda: calls.append(1) or True)
    pretrain(debug_cfg("mlm", tmp_path / "run", *STEPS, f"train.heap_allocations={str(on).lower()}"),
             show_progress=False)
    assert calls == ([1] if on else [])
