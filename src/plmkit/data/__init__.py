"""Data stage: read documents, clean, split, tokenize into cached shards and cut fixed-length blocks.

    data = prepare_shards(cfg.data, tokenizer, seed=cfg.run.seed); train = data.dataset("train", 128)
"""

from plmkit.data.corpus import Corpus, CorpusReport, load_corpus
from plmkit.data.pack import PackedDataset, PreparedData, prepare_shards

__all__ = ["Corpus", "CorpusReport", "PackedDataset", "PreparedData", "load_corpus", "prepare_shards"]
