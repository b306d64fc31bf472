"""Evaluation: task metrics (accuracy, F1, multi-label and grouped F1, seqeval NER), confusion-matrix plot.

    from plmkit.evaluation import ner_metrics; ner_metrics([["B-PER", "O"]], [["B-PER", "O"]])["f1"]  # 1.0
"""

from plmkit.evaluation.metrics import (
    classification_metrics,
    confusion_matrix,
    multilabel_metrics,
    ner_metrics,
    plot_confusion_matrix,
    tune_threshold,
)

__all__ = ["classification_metrics", "confusion_matrix", "multilabel_metrics", "ner_metrics",
           "plot_confusion_matrix", "tune_threshold"]
