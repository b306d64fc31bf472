"""Task metrics on hand-made examples, the answers worked out by hand in the comments; no warning may leak."""

from __future__ import annotations

import json

import numpy as np
import pytest

from plmkit.evaluation import (
    classification_metrics,
    confusion_matrix,
    multilabel_metrics,
    ner_metrics,
    tune_threshold,
)

pytestmark = pytest.mark.filterwarnings("error")  # any warning (sklearn, seqeval, numpy) fails the test

# --- single-label classification ----------------------------------------------------------------------------

LABELS = ["neg", "neu", "pos"]
REFS = [0, 0, 0, 1, 1, 2, 2, 2]
PREDS = [0, 0, 1, 1, 2, 2, 2, 2]
# rows = reference, cols = prediction:
#   neg: [2, 1, 0]   neu: [0, 1, 1]   pos: [0, 0, 3]


def test_confusion_matrix_counts_reference_rows_prediction_columns():
    matrix = confusion_matrix(PREDS, REFS, num_labels=3)
    assert matrix.shape == (3, 3)
    assert matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 3]]
    assert confusion_matrix([1], [0], num_labels=2).tolist() == [[0, 1], [0, 0]]  # ref 0 predicted as 1


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError, match=r"predictions\[1\] = 3"):
        confusion_matrix([0, 3], [0, 1], num_labels=3)
    with pytest.raises(ValueError, match="2 predictions but 3 references"):
        confusion_matrix([0, 1], [0, 1, 2], num_labels=3)


