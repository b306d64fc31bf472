"""GloVe (Pennington, Socher and Manning, 2014, "GloVe: Global Vectors for Word Representation", EMNLP):
word vectors fitted to the logarithm of global co-occurrence counts.

1. Counts. For every pair of words at most `window` words apart in a document (words outside the vocabulary are
   skipped first, as in the reference `cooccur.c`), X[i, j] and X[j, i] grow by 1/d, d being their distance.
   Built vectorised with numpy: one array shift per distance, pairs keyed i * V + j, summed with np.unique.
2. Fit. Minimise  J = sum over non-zero X_ij of  f(X_ij) (w_i . w~_j + b_i + b~_j - log X_ij)^2 / 2,
   f(x) = min(1, (x / x_max)^alpha), with AdaGrad (accumulators start at 1, as in the reference `glove.c`) on
   shuffled mini-batches of non-zero entries (torch; the scalar error is clipped to +-100 like the reference).
3. Vectors: w + w~ (the reference's `-model 2`).

    rows, cols, values = cooccurrence([vocab.encode(d) for d in docs], len(vocab), window=10)
    vectors, losses = fit_glove(rows, cols, values, len(vocab), dim=100, epochs=15)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from plmkit.errors import DataError, TrainingError

GRAD_CLIP = 100.0
"""The reference implementation's clip on f(X_ij) * error."""
_MERGE_EVERY = 20_000_000
"""Partial (key, value) pairs held before they are merged into one sorted array (bounds memory)."""


