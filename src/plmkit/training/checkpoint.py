"""Atomic checkpoints: accelerate's save_state into a temporary folder, then one rename.

A kill during a save leaves at worst a `.tmp-*` folder, which is ignored and cleaned up; `latest()` only ever
returns a complete checkpoint. Model weights are safetensors; optimizer and RNG files load with weights_only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from accelerate import Accelerator

from plmkit.errors import PlmError
from plmkit.objectives.base import WRAPPED_PREFIX

STATE_FILE = "trainer_state.json"

# accelerate warns on every save that tied weights (BERT's decoder = word embeddings) are stored once; that is
# expected, and the exact-resume tests check that reloading restores them.
logging.getLogger("accelerate.utils.other").setLevel(logging.ERROR)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step-*") if (p / STATE_FILE).is_file() and ".tmp" not in p.name]  # not best/
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def latest(run_dir: Path) -> Path | None:
    found = checkpoint_dirs(run_dir)
    return found[-1] if found else None


def save(accelerator: Accelerator, run_dir: Path, step: int, trainer_state: dict, keep: int) -> Path:
    """Write checkpoints/step-NNNNNN atomically on every process, then keep only the newest `keep`."""
    root = Path(run_dir) / "checkpoints"
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=1))
        _fsync_dir(tmp)
        if final.exists():  # a resumed run saving the same step again
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        for old in checkpoint_dirs(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(".tmp-step-*"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def save_weights(accelerator: Accelerator, model, folder: Path) -> Path:
    """The model's full weights as one safetensors file in `folder`, written atomically (every process calls this:
    sharded weights are gathered first)."""
    from safetensors.torch import save_file

    weights = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        folder = Path(folder)
        tmp = folder.with_name(f".tmp-{folder.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in _untie(weights).items()}, tmp / "model.safetensors")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    accelerator.wait_for_everyone()
    return Path(folder)


def load_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(Path(folder) / "model.safetensors")


def _untie(weights: dict) -> dict:
    """safetensors refuses two names for one tensor (tied embeddings): keep the first name of each."""
    seen, out = set(), {}
    for name, tensor in weights.items():
        key = (tensor.data_ptr(), tensor.shape, tensor.dtype)
        if key not in seen:
            seen.add(key)
            out[name] = tensor
    return out


def load(accelerator: Accelerator, checkpoint: Path, model_keys: set[str] | None = None) -> dict:
    """Restore model, optimizer and RNG states; returns the trainer state (step, data position, scheduler).

    `model_keys`, the state-dict names of the module being trained, lets a checkpoint of an earlier plmkit that
    trained the bare causal LM (weights named `transformer.*`, not `hf_model.transformer.*` as the module of the
    loss is now) load through a temporary copy of the folder with its weights renamed: hard links for the other
    files, removed once loaded; the checkpoint itself stays as it is."""
    checkpoint = Path(checkpoint)
    try:
        state = json.loads((checkpoint / STATE_FILE).read_text())
        # accelerate's load_state logs a random-state file it cannot read at INFO level and goes on, which would
        # make the resumed run silently draw other masks and dropout than an unbroken one: read it here first.
        from accelerate.utils import load as load_object

        load_object(checkpoint / f"random_states_{accelerator.process_index}.pkl")
        renamed = _with_module_prefix(checkpoint, model_keys, accelerator.process_index)
        try:
            accelerator.load_state(str(renamed or checkpoint))
        finally:
            if renamed is not None:
                shutil.rmtree(renamed, ignore_errors=True)
    except Exception as e:  # any failure to read a checkpoint is reported the same way
        raise CheckpointError(checkpoint, e) from e
    return state


class CheckpointError(PlmError):
    """A checkpoint folder that cannot be loaded (a damaged or missing file)."""

    def __init__(self, checkpoint: Path, cause: BaseException):
        self.checkpoint = checkpoint
        reason = (str(cause).splitlines() or [""])[0]
        super().__init__(f"{checkpoint} cannot be loaded ({type(cause).__name__}: {reason})")


def _with_module_prefix(checkpoint: Path, model_keys: set[str] | None, process: int) -> Path | None:
    """A temporary copy of `checkpoint` whose weights carry the WRAPPED_PREFIX that `model_keys` have and its names
    lack, or None when the names already match (or `model_keys` is None)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    weights = checkpoint / "model.safetensors"
    if model_keys is None or not weights.is_file():
        return None
    with safe_open(weights, framework="pt") as f:
        names = set(f.keys())
    if any(n.startswith(WRAPPED_PREFIX) for n in names) or not {WRAPPED_PREFIX + n for n in names} <= model_keys:
        return None
    copy = checkpoint.parent / f".renamed-{checkpoint.name}-{process}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(checkpoint, copy, copy_function=_link_or_copy)
    tensors = load_file(weights)
    (copy / weights.name).unlink()
    save_file({WRAPPED_PREFIX + name: tensor for name, tensor in tensors.items()}, copy / weights.name)
    return copy


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