def test_classification_metrics_by_hand():
    out = classification_metrics(PREDS, REFS, LABELS)
    # neg: TP 2, predicted 2, support 3 -> P 1, R 2/3, F1 = 2*2 / (2*2 + 0 + 1) = 4/5
    # neu: TP 1, predicted 2, support 2 -> P 1/2, R 1/2, F1 1/2
    # pos: TP 3, predicted 4, support 3 -> P 3/4, R 1, F1 = 2*3 / (2*3 + 1 + 0) = 6/7
    assert out["accuracy"] == pytest.approx(6 / 8)
    per_label = out["per_label"]
    assert per_label["neg"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 4 / 5, "support": 3})
    assert per_label["neu"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert per_label["pos"] == pytest.approx({"precision": 0.75, "recall": 1.0, "f1": 6 / 7, "support": 3})
    assert out["macro_f1"] == pytest.approx((4 / 5 + 1 / 2 + 6 / 7) / 3)  # 151/210
    assert json.loads(json.dumps(out)) == out
    assert type(out["accuracy"]) is float and type(out["per_label"]["neg"]["support"]) is int


def test_classification_macro_is_over_labels_that_occur():
    # "other" (id 3) occurs nowhere: listed with zeros, left out of the macro average
    out = classification_metrics(PREDS, REFS, [*LABELS, "other"])
    assert out["macro_f1"] == pytest.approx((4 / 5 + 1 / 2 + 6 / 7) / 3)
    assert out["per_label"]["other"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # a label that is only predicted (id 3) counts, with F1 0; id 2 occurs nowhere
    out = classification_metrics([0, 3], [0, 1], ["a", "b", "c", "d"])
    assert out["macro_f1"] == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    assert out["accuracy"] == pytest.approx(0.5)


def test_classification_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="unique"):
        classification_metrics([0], [0], ["a", "a"])
    with pytest.raises(ValueError, match="empty"):
        classification_metrics([], [], ["a", "b"])
    with pytest.raises(ValueError, match=r"references\[0\] = 2"):
        classification_metrics([0], [2], ["a", "b"])


# --- multi-label --------------------------------------------------------------------------------------------

PROBS = np.array([[0.9, 0.2, 0.6],
                  [0.4, 0.7, 0.1],
                  [0.8, 0.55, 0.3],
                  [0.1, 0.3, 0.95]])
GOLD = np.array([[1, 0, 1],
                 [1, 1, 0],
                 [1, 0, 0],
                 [0, 0, 0]])
# predicted at 0.5: [1,0,1] [0,1,0] [1,1,0] [0,0,1]
#   label 0: TP 2, FP 0, FN 1 -> F1 4/5;  label 1: TP 1, FP 1 -> F1 2/3;  label 2: TP 1, FP 1 -> F1 2/3
#   micro: TP 4, FP 2, FN 1 -> 8 / 11


def test_multilabel_micro_and_macro_by_hand():
    out = multilabel_metrics(PROBS, GOLD)
    assert out["micro_f1"] == pytest.approx(8 / 11)
    assert out["macro_f1"] == pytest.approx((4 / 5 + 2 / 3 + 2 / 3) / 3)
    assert out["threshold"] == 0.5
    assert "grouped_micro_f1" not in out
    assert json.loads(json.dumps(out)) == out


def test_multilabel_threshold_is_inclusive_and_macro_skips_absent_labels():
    # a 4th label never gold and never predicted leaves macro unchanged
    probs = np.hstack([PROBS, np.zeros((4, 1))])
    gold = np.hstack([GOLD, np.zeros((4, 1), dtype=int)])
    assert multilabel_metrics(probs, gold)["macro_f1"] == pytest.approx((4 / 5 + 2 / 3 + 2 / 3) / 3)
    # p >= threshold is positive
    assert multilabel_metrics(np.array([[0.5]]), np.array([[1]]))["micro_f1"] == 1.0
    assert multilabel_metrics(np.zeros((2, 2)), np.zeros((2, 2)))["macro_f1"] == 0.0


def test_grouped_micro_f1_takes_unions_per_group():
    # group a = rows 0, 1: predicted {0,2} | {1} = {0,1,2}; gold {0,2} | {0,1} = {0,1,2} -> TP 3
    # group b = rows 2, 3: predicted {0,1} | {2} = {0,1,2}; gold {0} | {}   = {0}     -> TP 1, FP 2
    # micro over groups: TP 4, FP 2, FN 0 -> 8 / 10
    out = multilabel_metrics(PROBS, GOLD, groups=["a", "a", "b", "b"])
    assert out["grouped_micro_f1"] == pytest.approx(0.8)
    assert out["micro_f1"] == pytest.approx(8 / 11)  # the row-level score is unchanged
    # groups need not be contiguous: a = rows 0, 2 -> pred {0,1,2} vs gold {0,2}: TP 2, FP 1
    #                                b = rows 1, 3 -> pred {1,2} vs gold {0,1}: TP 1, FP 1, FN 1
    # TP 3, FP 2, FN 1 -> 6 / 9
    out = multilabel_metrics(PROBS, GOLD, groups=["a", "b", "a", "b"])
    assert out["grouped_micro_f1"] == pytest.approx(2 / 3)


def test_multilabel_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, L\)"):
        multilabel_metrics(PROBS, GOLD[:, :2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        multilabel_metrics(PROBS * 2, GOLD)
    with pytest.raises(ValueError, match="0/1"):
        multilabel_metrics(PROBS, GOLD * 2)
    with pytest.raises(ValueError, match="one group per row"):
        multilabel_metrics(PROBS, GOLD, groups=["a"])


# --- threshold tuning ---------------------------------------------------------------------------------------


def test_tune_threshold_picks_the_best_grid_value():
    # only thresholds in (0.30, 0.36] separate the positives from the negatives: 0.35 on the default grid
    probs = np.array([[0.9], [0.36], [0.3], [0.2]])
    gold = np.array([[1], [1], [0], [0]])
    assert tune_threshold(probs, gold) == 0.35
    assert type(tune_threshold(probs, gold)) is float


def test_tune_threshold_prefers_the_value_closest_to_half_on_ties():
    # every threshold in (0.3, 0.7] scores F1 = 1
    probs = np.array([[0.9], [0.7], [0.3], [0.2]])
    gold = np.array([[1], [1], [0], [0]])
    assert tune_threshold(probs, gold) == 0.5
    assert tune_threshold(probs, gold, grid=(0.35, 0.45, 0.7)) == 0.45
    assert tune_threshold(probs, gold, grid=(0.6, 0.4)) == 0.4  # equally close: the smaller one
    with pytest.raises(ValueError, match="grid"):
        tune_threshold(probs, gold, grid=())


def test_tune_threshold_with_groups_maximises_the_grouped_score():
    # group a: rows (0.6, gold 0), (0.2, gold 1) -> gold union {x}
    # group b: rows (0.3, gold 0), (0.1, gold 0) -> gold union {}
    # grouped: F1 = 1 for t in (0.3, 0.6] -> 0.5.  Row level: best F1 1/2 for t in (0.1, 0.2] -> 0.2
    probs = np.array([[0.6], [0.2], [0.3], [0.1]])
    gold = np.array([[0], [1], [0], [0]])
    groups = ["a", "a", "b", "b"]
    assert tune_threshold(probs, gold) == 0.2
    assert tune_threshold(probs, gold, groups=groups) == 0.5


# --- NER (seqeval, entity level) ----------------------------------------------------------------------------

NER_REFS = [["B-PER", "I-PER", "O", "B-LOC"],
            ["O", "B-ORG", "I-ORG", "I-ORG"],
            ["B-MISC", "O"]]
NER_PREDS = [["B-PER", "I-PER", "O", "B-ORG"],  # PER exact; LOC predicted as ORG (wrong type)
             ["O", "B-ORG", "I-ORG", "O"],  # ORG one token short (boundary error)
             ["O", "O"]]  # MISC missed
# gold entities 4, predicted 3, correct 1 -> P 1/3, R 1/4, F1 = 2*1 / (2*1 + 2 + 3) = 2/7


def test_ner_metrics_by_hand():
    out = ner_metrics(NER_PREDS, NER_REFS)
    assert out["precision"] == pytest.approx(1 / 3)
    assert out["recall"] == pytest.approx(1 / 4)
    assert out["f1"] == pytest.approx(2 / 7)
    assert out["per_type"] == {
        "LOC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},
        "MISC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},  # never predicted: no warning
        "ORG": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1},  # 2 predicted, neither right
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
    }
    assert json.loads(json.dumps(out)) == out


def test_ner_metrics_edge_cases():
    # conlleval mode: a leading I- tag starts an entity, so this matches B-PER I-PER
    assert ner_metrics([["I-PER", "I-PER"]], [["B-PER", "I-PER"]])["f1"] == 1.0
    # a type that is only predicted has support 0
    out = ner_metrics([["B-X"]], [["O"]])
    assert out["per_type"] == {"X": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}}
    assert out["f1"] == 0.0
    no_entities = {"f1": 0.0, "precision": 0.0, "recall": 0.0, "per_type": {}}
    assert ner_metrics([["O", "O"]], [["O", "O"]]) == no_entities
    assert ner_metrics([("B-PER", "O")], [("B-PER", "O")])["f1"] == 1.0  # tuples work too


def test_ner_metrics_rejects_mismatched_or_bad_input():
    with pytest.raises(ValueError, match="sentence 1: 3 predicted tags but 4 reference tags"):
        ner_metrics([NER_PREDS[0], NER_PREDS[1][:3], NER_PREDS[2]], NER_REFS)
    with pytest.raises(ValueError, match="2 predicted sentences but 3 reference sentences"):
        ner_metrics(NER_PREDS[:2], NER_REFS)
    with pytest.raises(ValueError, match="IOB2"):
        ner_metrics([["PER"]], [["B-PER"]])