def _reduce(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum `values` over equal `keys`; returns the sorted unique keys and their sums."""
    unique, inverse = np.unique(keys, return_inverse=True)
    return unique, np.bincount(inverse.ravel(), weights=values, minlength=len(unique))


def cooccurrence(docs: Sequence[np.ndarray], vocab_size: int, window: int, *, distance_weighting: bool = True,
                 chunk_tokens: int = 1_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric window co-occurrence counts of documents given as arrays of word ids (in-vocabulary words only).

    A pair d words apart (1 <= d <= window, within one document) adds 1/d (or 1 without distance weighting) to
    X[i, j] and to X[j, i]; a word paired with itself adds twice to X[i, i], as in the reference.

    Returns:
        (rows int32, cols int32, values float64): the non-zero entries of X, sorted by row then column.

    Raises:
        DataError: no document has two words, so nothing co-occurs.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1; got {window}")
    docs = [np.asarray(d, dtype=np.int64) for d in docs if len(d) > 1]
    if not docs:
        raise DataError("no document holds two in-vocabulary words: nothing co-occurs; add data (data.paths) or "
                        "lower vocab.min_count")
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    held = 0
    start = 0
    while start < len(docs):  # chunks of whole documents, about chunk_tokens words each
        stop, size = start, 0
        while stop < len(docs) and (size == 0 or size + len(docs[stop]) <= chunk_tokens):
            size += len(docs[stop])
            stop += 1
        ids = np.concatenate(docs[start:stop])
        doc_of = np.repeat(np.arange(stop - start), [len(d) for d in docs[start:stop]])
        keys, values = [], []
        for d in range(1, min(window, max(len(doc) for doc in docs[start:stop]) - 1) + 1):  # no pair lies further
            same = doc_of[:-d] == doc_of[d:]
            left, right = ids[:-d][same], ids[d:][same]
            weight = 1.0 / d if distance_weighting else 1.0
            keys += [left * vocab_size + right, right * vocab_size + left]
            values.append(np.full(2 * len(left), weight))
        parts.append(_reduce(np.concatenate(keys), np.concatenate(values)))
        held += len(parts[-1][0])
        if held > _MERGE_EVERY and len(parts) > 1:
            parts = [_reduce(np.concatenate([k for k, _ in parts]), np.concatenate([v for _, v in parts]))]
            held = len(parts[0][0])
        start = stop
    keys, values = parts[0] if len(parts) == 1 else _reduce(np.concatenate([k for k, _ in parts]),
                                                            np.concatenate([v for _, v in parts]))
    return (keys // vocab_size).astype(np.int32), (keys % vocab_size).astype(np.int32), values


def weighting(values: torch.Tensor, x_max: float, alpha: float) -> torch.Tensor:
    """f(x) = min(1, (x / x_max)^alpha)."""
    return (values / x_max).pow(alpha).clamp(max=1.0)


def _adagrad(param: torch.Tensor, grad_sq: torch.Tensor, rows: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
    """AdaGrad on the given rows, in place: accumulate grad^2, then step by lr * grad / sqrt(accumulated)."""
    acc = grad_sq.index_select(0, rows).add_(grad.square())
    grad_sq.index_copy_(0, rows, acc)
    param.index_add_(0, rows, grad.div_(acc.sqrt_()).mul_(-lr))


def fit_glove(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, vocab_size: int, *, dim: int = 100,
              epochs: int = 15, lr: float = 0.05, x_max: float = 100.0, alpha: float = 0.75,
              batch_size: int = 16384, seed: int = 13, device: str = "cpu",
              on_epoch: Callable[[int, float, float], None] | None = None) -> tuple[np.ndarray, list[float]]:
    """Fit GloVe vectors to co-occurrence counts with AdaGrad on mini-batches of non-zero entries.

    Args:
        on_epoch: called as on_epoch(epoch, mean loss, seconds) after every pass.

    Returns:
        (vectors (vocab_size, dim) float32: word + context vectors, the mean loss per entry of every epoch).
    """
    if len(values) == 0:
        raise DataError("the co-occurrence matrix is empty: nothing to fit")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    v = vocab_size
    # rows 0..V-1: word vectors w; rows V..2V-1: context vectors w~ (one table, so one update per batch)
    weights = ((torch.rand(2 * v, dim, generator=gen) - 0.5) / dim).to(dev)
    biases = ((torch.rand(2 * v, generator=gen) - 0.5) / dim).to(dev)
    grad_sq_w, grad_sq_b = torch.ones_like(weights), torch.ones_like(biases)
    i = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(dev)
    j = torch.from_numpy(np.asarray(cols, dtype=np.int64)).to(dev) + v
    x = torch.from_numpy(np.asarray(values, dtype=np.float64)).to(dev)
    log_x, f_x = x.log().float(), weighting(x, x_max, alpha).float()
    n = len(x)
    losses: list[float] = []
    for epoch in range(1, epochs + 1):
        started = time.time()
        order = torch.randperm(n, generator=gen).to(dev)
        total = torch.zeros((), dtype=torch.float64, device=dev)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            bi, bj = i[idx], j[idx]
            wi, wj = weights.index_select(0, bi), weights.index_select(0, bj)  # (B, D)
            error = (wi * wj).sum(1) + biases[bi] + biases[bj] - log_x[idx]  # (B,)
            f_error = f_x[idx] * error
            total += 0.5 * (f_error * error).sum(dtype=torch.float64)
            f_error = f_error.clamp_(-GRAD_CLIP, GRAD_CLIP)
            # d/dw_i = f_error * w~_j and d/dw~_j = f_error * w_i, summed per touched row (a row may occur many times)
            touched, where = torch.unique(torch.cat([bi, bj]), return_inverse=True)
            grad_w = torch.zeros(len(touched), dim, device=dev)
            grad_w.index_add_(0, where[:len(idx)], wj.mul_(f_error[:, None]))
            grad_w.index_add_(0, where[len(idx):], wi.mul_(f_error[:, None]))
            grad_b = torch.zeros(len(touched), device=dev).index_add_(0, where, f_error.repeat(2))
            _adagrad(weights, grad_sq_w, touched, grad_w, lr)
            _adagrad(biases, grad_sq_b, touched, grad_b, lr)
        loss = total.item() / n
        if not math.isfinite(loss):
            raise TrainingError(f"the GloVe loss became {loss} in epoch {epoch}; lower glove.lr")
        losses.append(loss)
        if on_epoch is not None:
            on_epoch(epoch, loss, time.time() - started)
    zeros = 0.5 * (f_x.double() * log_x.double() ** 2).sum().item() / n  # the loss of all-zero vectors and biases
    if zeros > 0 and losses[-1] > zeros:  # finite, so not caught above, but worse than no vectors at all
        raise TrainingError(f"the GloVe loss ended at {losses[-1]:.4g}, above the {zeros:.4g} of all-zero vectors: "
                            f"the step size diverged; lower glove.lr (now {lr:g})")
    vectors = (weights[:v] + weights[v:]).cpu().numpy().astype(np.float32)
    return vectors, losses
