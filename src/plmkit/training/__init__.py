"""The training loop (one Accelerate loop for every objective), its optimizer, checkpoints and logging."""

from plmkit.training.loop import FitResult, fit

__all__ = ["FitResult", "fit"]
