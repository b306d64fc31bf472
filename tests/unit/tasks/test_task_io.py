"""tasks.io: TSV/CSV/JSONL text examples, HoC labels and groups, NER column files, tag schemes, label sets, errors."""

from __future__ import annotations

import re

import pytest

from plmkit.errors import DataError
from plmkit.tasks.io import (
    TaggedSentence,
    TextExample,
    convert_to_iob2,
    count_overlap,
    detect_scheme,
    label_list,
    read_tagged_sentences,
    read_text_examples,
)


def write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def at(path, line: int) -> str:
    """A regex for the `file:line:` prefix of an error message."""
    return re.escape(f"{path}:{line}:")


# --- text examples: formats and columns -----------------------------------------------------------------------


def test_tsv_default_columns_strip_blank_lines_crlf_and_bom(tmp_path):
    f = write(tmp_path, "train.tsv", b"\xef\xbb\xbfsentence\tlabel\r\nhide new secretions \t0\r\n\r\ngood fun\t1\r\n")
    assert read_text_examples(f) == [TextExample("hide new secretions", None, ["0"]),
                                     TextExample("good fun", None, ["1"])]


def test_text_column_preference_and_label_first(tmp_path):
    f = write(tmp_path, "cs.tsv", "label\ttext_a\n1\t酒店很好\n0\t很差\n")
    assert [(e.text, e.labels) for e in read_text_examples(f)] == [("酒店很好", ["1"]), ("很差", ["0"])]
    g = write(tmp_path, "both.tsv", "sentence\ttext\tlabels\nfrom sentence\tfrom text\tpositive\n")
    assert read_text_examples(g)[0] == TextExample("from text", None, ["positive"])


def test_explicit_columns_and_text_pair(tmp_path):
    f = write(tmp_path, "nli.tsv", "premise\thypothesis\tgold\tid\nA man sleeps.\tA person rests.\tentailment\tx\n")
    [ex] = read_text_examples(f, text_column="premise", text_pair_column="hypothesis", label_column="gold")
    assert ex == TextExample("A man sleeps.", "A person rests.", ["entailment"])


def test_csv_quoted_fields_and_line_numbers(tmp_path):
    f = write(tmp_path, "d.csv", 'text,label\n"hello, world",pos\n"two\nlines",neg\n\nplain,neu\n')
    assert [(e.text, e.labels) for e in read_text_examples(f)] == [
        ("hello, world", ["pos"]), ("two\nlines", ["neg"]), ("plain", ["neu"])]
    g = write(tmp_path, "ragged.csv", 'text,label\n"two\nlines",neg\nno, label, here\n')
    with pytest.raises(DataError, match=at(g, 4) + r" 3 comma-separated fields, but the header \(line 1\) has 2"):
        read_text_examples(g)


@pytest.mark.parametrize("name", ["d.jsonl", "d.json", "D.JSONL"])
def test_jsonl_ints_become_strings_and_blank_lines_skipped(tmp_path, name):
    f = write(tmp_path, name, '{"text": "a", "label": 1}\n\n{"text": " b ", "label": "neg", "extra": [1]}\n')
    assert read_text_examples(f) == [TextExample("a", None, ["1"]), TextExample("b", None, ["neg"])]


def test_unlabeled_files_for_prediction(tmp_path):
    f = write(tmp_path, "p.tsv", "sentence\nfirst\nsecond\n")
    assert read_text_examples(f, require_labels=False) == [TextExample("first", None, []),
                                                           TextExample("second", None, [])]
    g = write(tmp_path, "p.jsonl", '{"text": "x"}\n{"text": "y", "label": "1"}\n{"text": "z", "label": null}\n')
    assert [e.labels for e in read_text_examples(g, require_labels=False)] == [[], ["1"], []]
    h = write(tmp_path, "empty_label.tsv", "text\tlabel\nx\t\n")
    assert read_text_examples(h, require_labels=False)[0].labels == []


