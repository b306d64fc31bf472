"""Clean raw documents: Unicode normalisation, stripping, a minimum length and exact de-duplication.

    docs, stats = clean_documents(read_documents(cfg), cfg)
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from plmkit.config import DataConfig


@dataclass
class CleanStats:
    read: int = 0
    """Documents seen."""
    kept: int = 0
    """Documents returned."""
    too_short: int = 0
    """Dropped for having fewer than data.min_chars characters after stripping."""
    duplicates: int = 0
    """Dropped as exact copies (after normalisation) of an earlier document."""


def normalize(text: str, form: str) -> str:
    """Apply Unicode normalisation `form` (NFC | NFKC | none) to `text`."""
    return text if form == "none" else unicodedata.normalize(form, text)


def clean_documents(docs: Iterable[str], cfg: DataConfig) -> tuple[list[str], CleanStats]:
    """Normalise and strip each document, drop short ones and (if cfg.dedup) exact repeats.

    Args:
        docs: raw documents, e.g. from `read_documents`.
        cfg: the data section (normalization, min_chars, dedup).

    Returns:
        The kept documents in their original order (first occurrence of repeats) and the counts.
    """
    kept: list[str] = []
    stats = CleanStats()
    seen: set[bytes] = set()  # 16-byte digests, not the texts, to keep memory small
    for doc in docs:
        stats.read += 1
        text = normalize(doc, cfg.normalization).strip()
        if len(text) < cfg.min_chars:
            stats.too_short += 1
            continue
        if cfg.dedup:
            digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
            if digest in seen:
                stats.duplicates += 1
                continue
            seen.add(digest)
        kept.append(text)
    stats.kept = len(kept)
    return kept, stats
