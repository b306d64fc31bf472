"""tasks.io NER edge cases: a token that is a space (` <TAB>O` in character-level Chinese files) stays a token
and keeps its tag through encoding and prediction; a file of plain sentences stops with a message saying how
to split it, while token-per-line files never trip that check; BMES tags (`M-` inside) read as IOB2."""

from __future__ import annotations

import json
import re

import pytest
import torch

from plmkit import api
from plmkit.errors import DataError
from plmkit.tasks.io import TaggedSentence, convert_to_iob2, detect_scheme, label_list, read_tagged_sentences
from plmkit.tasks.ner import NamedEntities, NERConfig

IGNORE = -100


def write(tmp_path, name: str, content: str):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def at(path, line: int) -> str:
    """A regex for the `file:line:` prefix of an error message."""
    return re.escape(f"{path}:{line}:")


# --- a token that is a space --------------------------------------------------------------------------------

CHARS_WITH_SPACES = "我\tO\n爱\tO\n \tO\nN\tB-LOC\ne\tI-LOC\nw\tI-LOC\n \tI-LOC\nY\tI-LOC\no\tI-LOC\n\n好\tO\n"


@pytest.mark.parametrize("require_tags", [True, False])
def test_a_space_token_on_a_tab_separated_line_is_a_token(tmp_path, require_tags):
    f = write(tmp_path, "zh.tsv", CHARS_WITH_SPACES)
    assert read_tagged_sentences(f, require_tags=require_tags) == [
        TaggedSentence(["我", "爱", " ", "N", "e", "w", " ", "Y", "o"],
                       ["O", "O", "O", "B-LOC", "I-LOC", "I-LOC", "I-LOC", "I-LOC", "I-LOC"]),
        TaggedSentence(["好"], ["O"])]


def test_other_whitespace_tokens_and_trimmed_fields(tmp_path):
    # a tab (inside no field) before the token, spaces around fields and an empty middle field are dropped as
    # before; a whitespace-only first field is the token as it is
    f = write(tmp_path, "d.tsv", "EU \t B-ORG\n\tx\t\tO\n  \tO\n\u3000\tO\n")
    assert read_tagged_sentences(f) == [TaggedSentence(["EU", "x", "  ", "\u3000"], ["B-ORG", "O", "O", "O"])]


@pytest.mark.parametrize("blank", [" ", "  ", "\t", " \t", "\t ", "  \t ", "\t\t"])
def test_lines_of_only_spaces_and_tabs_still_end_sentences(tmp_path, blank):
    f = write(tmp_path, "d.tsv", f"a\tB-PER\n{blank}\nb\tO\n")
    assert [s.tokens for s in read_tagged_sentences(f)] == [["a"], ["b"]]
    g = write(tmp_path, "p.txt", f"a\n{blank}\nb\n")  # tokens only: a space token there is ` <TAB>O`
    assert [s.tokens for s in read_tagged_sentences(g, require_tags=False)] == [["a"], ["b"]]


def test_a_space_token_in_a_tokens_only_file_is_written_with_its_tag(tmp_path):
    f = write(tmp_path, "p.txt", "我\n \tO\n爱\n")
    assert read_tagged_sentences(f, require_tags=False) == [TaggedSentence(["我", " ", "爱"], ["O", "O", "O"])]


def test_a_space_token_separated_by_spaces_says_to_use_a_tab(tmp_path):
    f = write(tmp_path, "d.txt", "我 O\n  O\n")
    with pytest.raises(DataError, match=at(f, 2) + r" expected at least a token and a tag.*got 'O'.*"
                                        r"a token that is a space needs a tab between it and its tag"):
        read_tagged_sentences(f)


class _Oracle(torch.nn.Module):
    """Returns logits that predict the given label at every position."""

    def __init__(self, labels: torch.Tensor, num_labels: int):
        super().__init__()
        self.labels, self.num_labels = labels, num_labels

    def forward(self, input_ids, **_):
        logits = torch.zeros(*input_ids.shape, self.num_labels)  # (B, T, L)
        logits.scatter_(-1, self.labels.clamp(min=0).unsqueeze(-1), 10.0)
        return type("Out", (), {"logits": logits.requires_grad_()})()