# --- multi-label, HoC, groups -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("a,b", ["a", "b"]), ("a;b", ["a", "b"]), ("a|b", ["a", "b"]), ("a, b ,a", ["a", "b"]),
    ("single", ["single"]), ("", []), ("a;b,c", ["a;b", "c"]),
])
def test_multilabel_strings(tmp_path, value, expected):
    f = write(tmp_path, "m.tsv", f"text\tlabels\nsome text\t{value}\n")
    assert read_text_examples(f, multilabel=True)[0].labels == expected


def test_multilabel_json_lists(tmp_path):
    f = write(tmp_path, "m.jsonl", '{"text": "a", "labels": ["x", 3]}\n{"text": "b", "labels": []}\n'
                                   '{"text": "c", "labels": "x|y"}\n')
    assert [e.labels for e in read_text_examples(f, multilabel=True)] == [["x", "3"], [], ["x", "y"]]


def test_hoc_labels_and_groups(tmp_path):
    flags = ",".join(f"{i}_{int(i in (1, 9))}" for i in range(10))
    none = ",".join(f"{i}_0" for i in range(10))
    f = write(tmp_path, "hoc.tsv", f"labels\tsentence\tindex\n{flags}\tFirst .\t22239943_s0\n"
                                   f"{none}\tSecond .\t22239943_s12\n{none}\tThird .\t555_s1_s3\n"
                                   f"{none}\tFourth .\tdoc_sample\n")
    examples = read_text_examples(f, multilabel=True, group_column="index")
    assert [e.labels for e in examples] == [["1", "9"], [], [], []]
    assert [e.group for e in examples] == ["22239943", "22239943", "555_s1", "doc_sample"]
    assert read_text_examples(f, multilabel=True)[0].group is None
    j = write(tmp_path, "hoc.jsonl", '{"text": "x", "labels": ["0_1", "1_0", "2_1"], "doc": 7}\n')
    [ex] = read_text_examples(j, multilabel=True, group_column="doc")
    assert (ex.labels, ex.group) == (["0", "2"], "7")


def test_hoc_labels_without_multilabel_say_what_to_set(tmp_path):
    f = write(tmp_path, "hoc.tsv", "labels\tsentence\n0_0,1_1\tx\n")
    with pytest.raises(DataError, match=at(f, 2) + r" .*pass --task multilabel"):
        read_text_examples(f)


# --- text examples: errors --------------------------------------------------------------------------------------


def test_missing_text_column_names_looked_for_present_and_key(tmp_path):
    f = write(tmp_path, "d.tsv", "review\tlabel\nnice\t1\n")
    with pytest.raises(DataError, match=at(f, 1) + r" no text column \(looked for 'text', 'sentence', 'text_a'; "
                                                   r"columns: 'review', 'label'\); set task\.text_column .*header"):
        read_text_examples(f)
    with pytest.raises(DataError, match=r"looked for 'body'.*task\.text_column"):
        read_text_examples(f, text_column="body")


def test_missing_label_pair_and_group_columns(tmp_path):
    f = write(tmp_path, "d.tsv", "sentence\tstars\nnice\t5\n")
    with pytest.raises(DataError, match=at(f, 1) + r" no label column \(looked for 'label', 'labels'; "
                                                   r"columns: 'sentence', 'stars'\); set task\.label_column"):
        read_text_examples(f)
    with pytest.raises(DataError, match=r"looked for 'text_b'.*task\.text_pair_column"):
        read_text_examples(f, label_column="stars", text_pair_column="text_b")
    with pytest.raises(DataError, match=r"looked for 'index'.*task\.group_column"):
        read_text_examples(f, label_column="stars", group_column="index")
    # texts to predict need no groups (HoC's abstracts only gather scores): the model's saved group_column is let be
    [ex] = read_text_examples(f, multilabel=True, group_column="index", require_labels=False)
    assert ex.text == "nice" and ex.group is None
    j = write(tmp_path, "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n')
    with pytest.raises(DataError, match=at(j, 2) + r" no label key .*keys: 'text'.*task\.label_column"):
        read_text_examples(j)


def test_ragged_tsv_line(tmp_path):
    f = write(tmp_path, "d.tsv", "sentence\tlabel\nok\t1\n\nan extra\ttab\t0\n")
    with pytest.raises(DataError, match=at(f, 4) + r" 3 tab-separated fields, but the header \(line 1\) has 2"):
        read_text_examples(f)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("e.tsv", "", r"empty file; expected a header line"),
    ("e.tsv", "\n\n", r"empty file"),
    ("e.csv", "text,label\n", r"only a header line"),
    ("e.jsonl", "\n", r"no examples"),
])
def test_empty_files(tmp_path, name, content, message):
    f = write(tmp_path, name, content)
    with pytest.raises(DataError, match=re.escape(str(f)) + ": " + message):
        read_text_examples(f)


