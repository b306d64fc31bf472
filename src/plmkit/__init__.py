"""plmkit: pre-train, fine-tune, evaluate and share language models.

    from plmkit import load_config, pretrain
    result = pretrain(load_config("configs/debug/mlm.yaml", overrides=["train.max_steps=50"]))
"""

from plmkit.config import load_config

__version__ = "0.1.0"
__all__ = ["contrast_embeddings", "embedding_neighbors", "load_config", "prepare_data", "pretrain", "quickstart",
           "train_embeddings", "train_tokenizer_for"]


def __getattr__(name: str):  # the API imports torch and transformers: load it only when asked for
    if name in ("pretrain", "prepare_data", "train_tokenizer_for", "train_embeddings", "embedding_neighbors",
                "contrast_embeddings"):
        from plmkit import api

        return getattr(api, name)
    if name == "quickstart":
        from plmkit.quickstart import run_quickstart

        return run_quickstart
    raise AttributeError(f"module 'plmkit' has no attribute {name!r}")
