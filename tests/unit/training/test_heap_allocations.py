"""train.heap_allocations: glibc's mmap threshold is raised once per process where glibc is the C library, nothing
happens elsewhere, and the loop asks for it only when the switch is on (on a CPU)."""

from __future__ import annotations

import ctypes
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
    assert libc.calls == [(-3, 1 << 30)]  # M_MMAP_THRESHOLD, 1 GiB; once


@pytest.mark.skipif(not _glibc(), reason="glibc only")
def test_this_glibc_accepts_it(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", False)
    assert allocator.heap_for_large_tensors() is True


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
