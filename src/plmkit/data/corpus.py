"""Read, clean and split a corpus into train and validation documents, with a report of what was dropped.

    corpus = load_corpus(cfg.data, seed=cfg.run.seed); print(corpus.report.to_dict())
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from plmkit.config import DataConfig
from plmkit.data.clean import clean_documents
from plmkit.data.sources import read_documents
from plmkit.data.split import split_validation
from plmkit.errors import DataError


@dataclass
class CorpusReport:
    documents_read: int
    documents_kept: int
    too_short: int
    duplicates_removed: int
    train_documents: int
    validation_documents: int
    characters: int
    """Characters in the kept documents."""
    train_tokens: int | None = None
    """Tokens in the train stream, separators included (filled by prepare_shards)."""
    validation_tokens: int | None = None
    """Tokens in the validation stream, separators included (filled by prepare_shards)."""
    train_unknown_tokens: int | None = None
    """Tokens in the train stream that are the tokenizer's unknown token (filled by prepare_shards)."""
    train_words: int | None = None
    """Words in the train stream, separators included, when a segmenter stored word boundaries (else None)."""
    validation_words: int | None = None
    """Words in the validation stream, separators included, when a segmenter stored word boundaries."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Corpus:
    train: list[str]
    validation: list[str]
    report: CorpusReport


def load_corpus(cfg: DataConfig, seed: int) -> Corpus:
    """Read the documents `cfg` points at, clean them and split off the validation share.

    Args:
        cfg: the data section of the run config.
        seed: keys the validation hash (usually run.seed).

    Returns:
        The train and validation documents and a CorpusReport.

    Raises:
        DataError: the inputs are unreadable, or no document survives cleaning.
    """
    docs, stats = clean_documents(read_documents(cfg), cfg)
    if not docs:
        where = f"data.hf_dataset={cfg.hf_dataset!r}" if cfg.hf_dataset else f"data.paths={list(cfg.paths)}"
        raise DataError(
            f"no documents left from {where}: read {stats.read}, dropped {stats.too_short} shorter than "
            f"data.min_chars={cfg.min_chars} and {stats.duplicates} duplicates; lower data.min_chars, "
            "check data.paths (and data.doc_split / data.text_field), or add data"
        )
    train, validation = split_validation(docs, cfg.validation_fraction, seed)
    report = CorpusReport(
        documents_read=stats.read, documents_kept=stats.kept, too_short=stats.too_short,
        duplicates_removed=stats.duplicates, train_documents=len(train), validation_documents=len(validation),
        characters=sum(map(len, docs)),
    )
    return Corpus(train=train, validation=validation, report=report)
