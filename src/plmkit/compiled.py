"""Kernels that torch.compile (inductor) generates from short formulas on a CPU, each with an eager fallback: the
compiled loss (objectives/base.py, train.compile_loss) and the compiled dropout masks (training/dropout.py,
train.compile_dropout). Each keeps its process-wide state in a dict: `enabled` (its switch), `function` (the compiled
function, once it has worked) and `failed` (why it could not be compiled, if it could not; then the fallback runs
for the rest of the process)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode


def kernel_off(state: dict) -> bool:
    """Whether a kernel is not to be tried now: switched off (state["enabled"]), failed earlier, or a dispatch mode
    active (e.g. FlopCounterMode, which counts the eager ops)."""
    return not state["enabled"] or bool(state["failed"]) or _get_current_dispatch_mode() is not None


def run_compiled(state: dict, formula: Callable, args: tuple, *, failure: str, fallback: str, switch: str,
                 check: Callable | None = None):
    """`formula(*args)` through `torch.compile(formula, dynamic=True)` (compiled on the first call, kept in
    state["function"]), or None where compiling or running it raises: then state["failed"] says why, and a warning
    names `fallback` and the `switch` that skips the attempt. `check(function)` runs before the first use of a
    function (it raises RuntimeError to refuse it)."""
    try:
        function = state["function"] or torch.compile(formula, dynamic=True)
        if check is not None:
            check(function)
        out = function(*args)
    except (RuntimeError, torch._dynamo.exc.TorchDynamoException) as e:
        state["failed"] = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        warnings.warn(f"{failure} ({state['failed']}); using {fallback} ({switch}=false skips the attempt)",
                      stacklevel=3)
        return None
    state["function"] = function
    return out
