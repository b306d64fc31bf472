"""Exact resume: stopping at step M and resuming to N gives the same losses, step by step, as an unbroken run.

Dropout stays on (0.1, as in the debug configs) and the schedule is constant, so this checks that the model,
optimizer, scheduler and RNG states and the data position all come back from the checkpoint.
"""

from __future__ import annotations

import os
import signal

import pytest
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
