"""The confusion-matrix plot writes a valid PNG for few and many labels, without warnings."""

from __future__ import annotations

import numpy as np
import pytest

from plmkit.evaluation import confusion_matrix, plot_confusion_matrix

pytestmark = pytest.mark.filterwarnings("error")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("num_labels", [2, 12])
def test_plot_writes_a_png(tmp_path, num_labels):
    rng = np.random.default_rng(0)
    refs = rng.integers(0, num_labels, size=200)
    preds = np.where(rng.random(200) < 0.7, refs, rng.integers(0, num_labels, size=200))
    matrix = confusion_matrix(preds, refs, num_labels)
    labels = [f"label_{i}" for i in range(num_labels)]
    path = plot_confusion_matrix(matrix, labels, tmp_path / "plots" / "confusion.png", title="validation")
    assert path == tmp_path / "plots" / "confusion.png"
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 1000


def test_plot_handles_an_empty_row(tmp_path):
    matrix = np.array([[3, 1], [0, 0]])  # no reference of the second label: its row is all zeros
    path = plot_confusion_matrix(matrix, ["yes", "no"], str(tmp_path / "cm.png"))
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_plot_rejects_a_matrix_that_does_not_match_the_labels(tmp_path):
    with pytest.raises(ValueError, match=r"\(L, L\)"):
        plot_confusion_matrix(np.zeros((3, 3)), ["a", "b"], tmp_path / "cm.png")
