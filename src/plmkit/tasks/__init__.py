"""Fine-tuning tasks, one module each; importing this package fills the `tasks` registry. `tasks.io` reads their
labeled (or unlabeled) data files."""

from plmkit.tasks import classification, ner  # noqa: F401  (explicit imports register each task)
from plmkit.tasks.base import Task, tasks

__all__ = ["Task", "build_task", "tasks"]


def build_task(cfg, tokenizer, seed: int) -> Task:
    """Instantiate the registered task named by `cfg.name` (cfg is its config dataclass)."""
    return tasks.get(cfg.name).factory(cfg, tokenizer, seed)
