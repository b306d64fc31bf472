"""Exact resume: stopping at step M and resuming to N gives the same losses, step by step, as an unbroken run.

Dropout stays on (0.1, as in the debug configs) and the schedule is constant, so this checks that the model,
optimizer, scheduler and RNG states and the data position all come back from the checkpoint.
"""

from __future__ import annotations

import os
import signal

import pytest
import torch
from safetensors.torch import load_file, save_file

from plmkit.api import pretrain
from plmkit.errors import Interrupted
from plmkit.objectives.mlm import MaskedLM
from plmkit.training.interrupt import StopRequest

N, M = 6, 3
CASES = {
    "mlm": ("mlm", []),
    "clm-doc-attention-accum": ("clm", ["data.doc_attention=true", "train.grad_accum=2"]),
    "mlm-two-workers": ("mlm", ["train.num_workers=2"]),  # batches collated (and masked) in worker processes
}


@pytest.mark.parametrize("case", list(CASES))
def test_resumed_run_matches_unbroken_run(case, debug_cfg, metrics, tmp_path):
    objective, extra = CASES[case]
    # eval_every=0: the short run evaluates at its last step (M), the unbroken one does not, so this also
    # checks that an evaluation does not move any random state that training uses.
    common = ["train.lr_schedule=constant", "train.save_every=3", "train.eval_every=0", *extra]

    def run(out, steps, resume=False):
        cfg = debug_cfg(objective, out, f"train.max_steps={steps}", *common)
        assert cfg.model.dropout == pytest.approx(0.1)
        return pretrain(cfg, resume=resume, show_progress=False)

    unbroken = run(tmp_path / "unbroken", N)
    run(tmp_path / "resumed", M)
    resumed = run(tmp_path / "resumed", N, resume=True)

    want, got = metrics(tmp_path / "unbroken"), metrics(tmp_path / "resumed")
    assert [r["step"] for r in got] == list(range(1, N + 1))  # one row per step, none repeated
    assert [r["loss"] for r in got] == [r["loss"] for r in want]
    assert [r["tokens_seen"] for r in got] == [r["tokens_seen"] for r in want]
    assert got[-1]["eval_loss"] == want[-1]["eval_loss"]
    assert resumed.metrics["steps"] == unbroken.metrics["steps"] == N
    assert resumed.metrics["tokens_seen"] == unbroken.metrics["tokens_seen"]

    a = load_file(tmp_path / "unbroken" / "final" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(a[k].equal(b[k]) for k in a), "final weights differ after resume"


def test_checkpoint_of_the_bare_causal_lm_resumes_exactly(debug_cfg, metrics, tmp_path):
    """plmkit before CausalLMLoss saved the causal LM's weights as `transformer.*` (no `hf_model.` prefix): such a
    checkpoint resumes through a renamed temporary copy, to the unbroken run's losses, and stays as it was."""
    common = ["train.lr_schedule=constant", "train.save_every=3", "train.eval_every=0"]

    def run(out, steps, resume=False):
        return pretrain(debug_cfg("clm", out, f"train.max_steps={steps}", *common), resume=resume, show_progress=False)

    run(tmp_path / "unbroken", N)
    run(tmp_path / "resumed", M)
    saved = tmp_path / "resumed" / "checkpoints" / f"step-{M:06d}" / "model.safetensors"
    save_file({k.removeprefix("hf_model."): v for k, v in load_file(saved).items()}, saved)  # as the old loop wrote it
    old_names = set(load_file(saved))
    run(tmp_path / "resumed", N, resume=True)
    assert [r["loss"] for r in metrics(tmp_path / "resumed")] == [r["loss"] for r in metrics(tmp_path / "unbroken")]
    assert set(load_file(saved)) == old_names  # the checkpoint itself untouched
    assert not list((tmp_path / "resumed" / "checkpoints").glob(".renamed-*"))  # the copy removed


def test_worker_processes_change_no_loss(debug_cfg, metrics, tmp_path):
    """Batches collated in DataLoader workers (train.num_workers, 2 by default for pre-training on CUDA) are the batches the
    training process collates itself: masks are keyed by (seed, example index), not by who draws them."""
    for workers in (0, 2):
        pretrain(debug_cfg("mlm", tmp_path / str(workers), "train.max_steps=4", f"train.num_workers={workers}"),
                 show_progress=False)
    assert [r["loss"] for r in metrics(tmp_path / "2")] == [r["loss"] for r in metrics(tmp_path / "0")]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_the_resumed_run_matches(signum, debug_cfg, metrics,
                                                                                     tmp_path, monkeypatch, request):
    """Ctrl-C or a scheduler's SIGTERM, received while step 2's batch is collated: the run ends after that step
    with a checkpoint (save_every is far away) and an error naming it; resumed, it repeats the unbroken run."""
    common = ["train.lr_schedule=constant", "train.save_every=100", "train.eval_every=0"]
    unbroken = pretrain(debug_cfg("mlm", tmp_path / "unbroken", f"train.max_steps={N}", *common),
                        show_progress=False)
    collate, calls = MaskedLM.collate, []

    def collate_then_signal(self, examples):
        if isinstance(getattr(signal.getsignal(signum), "__self__", None), StopRequest):  # training, not evaluating
            calls.append(1)
            if len(calls) == 2:  # the second training batch: step 2's (step 1's are collated before it starts)
                os.kill(os.getpid(), signum)
        return collate(self, examples)

    monkeypatch.setattr(MaskedLM, "collate", collate_then_signal)
    cfg = debug_cfg("mlm", tmp_path / "run", f"train.max_steps={N}", *common)
    handler = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
    outer = signal.signal(signum, handler)  # as in a terminal (a job started in a shell's background ignores SIGINT)
    request.addfinalizer(lambda: signal.signal(signum, outer))
    with pytest.raises(Interrupted, match=rf"stopped by {signum.name} at step (\d) of {N}; checkpoint "
                                          r".*step-00000\1 written: continue with plm pretrain .*config\.yaml "
                                          r"--resume") as stopped:
        pretrain(cfg, show_progress=False)
    assert signal.getsignal(signum) == handler  # the loop's handler is gone again
    assert stopped.value.exit_code == 128 + signum
    assert not (tmp_path / "run" / "final").exists()
    monkeypatch.undo()
    resumed = pretrain(cfg, resume=True, show_progress=False)
    want, got = metrics(tmp_path / "unbroken"), metrics(tmp_path / "run")
    assert [r["step"] for r in got] == list(range(1, N + 1))
    assert [r["loss"] for r in got] == [r["loss"] for r in want]
    assert resumed.metrics["tokens_seen"] == unbroken.metrics["tokens_seen"]


def _signal_at(monkeypatch, call: int, send, in_worker: bool = False) -> None:
    """Make MaskedLM.collate call `send()` at its `call`-th call made while training (the loop's StopRequest
    handles SIGTERM), or, with `in_worker`, at the call-th in a DataLoader worker."""
    collate, calls = MaskedLM.collate, []

    def collate_then_signal(self, examples):
        training = isinstance(getattr(signal.getsignal(signal.SIGTERM), "__self__", None), StopRequest)
        if (torch.utils.data.get_worker_info() is not None) if in_worker else training:
            calls.append(1)
            if len(calls) == call:
                send()
        return collate(self, examples)

    monkeypatch.setattr(MaskedLM, "collate", collate_then_signal)


def test_sigterm_to_every_process_stops_a_run_whose_batches_come_from_a_worker(debug_cfg, metrics, tmp_path,
                                                                               monkeypatch):
    """torchrun (os.killpg) and SLURM signal the DataLoader workers too: they ignore it, so the run still stops
    after its step with a checkpoint, and resumes exactly."""
    common = ["train.lr_schedule=constant", "train.save_every=100", "train.eval_every=0", "train.num_workers=1"]
    pretrain(debug_cfg("mlm", tmp_path / "unbroken", f"train.max_steps={N}", *common), show_progress=False)

    def to_both():  # from the worker: the training process and the worker itself, as a process-group signal
        os.kill(os.getppid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)

    _signal_at(monkeypatch, 3, to_both, in_worker=True)
    cfg = debug_cfg("mlm", tmp_path / "run", f"train.max_steps={N}", *common)
    with pytest.raises(Interrupted, match=rf"stopped by SIGTERM at step \d of {N}; checkpoint .* written"):
        pretrain(cfg, show_progress=False)
    monkeypatch.undo()
    pretrain(cfg, resume=True, show_progress=False)
    assert [r["loss"] for r in metrics(tmp_path / "run")] == [r["loss"] for r in metrics(tmp_path / "unbroken")]


def test_a_signal_in_the_last_step_ends_the_run_then_says_so(debug_cfg, tmp_path, monkeypatch):
    """Nothing is left to stop, but a caller (plm compare, plm tune) must not start its next run."""
    common = ["train.lr_schedule=constant", "train.eval_every=0"]
    _signal_at(monkeypatch, N + 1, lambda: os.kill(os.getpid(), signal.SIGTERM))  # the final evaluation's first batch
    with pytest.raises(Interrupted, match=r"stopped by SIGTERM during the last step; the run is complete .*final"):
        pretrain(debug_cfg("mlm", tmp_path / "run", f"train.max_steps={N}", *common), show_progress=False)
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


class _Ranks:
    """A stand-in for the Accelerator of several processes: reduce sums what every process holds."""

    def __init__(self, others: float) -> None:
        self.device, self.others = torch.device("cpu"), others

    def reduce(self, tensor, reduction):
        assert reduction == "sum"
        return tensor + self.others


def test_several_processes_stop_together_and_only_where_they_wait_anyway():
    from plmkit.training.loop import _stop_requested

    asked, quiet = StopRequest(), StopRequest()
    asked.signal = "SIGTERM"
    assert _stop_requested(asked, _Ranks(0.0), 1, synced=False)  # one process: at once
    assert not _stop_requested(asked, _Ranks(0.0), 2, synced=False)  # several: not between the waits
    assert _stop_requested(asked, _Ranks(0.0), 2, synced=True)
    assert _stop_requested(quiet, _Ranks(1.0), 2, synced=True)  # the signal reached another process only
    assert not _stop_requested(quiet, _Ranks(0.0), 2, synced=True)


def test_a_second_signal_goes_where_it_would_without_the_loop(request):
    """A stuck step can still be ended: the second SIGTERM reaches the handler from before (by default the end of
    the process; here a recorder), the second SIGINT raises KeyboardInterrupt."""
    seen = []
    outer = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    request.addfinalizer(lambda: signal.signal(signal.SIGTERM, outer))
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == "SIGTERM" and seen == []
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGTERM]
    interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, interrupt))
    with pytest.raises(KeyboardInterrupt), StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signal == "SIGINT"
        os.kill(os.getpid(), signal.SIGINT)
