"""Pre-training objectives, one module each; importing this package fills the `objectives` registry."""

from plmkit.objectives import clm, electra, mlm, span_corruption  # noqa: F401  (explicit imports register each objective)
from plmkit.objectives.base import EVAL_INDEX_OFFSET, LossOutput, Objective, objectives

__all__ = ["EVAL_INDEX_OFFSET", "LossOutput", "Objective", "build_objective", "objectives"]


def build_objective(cfg, tokenizer, seed: int) -> Objective:
    """Instantiate the registered objective named by `cfg.name` (cfg is its config dataclass)."""
    return objectives.get(cfg.name).factory(cfg, tokenizer, seed)