def test_a_space_token_keeps_one_tag_per_token_through_encoding_and_predictions(bert_tokenizer, tmp_path):
    """The space gets no sub-token (BERT's pre-tokenizer drops it), so it has no labelled position: it is
    predicted O and the tokens after it keep their own tags, one tag per input token."""
    data = write(tmp_path, "zh.tsv", "Alice\tB-PER\n \tO\nNew\tB-LOC\nYork\tI-LOC\n\nBob\tB-PER\n \tO\n")
    sentences = read_tagged_sentences(data)
    task = NamedEntities(NERConfig(), bert_tokenizer, seed=13)
    task.labels = label_list(sentences)
    encoded = task.encode(sentences)
    assert encoded[0]["label_words"] == [0, 2, 3]  # no position for the space
    assert encoded[1]["label_words"] == [0]
    for sentence, example in zip(sentences, encoded):
        assert len(example["word_labels"]) == len(sentence.tokens)
        assert [task.labels[i] for i in example["label"] if i != IGNORE] == [
            tag for token, tag in zip(sentence.tokens, sentence.tags) if token.strip()]
    batch = task.collate(encoded)
    out = task.loss(_Oracle(batch["labels"], len(task.labels)), batch)
    assert out.outputs["prediction"] == [s.tags for s in sentences]
    assert [len(row["tags"]) for row in task.decode(out.outputs)] == [4, 2]
    assert task.metrics(out.outputs)["f1"] == pytest.approx(1.0)


def test_predict_returns_the_space_token_with_a_tag(finetune_cfg, task_files, tmp_path):
    train, dev = task_files("ner", tmp_path / "data", n_train=16, n_dev=8)
    api.finetune(finetune_cfg("ner", train, dev, tmp_path / "run", "train.epochs=1"), show_progress=False)
    data = write(tmp_path, "tagged.tsv", "我\tO\n爱\tO\n \tO\nNew\tB-LOC\nYork\tI-LOC\n\nAlice\n \tO\nBob\n")
    out = tmp_path / "tags.jsonl"
    assert api.predict(tmp_path / "run" / "final", "ner", data, out, show_progress=False)["examples"] == 2
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["tokens"] for r in rows] == [["我", "爱", " ", "New", "York"], ["Alice", " ", "Bob"]]
    assert [len(r["tags"]) for r in rows] == [5, 3]
    assert rows[0]["tags"][2] == "O" and rows[1]["tags"][1] == "O"  # no sub-token, so predicted O


# --- a file of plain sentences ------------------------------------------------------------------------------

ZH_SENTENCES = "中国外交部发言人秦刚在北京表示，中方愿意同各方一道努力，推动两国关系健康稳定发展。\n我们要坚持改革开放。\n"


@pytest.mark.parametrize(("content", "line"), [
    (ZH_SENTENCES, 1),                                                              # Chinese, one per line
    ("我\tO\n爱\tO\n\n这是一句很长的中文句子没有标点但是比任何一个词都要长得多\n", 4),  # longer than any CJK token
    ("好\tO\n\n今天天气很好。\n", 3),                                                # short, with punctuation
    ("EU rejects German call to boycott British lamb .\nPeter Blackburn\n", 1),     # English
    ("中国 外交部 发言人 秦刚 在 北京 表示 ，\n", 1),                                 # segmented, spaces
])
@pytest.mark.parametrize("require_tags", [False, True])
def test_plain_sentences_stop_with_a_message_on_the_format(tmp_path, content, line, require_tags):
    f = write(tmp_path, "sentences.txt", content)
    reads = "an NER file holds" if require_tags else "NER prediction reads"
    with pytest.raises(DataError, match=at(f, line) + r" this line looks like a whole sentence \(.*\), but "
                                        + reads + r" one token per line.*blank line between sentences.*"
                                        r"for Chinese, one character per line"):
        read_tagged_sentences(f, require_tags=require_tags)


def test_a_long_sentence_is_shortened_in_the_message(tmp_path):
    f = write(tmp_path, "s.txt", ZH_SENTENCES)
    with pytest.raises(DataError) as e:
        read_tagged_sentences(f, require_tags=False)
    assert "('中国外交部发言人秦刚在北京表示，中方愿意同各方一道努力，推动...')" in str(e.value)


@pytest.mark.parametrize("content", [
    "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n. . O O\n\nS.AFRICA NNP I-NP I-LOC\n",
    "当\tO\n希\tO\n望\tO\n，\tO\n。\tO\n\n中\tB-ORG\n",                               # MSRA characters
    ("2,3,7,8-tetrachlorodibenzo-p-dioxin\tO\nN-(4-hydroxyphenyl)retinamide\tO\n"
     "dentatorubropallidoluysian\tB-Disease\n"),                                     # biomedical tokens
    ("中华人民共和国国务院\tB-ORG\n中国人民政治协商会议全国委员会\tB-ORG\n"
     "阿卜杜拉·艾哈迈德·巴达维\tB-PER\n表示\tO\n，\tO\n"),                            # word-segmented Chinese
    "中国 NR B-GPE\n外交部 NN O\n， PU O\n",                                         # Chinese, space-separated
    "新しい\tO\n東京都\tB-LOC\n서울특별시\tB-LOC\n",                                 # kana and Hangul tokens
    "New York City Hall\tB-LOC\nis\tO\n",                                            # a token with spaces
    "一二三四五六七八九十一二三四五六七八九十\tO\n",                                 # CJK token at the limit (20)
])
@pytest.mark.parametrize("require_tags", [True, False])
def test_token_per_line_files_are_not_taken_for_sentences(tmp_path, content, require_tags):
    f = write(tmp_path, "d.txt", content)
    assert read_tagged_sentences(f, require_tags=require_tags)


