"""Deterministic train/validation split by a keyed hash of each document's text (order does not matter).

    train, validation = split_validation(docs, fraction=0.01, seed=13)
"""

from __future__ import annotations

import hashlib

from plmkit.errors import DataError


def doc_hash(text: str, seed: int) -> int:
    """A 64-bit keyed blake2b hash of `text`; the same text and seed always give the same number."""
    key = str(seed).encode("ascii")
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), key=key, digest_size=8).digest(), "big")


def split_validation(docs: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Hold out about `fraction` of the documents, chosen by hash, so each document always lands on one side.

    If the hash picks no document (small corpora), the one with the smallest hash goes to validation; if it
    picks all of them, the one with the largest hash stays in train.

    Args:
        docs: cleaned documents.
        fraction: share held out for validation, in [0, 1).
        seed: keys the hash; another seed gives another split.

    Returns:
        (train, validation), each in the original order.

    Raises:
        DataError: fraction is out of range, or it is > 0 with fewer than 2 documents.
    """
    if not 0 <= fraction < 1:
        raise DataError(f"data.validation_fraction must be in [0, 1); got {fraction}")
    if fraction == 0:
        return list(docs), []
    if len(docs) < 2:
        raise DataError(f"only {len(docs)} document(s) after cleaning, but a validation split needs at least "
                        "2; add data (data.paths) or set data.validation_fraction=0")
    hashes = [doc_hash(d, seed) for d in docs]
    threshold = fraction * 2**64
    held = [h < threshold for h in hashes]
    if not any(held):
        held[min(range(len(docs)), key=hashes.__getitem__)] = True
    if all(held):
        held[max(range(len(docs)), key=hashes.__getitem__)] = False
    train = [d for d, v in zip(docs, held, strict=True) if not v]
    validation = [d for d, v in zip(docs, held, strict=True) if v]
    return train, validation
