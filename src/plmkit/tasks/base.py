"""What every fine-tuning task provides (a Protocol, for typing only) and the tasks registry.

A task reads labeled files, turns examples into token ids and labels (`encode`), pads them into batches
(`collate`), computes a summed loss with per-example predictions (`loss`), and scores them (`metrics`). The same
training loop as pre-training runs it.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor, nn

from plmkit.objectives.base import LossOutput
from plmkit.registry import Registry

tasks = Registry("task")


class Task(Protocol):
    model_kind: str
    """Which transformers head the task trains: sequence_classification | token_classification."""
    main_metric: str
    """The metric that picks the best checkpoint and early-stops by default (accuracy, micro_f1, f1)."""

    def load(self, path: str) -> list: ...

    def encode(self, examples: list) -> list[dict]: ...

    def wrap(self, model: nn.Module) -> nn.Module: ...

    def collate(self, examples: list[dict]) -> dict[str, Tensor]: ...

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> LossOutput: ...

    def metrics(self, outputs: dict[str, list]) -> dict[str, float]: ...
