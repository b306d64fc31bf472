"""Exact resume: stopping at step M and resuming to N gives the same losses, step by step, as an unbroken run.

Dropout stays on (0.1, as in the debug configs) and the schedule is constant, so this checks that the model,
optimizer, scheduler and RNG states and the data position all come back from the checkpoint.
"""

from __future__ import annotations

import pytest
from safetensors.torch import load_file, save_file

from plmkit.api import pretrain

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