def test_bad_utf8_names_file_and_line(tmp_path):
    f = write(tmp_path, "d.tsv", b"text\tlabel\nfine\t1\ncaf\xe9\t0\n")
    with pytest.raises(DataError, match=at(f, 3) + r" not valid UTF-8 at byte 21 .*iconv"):
        read_text_examples(f)


def test_malformed_json_and_non_objects(tmp_path):
    f = write(tmp_path, "d.jsonl", '{"text": "a", "label": 1}\n{"text": "b", label: 2}\n')
    with pytest.raises(DataError, match=at(f, 2) + r" not valid JSON"):
        read_text_examples(f)
    g = write(tmp_path, "a.json", '[{"text": "a", "label": 1}]\n')
    with pytest.raises(DataError, match=at(g, 1) + r" expected a JSON object per line, got list; .*jq -c"):
        read_text_examples(g)


def test_bad_values(tmp_path):
    f = write(tmp_path, "d.tsv", "text\tlabel\n  \t1\n")
    with pytest.raises(DataError, match=at(f, 2) + r" empty text in 'text'"):
        read_text_examples(f)
    g = write(tmp_path, "d.csv", "text,label\nx,\n")
    with pytest.raises(DataError, match=at(g, 2) + r" empty label in 'label'.*require_labels=False"):
        read_text_examples(g)
    j = write(tmp_path, "d.jsonl", '{"text": "x", "label": ["a", "b"]}\n{"text": 3, "label": "a"}\n')
    with pytest.raises(DataError, match=at(j, 1) + r" expected one label .*got a list; pass --task multilabel"):
        read_text_examples(j)
    with pytest.raises(DataError, match=at(j, 2) + r" 'text' holds a number, not a string"):
        read_text_examples(j, multilabel=True)


def test_missing_file_folder_and_unknown_extension(tmp_path):
    with pytest.raises(DataError, match=r"nope\.tsv: does not exist"):
        read_text_examples(tmp_path / "nope.tsv")
    with pytest.raises(DataError, match=r"is a folder"):
        read_tagged_sentences(tmp_path)
    f = write(tmp_path, "d.xlsx", "x")
    with pytest.raises(DataError, match=r"unknown file type '\.xlsx'; give a \.tsv, \.csv or \.jsonl"):
        read_text_examples(f)


# --- NER files ----------------------------------------------------------------------------------------------------


def test_conll_columns_docstart_and_sentence_boundaries(tmp_path):
    f = write(tmp_path, "train.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\n"
                                     "-DOCSTART- -X- -X- O\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n")
    assert read_tagged_sentences(f) == [TaggedSentence(["EU", "rejects"], ["B-ORG", "O"]),
                                        TaggedSentence(["Peter", "Blackburn"], ["B-PER", "I-PER"])]


def test_tab_separated_tokens_may_hold_spaces_and_no_final_newline(tmp_path):
    f = write(tmp_path, "d.tsv", "New York\tB-LOC\r\n中\tO\n\n  \t \nlast\tB-X")
    assert read_tagged_sentences(f) == [TaggedSentence(["New York", "中"], ["B-LOC", "O"]),
                                        TaggedSentence(["last"], ["B-X"])]