@pytest.mark.parametrize(("line", "tag"), [
    ("EU B-ORG NNP", "NNP"), ("EU NNP PER", "PER"), ("Peter Blackburn", "Blackburn"),
])
def test_misplaced_or_bad_tags_keep_the_tag_message(tmp_path, line, tag):
    f = write(tmp_path, "d.txt", f"a O\n{line}\n")
    with pytest.raises(DataError, match=at(f, 2) + f" tag '{tag}' is neither 'O' nor B-/I-/E-/S-<TYPE>.*"
                                                   "the tag must be the last field on the line"):
        read_tagged_sentences(f)


# --- BMES ---------------------------------------------------------------------------------------------------


def test_bmes_file_reads_as_iob2(tmp_path):
    f = write(tmp_path, "bmes.txt", "张\tB-NAME\n三\tE-NAME\n在\tO\n北\tB-LOC\n京\tM-LOC\n市\tE-LOC\n\n"
                                    "华\tB-ORG\n为\tM-ORG\n公\tM-ORG\n司\tE-ORG\n好\tS-LOC\n")
    sentences = read_tagged_sentences(f)
    assert [s.tags for s in sentences] == [["B-NAME", "I-NAME", "O", "B-LOC", "I-LOC", "I-LOC"],
                                           ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "B-LOC"]]
    assert label_list(sentences) == ["O", "B-LOC", "I-LOC", "B-NAME", "I-NAME", "B-ORG", "I-ORG"]


@pytest.mark.parametrize(("tags", "expected"), [
    (["B-PER", "M-PER", "M-PER", "E-PER", "S-LOC"], ["B-PER", "I-PER", "I-PER", "I-PER", "B-LOC"]),
    (["M-PER", "E-PER"], ["B-PER", "I-PER"]),                       # a stray M- starts an entity, as I- does
    (["B-PER", "M-LOC", "E-LOC"], ["B-PER", "B-LOC", "I-LOC"]),      # a type change starts one too
    (["B-PER", "E-PER", "M-PER"], ["B-PER", "I-PER", "B-PER"]),      # after E-, like BIOES's I- after E-
])
def test_convert_to_iob2_reads_m_as_inside(tags, expected):
    assert convert_to_iob2(tags) == expected


@pytest.mark.parametrize(("sentences", "scheme"), [
    ([["B-PER", "M-PER", "E-PER"], ["S-LOC"]], "BMES"),
    ([["O"], ["B-PER", "E-PER"], ["B-LOC", "M-LOC", "E-LOC"]], "BMES"),
    ([["B-PER", "E-PER"], ["S-LOC"]], "BIOES"),                     # no M-: as before
])
def test_detect_scheme_names_bmes(sentences, scheme):
    assert detect_scheme(sentences) == scheme


def test_unknown_tags_name_bmes_among_the_schemes(tmp_path):
    expected = (r"neither 'O' nor B-/I-/E-/S-<TYPE> or M-<TYPE> "
                r"\(schemes IOB1, IOB2, BIOES, BMES; e\.g\. B-PER\)")
    f = write(tmp_path, "d.txt", "张\tB-PER\n三\tM-PER\n四\tE-PER\n北\tU-LOC\n")  # BMES mixed with BILOU's U-
    with pytest.raises(DataError, match=at(f, 4) + r" tag 'U-LOC' is " + expected):
        read_tagged_sentences(f)
    with pytest.raises(ValueError, match=r"tag 'L-PER' is " + expected):
        convert_to_iob2(["B-PER", "L-PER"])


def test_a_file_mixing_bmes_with_iob2_reads_like_one_mixing_bioes_with_iob2(tmp_path):
    # mixed known schemes never stopped the reader (IOB2 + BIOES reads); M- reads exactly as I- does there
    mixed = "a\tB-PER\nb\tI-PER\nc\tM-PER\nd\tE-PER\n\ne\tS-LOC\nf\tM-LOC\ng\tO\nh\tM-ORG\ni\tI-ORG\n"
    bmes = read_tagged_sentences(write(tmp_path, "bmes.txt", mixed))
    assert bmes == read_tagged_sentences(write(tmp_path, "bioes.txt", mixed.replace("M-", "I-")))
    assert [s.tags for s in bmes] == [["B-PER", "I-PER", "I-PER", "I-PER"],
                                      ["B-LOC", "B-LOC", "O", "B-ORG", "I-ORG"]]
