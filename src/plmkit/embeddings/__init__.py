"""Static word embeddings beside the training loop: Word2Vec (gensim) and GloVe (ours, vectorised) on the same
corpus and cleaning as `plm pretrain`, nearest neighbours, and the context-free vs contextual contrast.

    plm embeddings train configs/embeddings/glove-300d.yaml --out runs/glove-300d
"""

from plmkit.embeddings.config import EmbeddingsConfig, is_embeddings_config, load_embeddings_config

__all__ = ["EmbeddingsConfig", "is_embeddings_config", "load_embeddings_config"]
