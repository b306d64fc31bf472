"""Evaluation memory stays flat as the eval set grows: the loop's evaluation keeps two scalars (loss sum, targets)
per batch, never the vocab-sized logits. Checked by counting the tensors alive after each evaluation batch (gc), with
eval sets of 8 and 64 blocks; a deliberately leaky objective shows that the check can fail. Slow (about a minute
for both): the fast suite stays under its 10 minutes."""

from __future__ import annotations

import gc
import warnings
from itertools import pairwise
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from plmkit import load_config
from plmkit.config import ModelConfig
from plmkit.models import build_model
from plmkit.objectives.base import LossOutput
from plmkit.objectives.mlm import PREDICTION_KEYS, MaskedLM, MLMConfig
from plmkit.training import loop

pytestmark = pytest.mark.slow

DEBUG_CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "debug"

VOCAB, BLOCK, BATCH = 997, 32, 8
INDEX_BYTES = BATCH * BLOCK * 8 * len(PREDICTION_KEYS)
"""The most a batch's masked-LM prediction index can hold (its sizes follow the count of masked tokens, so the bytes
alive move by up to this from batch to batch): far below one batch of logits, the leak the tests look for."""


class _Tokenizer(SimpleNamespace):
    def __len__(self) -> int:
        return VOCAB


TOKENIZER = _Tokenizer(pad_token_id=0, bos_token_id=1, eos_token_id=2, mask_token_id=3, all_special_ids=[0, 1, 2, 3])


def _blocks(n: int, seed: int) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(4, VOCAB, (BLOCK,), generator=gen).tolist()} for _ in range(n)]  # no tensors


def _live_tensors() -> tuple[int, int]:
    """(tensors alive, bytes of their distinct storages) after a full collection."""
    gc.collect()
    with warnings.catch_warnings():  # isinstance on torch.distributed.reduce_op warns
        warnings.simplefilter("ignore", FutureWarning)
        tensors = [obj for obj in gc.get_objects() if isinstance(obj, torch.Tensor)]
    storages = {}
    for obj in tensors:
        try:
            storage = obj.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            pass
    del obj
    return len(tensors), sum(storages.values())


class _LeakyMLM(MaskedLM):
    """Keeps a vocab-sized tensor per evaluation batch in `outputs`, as a loop storing logits would."""

    def loss(self, module, batch) -> LossOutput:
        out = super().loss(module, batch)
        if not torch.is_grad_enabled():
            out.outputs = {"logits": [torch.zeros(len(batch["input_ids"]), BLOCK, VOCAB)]}
        return out


def _eval_snapshots(tmp_path, eval_blocks: int, objective_cls=MaskedLM) -> list[tuple[int, int]]:
    """Train 1 step with evaluation at the start and the end; (tensors, bytes) alive after each evaluation batch."""
    run_dir = tmp_path / f"run{eval_blocks}-{objective_cls.__name__}"
    cfg = load_config(DEBUG_CONFIGS / "mlm.yaml", [
        f"run.output_dir={run_dir}", "train.max_steps=1", "train.eval_every=0", "train.save_every=100",
        f"train.batch_size={BATCH}", f"train.eval_blocks={eval_blocks}", "train.precision=fp32", "log.to=[jsonl]",
        f"data.block_size={BLOCK}"])
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="bert", hidden_size=32, num_layers=2, num_heads=2,
                                    max_position_embeddings=64, vocab_size=VOCAB, dropout=0.0),
                        TOKENIZER, "masked_lm")
    objective = objective_cls(MLMConfig(), TOKENIZER, seed=13)
    snapshots: list[tuple[int, int]] = []
    inner = objective.loss

    def probed(module, batch):
        out = inner(module, batch)
        if not torch.is_grad_enabled():  # an evaluation batch
            snapshots.append(_live_tensors())
        return out

    objective.loss = probed
    run_dir.mkdir()
    loop.fit(cfg, model, objective, _blocks(16, seed=1), _blocks(eval_blocks, seed=2), run_dir,
             show_progress=False)
    assert len(snapshots) == 2 * eval_blocks // BATCH  # both evaluations ran over every block
    return snapshots


def _per_evaluation(snapshots: list) -> list[list]:
    half = len(snapshots) // 2
    return [snapshots[:half], snapshots[half:]]  # the evaluation before the step, the one after it


def test_eval_memory_is_flat_in_the_eval_set_size(tmp_path):
    # A first run fills what a process keeps once (the compiled loss kernels and their caches), so the two measured
    # runs start alike whichever tests ran before.
    (tmp_path / "warm-up").mkdir()
    _eval_snapshots(tmp_path / "warm-up", 16)
    small = _per_evaluation(_eval_snapshots(tmp_path, 16))  # 2 batches per evaluation
    large = _per_evaluation(_eval_snapshots(tmp_path, 64))  # 8 batches per evaluation
    slack = INDEX_BYTES
    for s, g in zip(small, large, strict=True):
        # from the second batch on, the loop also holds the previous batch's LossOutput (two scalars): no more
        assert all(c == g[1][0] and abs(b - g[1][1]) <= slack for c, b in g[1:]), \
            f"tensors alive grow across evaluation batches: {g}"
        assert max(c for c, _ in g) == max(c for c, _ in s), (s, g)  # the same count with 4x the blocks
        assert abs(max(b for _, b in g) - max(b for _, b in s)) <= slack, (s, g)


def test_the_check_catches_an_evaluation_that_keeps_logits(tmp_path):
    first = _per_evaluation(_eval_snapshots(tmp_path, 64, _LeakyMLM))[0][1:]
    steps = [(c2 - c1, b2 - b1) for (c1, b1), (c2, b2) in pairwise(first)]
    assert all(c == 1 and b >= BATCH * BLOCK * VOCAB * 4 - INDEX_BYTES for c, b in steps), steps
