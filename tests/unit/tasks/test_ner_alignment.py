"""tasks.ner: a word's label on its first sub-token (-100 on the rest and on special tokens), with a real WordPiece
tokenizer on words that split into several pieces; predictions back to one tag per word; seqeval scores."""

from __future__ import annotations

import pytest
import torch

from plmkit.tasks.io import TaggedSentence
from plmkit.tasks.ner import NamedEntities, NERConfig, align_labels

IGNORE = -100


def test_align_labels_hand_made_word_ids():
    # [CLS] w0 w0 w1 w2 w2 w2 [SEP]
    word_ids = [None, 0, 0, 1, 2, 2, 2, None]
    assert align_labels(word_ids, [5, 6, 7]) == [IGNORE, 5, IGNORE, 6, 7, IGNORE, IGNORE, IGNORE]


def test_align_labels_edge_cases():
    assert align_labels([], []) == []
    assert align_labels([None, None], []) == [IGNORE, IGNORE]
    assert align_labels([None, 0, 1, 2, None], [1, 0, 2]) == [IGNORE, 1, 0, 2, IGNORE]  # one piece per word
    # the same word id after a special token (sentence pairs) starts again; label 0 is a label, not "ignore"
    assert align_labels([None, 0, 0, None, 0, None], [0]) == [IGNORE, 0, IGNORE, IGNORE, 0, IGNORE]


def test_align_labels_with_a_real_tokenizer(bert_tokenizer):
    words = ["Alice", "wrapped", "the", "paragraph"]
    labels = [1, 0, 0, 2]
    encoded = bert_tokenizer([words], is_split_into_words=True)
    word_ids = encoded.word_ids(0)
    pieces = [word_ids.count(i) for i in range(len(words))]
    assert pieces[0] > 1 and pieces[3] > 1, pieces  # the test needs words that split
    aligned = align_labels(word_ids, labels)
    assert len(aligned) == len(encoded["input_ids"][0])
    assert [a for a in aligned if a != IGNORE] == labels
    for position, (word, label) in enumerate(zip(word_ids, aligned)):
        first = word is not None and (position == 0 or word_ids[position - 1] != word)
        assert label == (labels[word] if first else IGNORE), (position, word)
    assert aligned[0] == IGNORE and aligned[-1] == IGNORE  # [CLS] and [SEP]


def _task(tokenizer, labels=("O", "B-LOC", "I-LOC", "B-PER", "I-PER"), max_length: int = 256) -> NamedEntities:
    task = NamedEntities(NERConfig(max_length=max_length), tokenizer, seed=13)
    task.labels = list(labels)
    return task


SENTENCES = [TaggedSentence(["Alice", "wrapped", "the", "paragraph"], ["B-PER", "O", "O", "O"]),
             TaggedSentence(["New", "York", "lines"], ["B-LOC", "I-LOC", "O"])]


def test_encode_puts_each_word_label_on_its_first_piece(bert_tokenizer):
    task = _task(bert_tokenizer)
    encoded = task.encode(SENTENCES)
    for sentence, example in zip(SENTENCES, encoded):
        tags = [task.labels[i] for i in example["label"] if i != IGNORE]
        assert tags == sentence.tags
        assert len(example["label"]) == len(example["input_ids"])
        assert example["word_labels"] == [task.labels.index(t) for t in sentence.tags]


def test_collate_pads_labels_with_ignore(bert_tokenizer):
    task = _task(bert_tokenizer)
    encoded = task.encode(SENTENCES)
    batch = task.collate(encoded)
    B, T = batch["input_ids"].shape
    assert (B, T) == (2, max(len(e["input_ids"]) for e in encoded))
    assert batch["labels"].shape == (B, T) and batch["labels"].dtype == torch.int64
    for row, example in enumerate(encoded):
        n = len(example["label"])
        assert batch["labels"][row, :n].tolist() == example["label"]
        assert (batch["labels"][row, n:] == IGNORE).all()
        assert (batch["attention_mask"][row, n:] == 0).all()


class _Oracle(torch.nn.Module):
    """Returns logits that predict the given label at every position."""

    def __init__(self, labels: torch.Tensor, num_labels: int):
        super().__init__()
        self.labels, self.num_labels = labels, num_labels

    def forward(self, input_ids, **_):
        logits = torch.zeros(*input_ids.shape, self.num_labels)
        logits.scatter_(-1, self.labels.clamp(min=0).unsqueeze(-1), 10.0)
        return type("Out", (), {"logits": logits.requires_grad_()})()


def test_loss_outputs_one_tag_per_word(bert_tokenizer):
    task = _task(bert_tokenizer)
    batch = task.collate(task.encode(SENTENCES))
    out = task.loss(_Oracle(batch["labels"], len(task.labels)), batch)
    assert out.outputs["prediction"] == [s.tags for s in SENTENCES]
    assert out.outputs["reference"] == [s.tags for s in SENTENCES]
    assert int(out.num_targets) == sum(len(s.tokens) for s in SENTENCES)
    assert task.metrics(out.outputs)["f1"] == pytest.approx(1.0)


def test_words_cut_off_by_max_length_are_predicted_o(bert_tokenizer):
    task = _task(bert_tokenizer, max_length=6)  # [CLS] + 4 pieces + [SEP]: "Alice" takes them all
    sentence = TaggedSentence(["Alice", "wrapped", "Alice"], ["B-PER", "O", "B-PER"])
    batch = task.collate(task.encode([sentence]))
    assert batch["input_ids"].shape[1] <= 6
    out = task.loss(_Oracle(batch["labels"], len(task.labels)), batch)
    prediction = out.outputs["prediction"][0]
    assert len(prediction) == 3 and prediction[0] == "B-PER" and prediction[-1] == "O"
    assert out.outputs["reference"] == [sentence.tags]


def test_metrics_are_entity_level_seqeval(bert_tokenizer):
    task = _task(bert_tokenizer)
    outputs = {"prediction": [["B-PER", "O", "B-LOC", "I-LOC"], ["O", "B-PER"]],
               "reference": [["B-PER", "O", "B-LOC", "O"], ["O", "B-PER"]]}
    scores = task.metrics(outputs)
    # PER: 2 of 2 right; LOC: the predicted span is longer than the true one, so it counts as wrong
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)
    assert scores["PER_f1"] == pytest.approx(1.0) and scores["LOC_f1"] == pytest.approx(0.0)
    assert all(isinstance(v, float) for v in scores.values())


def test_a_word_without_tokens_does_not_shift_later_tags(bert_tokenizer):
    """A word the tokenizer drops entirely (a zero-width space, removed by BERT's normaliser) gets no position: it is
    predicted O and the words after it keep their own predictions."""
    task = _task(bert_tokenizer)
    sentence = TaggedSentence(["Alice", "\u200b", "visited", "York"], ["B-PER", "O", "O", "B-LOC"])
    example = task.encode([sentence])[0]
    assert example["label_words"] == [0, 2, 3]  # no position for word 1
    batch = task.collate([example])
    out = task.loss(_Oracle(batch["labels"], len(task.labels)), batch)
    assert out.outputs["prediction"] == [sentence.tags]
    assert task.metrics(out.outputs)["f1"] == pytest.approx(1.0)
