"""Model builders: transformers model classes built from our ModelConfig, or loaded from a checkpoint."""

from plmkit.models.transformer import (
    ARCHS,
    build_model,
    build_model_config,
    build_task_model,
    copy_sentence_transformer_files,
    kept_checkpoint_weights,
    load_pretrained_model,
    masked_lm_head,
)

__all__ = ["ARCHS", "build_model", "build_model_config", "build_task_model", "copy_sentence_transformer_files",
           "kept_checkpoint_weights",
           "load_pretrained_model", "masked_lm_head"]