def test_docstart_inside_a_sentence_ends_it(tmp_path):
    f = write(tmp_path, "d.conll", "a O\n-DOCSTART- O\nb O\n")
    assert [s.tokens for s in read_tagged_sentences(f)] == [["a"], ["b"]]


def test_ner_errors_name_file_and_line(tmp_path):
    f = write(tmp_path, "d.txt", "EU B-ORG\n\nrejects\n")
    with pytest.raises(DataError, match=at(f, 3) + r" expected at least a token and a tag"):
        read_tagged_sentences(f)
    g = write(tmp_path, "g.txt", "EU B-ORG\nx PER\n")
    with pytest.raises(DataError, match=at(g, 2) + r" tag 'PER' is neither 'O' nor B-/I-/E-/S-<TYPE>"):
        read_tagged_sentences(g)
    h = write(tmp_path, "h.txt", "EU B-\n")
    with pytest.raises(DataError, match=at(h, 1) + r" tag 'B-'"):
        read_tagged_sentences(h)


@pytest.mark.parametrize("content", ["", "\n\n", "-DOCSTART- -X- -X- O\n\n"])
def test_ner_empty_files(tmp_path, content):
    f = write(tmp_path, "e.txt", content)
    with pytest.raises(DataError, match=re.escape(str(f)) + r": no sentences"):
        read_tagged_sentences(f)


def test_unlabeled_ner_input_gets_o_tags(tmp_path):
    f = write(tmp_path, "p.txt", "EU\nrejects\n\nPeter B-PER\n")
    assert read_tagged_sentences(f, require_tags=False) == [TaggedSentence(["EU", "rejects"], ["O", "O"]),
                                                            TaggedSentence(["Peter"], ["B-PER"])]


def test_iob1_file_reads_as_iob2(tmp_path):
    f = write(tmp_path, "iob1.txt", "U.N. I-ORG\nofficial O\nEkeus I-PER\nheads O\nfor O\nBaghdad I-LOC\n\n"
                                    "Germany I-LOC\nFrance B-LOC\nand O\nNew I-LOC\nYork I-LOC\n")
    assert [s.tags for s in read_tagged_sentences(f)] == [
        ["B-ORG", "O", "B-PER", "O", "O", "B-LOC"], ["B-LOC", "B-LOC", "O", "B-LOC", "I-LOC"]]


def test_bioes_file_reads_as_iob2(tmp_path):
    f = write(tmp_path, "bioes.txt", "New B-LOC\nYork E-LOC\nis O\nin O\nthe O\nUnited B-LOC\nStates I-LOC\n"
                                     "of I-LOC\nAmerica E-LOC\n\nObama S-PER\nspoke O\n")
    assert [s.tags for s in read_tagged_sentences(f)] == [
        ["B-LOC", "I-LOC", "O", "O", "O", "B-LOC", "I-LOC", "I-LOC", "I-LOC"], ["B-PER", "O"]]


@pytest.mark.parametrize(("tags", "expected"), [
    ([], []),
    (["O", "B-PER", "I-PER", "O"], ["O", "B-PER", "I-PER", "O"]),        # IOB2 unchanged
    (["I-PER", "I-PER", "B-PER", "I-LOC"], ["B-PER", "I-PER", "B-PER", "B-LOC"]),  # IOB1
    (["O", "I-ORG", "I-PER"], ["O", "B-ORG", "B-PER"]),                   # IOB1: a type change starts an entity
    (["S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"], ["B-PER", "B-LOC", "I-LOC", "I-LOC", "B-LOC"]),  # BIOES
    (["B-LOC", "E-LOC", "E-LOC"], ["B-LOC", "I-LOC", "B-LOC"]),           # an E- after E- starts a new entity
])
def test_convert_to_iob2(tags, expected):
    assert convert_to_iob2(tags) == expected


def test_convert_to_iob2_rejects_unknown_tags():
    with pytest.raises(ValueError, match=r"tag 'U-PER'"):
        convert_to_iob2(["U-PER"])


@pytest.mark.parametrize(("sentences", "scheme"), [
    ([["O", "B-PER", "I-PER"], ["B-LOC"]], "IOB2"),
    ([["I-PER", "I-PER", "O"], ["I-LOC", "B-LOC"]], "IOB1"),
    ([["B-PER", "E-PER"], ["I-LOC"]], "BIOES"),
    ([["O", "O"], ["S-LOC"]], "BIOES"),
    ([["I-PER", "O"], ["O", "B-LOC", "I-LOC"]], "IOB2"),  # mostly IOB2, one stray I- start (as in MSRA)
    ([["O"], []], "IOB2"),                                # no entities: IOB1 and IOB2 read the same
    ([["I-PER", "B-PER"]], "IOB1"),                      # B- only between two same-type entities
])
def test_detect_scheme(sentences, scheme):
    assert detect_scheme(sentences) == scheme


# --- label sets and overlap -------------------------------------------------------------------------------------


def test_label_list_for_ner_o_first_then_type_then_b_before_i():
    sentences = [TaggedSentence(["a", "b"], ["B-PER", "I-PER"]), TaggedSentence(["c", "d"], ["B-LOC", "O"]),
                 TaggedSentence(["e"], ["B-MISC"])]
    assert label_list(sentences) == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-PER", "I-PER"]
    assert label_list([TaggedSentence(["x"], ["O"])]) == ["O"]


def test_label_list_for_text_examples():
    assert label_list([TextExample("a", None, ["positive"]), TextExample("b", None, ["negative"]),
                       TextExample("c", None, ["positive"])]) == ["negative", "positive"]
    assert label_list([TextExample("a", None, ["10", "2"]), TextExample("b", None, []),
                       TextExample("c", None, ["-1"])]) == ["-1", "2", "10"]
    assert label_list([TextExample("a", None, ["10", "2", "b"])]) == ["10", "2", "b"]
    assert label_list([]) == []


def test_label_list_rejects_mixed_or_foreign_items():
    with pytest.raises(TypeError, match=r"both TextExample and TaggedSentence"):
        label_list([TextExample("a", None, ["x"]), TaggedSentence(["a"], ["O"])])
    with pytest.raises(TypeError, match=r"got str"):
        label_list(["x"])


def test_count_overlap_strips_and_counts_each_eval_text():
    train = ["a good film ", "bad", "bad"]
    assert count_overlap(train, [" a good film", "bad", "bad", "new"]) == 3
    assert count_overlap(iter(train), iter([])) == 0
    assert count_overlap([], ["x"]) == 0


@pytest.mark.parametrize(("name", "joiner"), [("d.tsv", " "), ("d.csv", "，"), ("d.tsv", ","), ("d.csv", "\t")])
def test_a_header_joined_by_another_separator_says_so(tmp_path, name, joiner):
    f = write(tmp_path, name, f"label{joiner}text_a\n1{joiner}good\n")
    shown = re.escape(repr(joiner))
    with pytest.raises(DataError, match=rf"the header is one column whose name holds {shown}: the file looks "
                                        rf"separated by {shown}, and plmkit reads \.tsv files split on tabs"):
        read_text_examples(f)


def test_a_txt_file_of_texts_is_read_for_prediction_only(tmp_path):
    f = write(tmp_path, "texts.txt", "好极了\n\n  a plain line, with a comma\t and a tab \n")
    examples = read_text_examples(f, require_labels=False)
    assert [e.text for e in examples] == ["好极了", "a plain line, with a comma\t and a tab"]
    assert all(e.labels == [] and e.text_pair is None for e in examples)
    with pytest.raises(DataError, match=r"unknown file type '\.txt'.*a \.txt file of one text per line is read for "
                                        r"plm predict"):
        read_text_examples(f)  # training and evaluation need labels: a header and columns
    with pytest.raises(DataError, match=r"this model reads text pairs \('text_b'\); give a \.tsv with both columns"):
        read_text_examples(f, require_labels=False, text_pair_column="text_b")
