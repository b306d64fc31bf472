"""Read fine-tuning data: labeled texts from TSV, CSV or JSONL files, and NER column files (CoNLL style) as IOB2.

    examples = read_text_examples("data/sst2/train.tsv"); sentences = read_tagged_sentences("data/conll/train.txt")
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from plmkit.data.sources import json_record, reencode_hint
from plmkit.errors import DataError

TEXT_COLUMNS = ("text", "sentence", "text_a")  # looked for in this order when task.text_column is unset
LABEL_COLUMNS = ("label", "labels")  # likewise for task.label_column
FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
LABEL_SEPARATORS = (",", ";", "|")  # a multi-label string is split on the first of these it contains

_HOC_ITEM = re.compile(r"(\d+)_([01])")  # HoC labels: `0_0,1_1,...,9_0` -> hallmark ids whose flag is 1
_GROUP_SUFFIX = re.compile(r"(.*)_s\d+")  # `<PMID>_s<sentence number>` -> `<PMID>`
_TAG = re.compile(r"O|[BIMES]-\S+")  # IOB1, IOB2, BIOES and BMES (whose M- is BIOES's I-)
TAG_FORMS = "B-/I-/E-/S-<TYPE> or M-<TYPE> (schemes IOB1, IOB2, BIOES, BMES; e.g. B-PER)"
"""What an NER tag may be besides `O`, as error messages say it."""
# Han, kana, Hangul: a token-per-line file never has a token of these this long, nor one with sentence
# punctuation inside it (word-segmented files put `，` and `。` on lines of their own); a whole sentence does.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def is_cjk(text: str) -> bool:
    """Whether text holds Han, kana or Hangul: scripts written without spaces between words."""
    return _CJK.search(text) is not None
_CJK_SENTENCE_PUNCTUATION = re.compile(r"[，。！？；]")
LONGEST_CJK_TOKEN = 20
"""A token with CJK characters longer than this is taken for a whole sentence (MSRA's are 1 character)."""
_INTEGER = re.compile(r"-?\d+")


@dataclass
class TextExample:
    """One text (or text pair) with its labels."""

    text: str
    """The text, stripped of surrounding whitespace."""
    text_pair: str | None
    """The second text of a pair task (task.text_pair_column), else None."""
    labels: list[str]
    """One label for single-label classification; any number (maybe none) for multi-label; [] when unlabeled."""
    group: str | None = None
    """The unit that examples are grouped by for evaluation (e.g. the HoC abstract id), else None."""


@dataclass
class TaggedSentence:
    """One sentence of an NER file: its tokens and one IOB2 tag per token."""

    tokens: list[str]
    tags: list[str]
    """IOB2 tags (`O`, `B-<TYPE>`, `I-<TYPE>`), whatever the scheme of the file."""


# --- text classification --------------------------------------------------------------------------------------


def read_text_examples(path: str | Path, *, text_column: str | None = None, text_pair_column: str | None = None,
                       label_column: str | None = None, multilabel: bool = False,
                       group_column: str | None = None, require_labels: bool = True) -> list[TextExample]:
    """Read labeled (or, for prediction, unlabeled) texts from a .tsv, .csv or .jsonl/.json file, or, for
    prediction, a .txt file of one text per line (no header).

    TSV and CSV files start with a header line naming the columns; JSONL files hold one JSON object per line.
    Blank lines are skipped. Multi-label values are JSON lists or strings split on `,` (else `;` or `|`); the
    HoC encoding `0_0,1_1,...,9_1` becomes the ids flagged 1 (here `["1", "9"]`).

    Args:
        path: the data file; its extension picks the format.
        text_column: the column holding the text; default the first of `text`, `sentence`, `text_a`.
        text_pair_column: the column holding the second text of a pair task (e.g. `text_b`); default none.
        label_column: the column holding the labels; default `label` or `labels`.
        multilabel: each row holds any number of labels, not exactly one.
        group_column: a column such as HoC's `index` (`12345_s3`); the group is the value without its
            `_s<digits>` suffix (`12345`), or the whole value if it has none.
        require_labels: if False (prediction), the label column may be missing; rows then get `labels=[]`.

    Returns:
        The examples, in file order.

    Raises:
        DataError: the file is missing, empty, not UTF-8 or of an unknown format; a column is missing; a line is
            ragged, not valid JSON, or holds an empty text or label. The message names the file and the line.
    """
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None and path.suffix.lower() == ".txt" and not require_labels:  # texts to predict, one per line
        if text_pair_column:
            raise DataError(f"{path}: a .txt file holds one text per line, and this model reads text pairs "
                            f"({text_pair_column!r}); give a .tsv with both columns")
        examples = [TextExample(text=line.strip(), text_pair=None, labels=[])
                    for _, line in _lines(_read_text(path)) if line.strip()]
        if not examples:
            raise DataError(f"{path}: no text; expected one text per line")
        return examples
    if kind is None:
        also = "; a .txt file of one text per line is read for plm predict" if path.suffix.lower() == ".txt" else ""
        raise DataError(f"{path}: unknown file type {path.suffix!r}; give a .tsv, .csv or .jsonl (.json) "
                        f"file{also}")
    text = _read_text(path)
    options = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column,
               "group_column": group_column, "require_labels": require_labels}
    examples = []
    if kind == "jsonl":
        for lineno, record in _jsonl_records(path, text):
            columns = _find_columns(f"{path}:{lineno}", list(record), "keys", **options)
            examples.append(_example(f"{path}:{lineno}", record, columns, multilabel, require_labels))
        if not examples:
            raise DataError(f"{path}: no examples; expected one JSON object per line, "
                            'e.g. {"text": "...", "label": "positive"}')
        return examples

    rows = _table_rows(path, text, kind)
    if not rows:
        header_hint = "sentence<TAB>label" if kind == "tsv" else "sentence,label"
        raise DataError(f"{path}: empty file; expected a header line (e.g. {header_hint}) and one example per line")
    header_line, header = rows[0]
    header = [name.strip() for name in header]
    columns = _find_columns(f"{path}:{header_line}", header, "columns", **options)
    separator = "tab" if kind == "tsv" else "comma"
    for lineno, fields in rows[1:]:
        if len(fields) != len(header):
            fix = ("check for a stray or missing tab" if kind == "tsv"
                   else "quote fields that contain commas, e.g. \"a, b\"")
            raise DataError(f"{path}:{lineno}: {len(fields)} {separator}-separated fields, but the header "
                            f"(line {header_line}) has {len(header)}; {fix}")
        examples.append(_example(f"{path}:{lineno}", dict(zip(header, fields)), columns, multilabel, require_labels))
    if not examples:
        raise DataError(f"{path}: only a header line, no examples; add one example per line below the header")
    return examples


def _read_text(path: Path) -> str:
    """The whole file decoded as strict UTF-8, without a byte-order mark."""
    if not path.is_file():
        problem = "is a folder, not a data file" if path.is_dir() else "does not exist"
        raise DataError(f"{path}: {problem}; fix the path to the data file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}:{lineno}: not valid UTF-8 at byte {e.start} ({e.reason}); "
                        f"{reencode_hint(path)}") from None
    return text.removeprefix("\ufeff")


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its `\\n` or `\\r\\n` ending)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the file ends with a newline
    for lineno, line in enumerate(lines, start=1):
        yield lineno, line.removesuffix("\r")


def _table_rows(path: Path, text: str, kind: str) -> list[tuple[int, list[str]]]:
    """(first line number, fields) of each non-blank row, header included."""
    if kind == "tsv":
        return [(lineno, line.split("\t")) for lineno, line in _lines(text) if line.strip()]
    rows = []
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for fields in reader:
            if any(field.strip() for field in fields):
                rows.append((start, fields))
            start = reader.line_num + 1  # a quoted field may span lines
    except csv.Error as e:
        raise DataError(f"{path}:{start}: malformed CSV ({e}); check the quotes on this line") from None
    return rows


def _jsonl_records(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    for lineno, line in _lines(text):
        if not line.strip():
            continue
        record = json_record(path, lineno, line)
        yield lineno, record


def _find_columns(where: str, names: list[str], noun: str, *, text_column: str | None,
                  text_pair_column: str | None, label_column: str | None, group_column: str | None,
                  require_labels: bool) -> tuple[str, str | None, str | None, str | None]:
    """(text, pair, label, group) column names among `names`; label is None when absent and not required."""
    present = f"{noun}: {', '.join(map(repr, names)) or 'none'}"
    header_hint = "; the first line must be a header naming the columns" if noun == "columns" else ""
    lumped = next((sep for sep in ("\t", ",", " ", "，", ";", "|") if len(names) == 1 and sep in names[0].strip()),
                  None)
    if noun == "columns" and lumped is not None:  # one column whose name holds several: another separator
        header_hint += (f"; the header is one column whose name holds {lumped!r}: the file looks separated by "
                        f"{lumped!r}, and plmkit reads .tsv files split on tabs and .csv files on commas")

    def missing(what: str, looked_for: tuple[str, ...], key: str, fix: str, hint: str = "") -> DataError:
        wanted = ", ".join(map(repr, looked_for))
        return DataError(f"{where}: no {what} {noun[:-1]} (looked for {wanted}; {present}); "
                         f"set {key} to the {noun[:-1]} that {fix}{hint}")

    text_names = (text_column,) if text_column else TEXT_COLUMNS
    text = next((n for n in text_names if n in names), None)
    if text is None:
        raise missing("text", text_names, "task.text_column", "holds the text", header_hint)
    if text_pair_column and text_pair_column not in names:
        raise missing("text-pair", (text_pair_column,), "task.text_pair_column",
                      "holds the second text (or unset it for single-text tasks)")
    label_names = (label_column,) if label_column else LABEL_COLUMNS
    label = next((n for n in label_names if n in names), None)
    if label is None and require_labels:
        raise missing("label", label_names, "task.label_column", "holds the labels")
    if group_column and group_column not in names:
        if not require_labels:  # groups only gather scores (HoC's abstracts): texts to predict need none
            return text, text_pair_column, label, None
        raise missing("group", (group_column,), "task.group_column", "holds the group ids (or unset it)")
    return text, text_pair_column, label, group_column


def _example(where: str, record: dict, columns: tuple[str, str | None, str | None, str | None],
             multilabel: bool, require_labels: bool) -> TextExample:
    text_col, pair_col, label_col, group_col = columns
    text = _text(where, record[text_col], text_col)
    pair = _text(where, record[pair_col], pair_col) if pair_col else None
    value = record.get(label_col) if label_col else None
    labels = _labels(where, value, label_col, multilabel) if value is not None else []
    if require_labels and not labels and not multilabel:
        raise DataError(f"{where}: empty label in {label_col!r}; fill in the label or drop the line "
                        "(unlabeled data for prediction is read with require_labels=False)")
    group = _group(where, record[group_col], group_col) if group_col else None
    return TextExample(text=text, text_pair=pair, labels=labels, group=group)


def _text(where: str, value: object, column: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: {column!r} holds {_kind(value)}, not a string; "
                        "set task.text_column (or task.text_pair_column) to a text column")
    if not value.strip():
        raise DataError(f"{where}: empty text in {column!r}; fill it in or drop the line")
    return value.strip()


def _labels(where: str, value: object, column: str, multilabel: bool) -> list[str]:
    """The labels of one row; [] for an empty value (the caller decides whether that is allowed)."""
    if not multilabel:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            hint = "; pass --task multilabel if rows have several labels" if isinstance(value, list) else ""
            raise DataError(f"{where}: expected one label (a string or an integer) in {column!r}, "
                            f"got {_kind(value)}{hint}")
        label = str(value).strip()
        if "," in label and _decode_hoc(label.split(",")) is not None:
            raise DataError(f"{where}: {column!r} holds a HoC-style label list ({label[:30]}...); "
                            "pass --task multilabel (task.name: multilabel)")
        return [label] if label else []
    if isinstance(value, list):
        items = [_label_item(where, item, column) for item in value]
    elif isinstance(value, (str, int)) and not isinstance(value, bool):
        items = _split_labels(str(value))
    else:
        raise DataError(f"{where}: expected a list of labels or a string such as 'a,b' in {column!r}, "
                        f"got {_kind(value)}")
    items = [item.strip() for item in items if item.strip()]
    decoded = _decode_hoc(items)
    return list(dict.fromkeys(decoded if decoded is not None else items))  # drop repeats, keep order


def _label_item(where: str, item: object, column: str) -> str:
    if isinstance(item, bool) or not isinstance(item, (str, int)):
        raise DataError(f"{where}: the label list in {column!r} holds {_kind(item)}; "
                        "labels must be strings or integers")
    return str(item)


def _split_labels(value: str) -> list[str]:
    separator = next((s for s in LABEL_SEPARATORS if s in value), None)
    return value.split(separator) if separator else [value]


def _decode_hoc(items: list[str]) -> list[str] | None:
    """HoC flags (`0_0`, `1_1`, ...) -> the ids flagged 1; None unless every item is such a flag."""
    matches = [_HOC_ITEM.fullmatch(item.strip()) for item in items]
    if not matches or not all(matches):
        return None
    return [m.group(1) for m in matches if m.group(2) == "1"]


def _kind(value: object) -> str:
    """How a JSON value reads in a message: `a number`, `a list`, `null`, ..."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    kinds = {int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return kinds.get(type(value), f"a {type(value).__name__}")


def _group(where: str, value: object, column: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(f"{where}: {column!r} holds {_kind(value)}; group ids must be strings "
                        "(set task.group_column to another column or unset it)")
    value = str(value).strip()
    match = _GROUP_SUFFIX.fullmatch(value)
    return (match.group(1) if match else value) or None


# --- NER ------------------------------------------------------------------------------------------------------


def read_tagged_sentences(path: str | Path, *, require_tags: bool = True) -> list[TaggedSentence]:
    """Read an NER column file (.txt, .tsv, .conll): one token per line, sentences separated by blank lines.

    Fields are separated by tabs (if the line has one) or spaces; the token is the first field and the tag the
    last, so `EU NNP B-NP B-ORG` and `EU<TAB>B-ORG` both read as (`EU`, `B-ORG`). On a tab-separated line the
    token may hold spaces or be one (` <TAB>O`, as in character-level Chinese files with English in them); a
    line of only spaces and tabs ends a sentence. `-DOCSTART-` lines are skipped. IOB1, BIOES and BMES tags
    are converted to IOB2 (see `convert_to_iob2`), and so are `I-` tags that start an entity in an IOB2 file
    (they become `B-`).

    Args:
        path: the data file.
        require_tags: if False (prediction), a line may hold only a token; its tag is then `O`.

    Returns:
        The non-empty sentences, in file order, with IOB2 tags.

    Raises:
        DataError: the file is missing, empty or not UTF-8; a line lacks a tag; a tag is neither `O` nor
            `B-`, `I-`, `M-`, `E-` or `S-` followed by a type; a line holds a whole sentence, not one token
            (see `_looks_like_a_sentence`). The message names the file and the line.
    """
    path = Path(path)
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    for lineno, line in _lines(_read_text(path)):
        fields = _fields(line)
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                sentences.append(TaggedSentence(tokens=tokens, tags=tags))
                tokens, tags = [], []
            continue
        if _looks_like_a_sentence(line, fields):
            raise DataError(_sentence_message(f"{path}:{lineno}", line, require_tags))
        if len(fields) == 1 and require_tags:
            space_hint = ("; a token that is a space needs a tab between it and its tag (` <TAB>O`)"
                          if line[:1] == " " and _TAG.fullmatch(fields[0]) else "")
            raise DataError(f"{path}:{lineno}: expected at least a token and a tag (separated by a tab or spaces), "
                            f"got {line.strip()!r}; add the tag as the last field{space_hint}")
        tag = fields[-1] if len(fields) > 1 else "O"
        if not _TAG.fullmatch(tag):
            raise DataError(f"{path}:{lineno}: tag {tag!r} is neither 'O' nor {TAG_FORMS}; "
                            "the tag must be the last field on the line")
        tokens.append(fields[0])
        tags.append(tag)
    if tokens:
        sentences.append(TaggedSentence(tokens=tokens, tags=tags))
    if not sentences:
        raise DataError(f"{path}: no sentences; expected one token per line followed by its tag "
                        "(e.g. `EU B-ORG`), with a blank line between sentences")
    for sentence in sentences:
        sentence.tags = convert_to_iob2(sentence.tags)
    return sentences


def _fields(line: str) -> list[str]:
    """Split on tabs if the line has one (so tokens may hold spaces), else on runs of spaces; [] for a line of
    only spaces and tabs (a sentence break).

    On a tab-separated line empty fields are dropped and the others lose their surrounding spaces, except a
    first field that is only whitespace: it is the token (` <TAB>O` is a space tagged O).
    """
    if not line.strip(" \t"):
        return []
    if "\t" in line:
        parts = [part for part in line.split("\t") if part]
        token = parts[0].strip(" ") or parts[0]
        return [token, *(field for field in (part.strip(" ") for part in parts[1:]) if field)]
    return [field for field in line.split(" ") if field]


def _looks_like_a_sentence(line: str, fields: list[str]) -> bool:
    """Whether a line holds a whole sentence (a file of plain text, one sentence per line) instead of a token.

    Two signs, neither of which a token-per-line file shows: a first field with CJK characters that is longer
    than `LONGEST_CJK_TOKEN` or holds full-width sentence punctuation among other characters
    (`中国外交部发言人秦刚在北京表示，...`); or a line without tabs of three or more space-separated fields,
    none of which (after the first) is a tag, mostly words (`EU rejects German call to boycott British lamb`).
    The second only picks the message for a line that would stop anyway, since its last field is no tag.
    """
    token = fields[0]
    if _CJK.search(token) and (len(token) > LONGEST_CJK_TOKEN  # a word-segmented `呢？` or `好的，` is a token
                               or (len(token) > 5 and _CJK_SENTENCE_PUNCTUATION.search(token))):
        return True
    if "\t" in line or len(fields) < 3 or any(_TAG.fullmatch(field) for field in fields[1:]):
        return False
    wordlike = sum(1 for field in fields if _CJK.search(field) or any(c.islower() for c in field))
    return 2 * wordlike >= len(fields)


def _sentence_message(where: str, line: str, require_tags: bool) -> str:
    text = line.strip()
    preview = text if len(text) <= 30 else text[:30] + "..."
    reads = ("NER prediction reads one token per line (a tag after it is optional)" if not require_tags
             else "an NER file holds one token per line followed by its tag (e.g. `EU<TAB>B-ORG`)")
    return (f"{where}: this line looks like a whole sentence ({preview!r}), but {reads}, with a blank line "
            "between sentences; write each sentence as its tokens, one per line, and a blank line after it "
            "(for Chinese, one character per line; for languages written with spaces, one word per line)")


def convert_to_iob2(tags: list[str]) -> list[str]:
    """Convert one sentence's tags from IOB1, IOB2, BIOES or BMES to IOB2.

    An entity starts with `B-`; `S-X` becomes `B-X`; `I-X`, `M-X` (BMES's inside) and `E-X` become `I-X`
    after a `B-X`, `I-X` or `M-X` and `B-X` otherwise (IOB1's entity starts, or a stray `I-` in an IOB2 file).
    Valid IOB2 comes back unchanged, so the result does not depend on which scheme `detect_scheme` reports.

    Args:
        tags: `O` or `<B|I|M|E|S>-<TYPE>` per token.

    Returns:
        The IOB2 tags, one per token.

    Raises:
        ValueError: a tag is not of that form.
    """
    out = []
    prev_prefix, prev_type = "O", ""
    for tag in tags:
        prefix, entity_type = _split_tag(tag)
        if prefix in ("I", "M", "E"):
            continues = prev_prefix in ("B", "I", "M") and prev_type == entity_type
            out.append(f"{'I' if continues else 'B'}-{entity_type}")
        elif prefix == "S":
            out.append(f"B-{entity_type}")
        else:
            out.append(tag)
        prev_prefix, prev_type = prefix, entity_type
    return out


def detect_scheme(sentences_tags: list[list[str]]) -> str:
    """Name the tag scheme of a whole file: "BMES", "BIOES", "IOB2" or "IOB1".

    BMES if any `M-` tag occurs; else BIOES if any `S-` or `E-` tag occurs; else IOB2 if some entity starts
    with `B-` (after `O`, another type or at the sentence start); else IOB1 if some entity starts with `I-`;
    else (no entities) IOB2. A file that is mostly IOB2 with a few stray `I-` starts is IOB2.

    Args:
        sentences_tags: the tags of every sentence of the file.

    Returns:
        "BMES", "BIOES", "IOB2" or "IOB1".

    Raises:
        ValueError: a tag is not `O` or `<B|I|M|E|S>-<TYPE>`.
    """
    b_starts = i_starts = bioes = False
    for tags in sentences_tags:
        prev_prefix, prev_type = "O", ""
        for tag in tags:
            prefix, entity_type = _split_tag(tag)
            if prefix == "M":
                return "BMES"
            bioes |= prefix in ("S", "E")
            starts = not (prev_prefix in ("B", "I") and prev_type == entity_type)
            b_starts |= prefix == "B" and starts
            i_starts |= prefix == "I" and starts
            prev_prefix, prev_type = prefix, entity_type
    if bioes:
        return "BIOES"
    if b_starts or not i_starts:
        return "IOB2"
    return "IOB1"


def _split_tag(tag: str) -> tuple[str, str]:
    """`B-PER` -> ("B", "PER"); `O` -> ("O", "")."""
    if not _TAG.fullmatch(tag):
        raise ValueError(f"tag {tag!r} is neither 'O' nor {TAG_FORMS}")
    return (tag, "") if tag == "O" else (tag[0], tag[2:])


# --- label sets and overlap -----------------------------------------------------------------------------------


def label_list(examples_or_sentences: Iterable[TextExample] | Iterable[TaggedSentence]) -> list[str]:
    """The label set of a data set, sorted: the ids a model head is built with.

    For `TextExample`s: every label that occurs, sorted as numbers if all are integers ("2" before "10"), else
    as strings. For `TaggedSentence`s: "O", then `B-X`, `I-X` for every entity type X in sorted order (both even
    if only one occurs, so held-out data with the other still fits).

    Args:
        examples_or_sentences: what `read_text_examples` or `read_tagged_sentences` returned.

    Returns:
        The sorted labels ([] for no input).

    Raises:
        TypeError: an item is neither a TextExample nor a TaggedSentence, or the two kinds are mixed.
    """
    labels: set[str] = set()
    types: set[str] = set()
    kinds = set()
    for item in examples_or_sentences:
        if isinstance(item, TextExample):
            labels.update(item.labels)
        elif isinstance(item, TaggedSentence):
            types.update(_split_tag(tag)[1] for tag in item.tags if tag != "O")
        else:
            raise TypeError(f"label_list takes TextExample or TaggedSentence items, got {type(item).__name__}")
        kinds.add(type(item))
    if len(kinds) > 1:
        raise TypeError("label_list got both TextExample and TaggedSentence items; pass one kind")
    if TaggedSentence in kinds:
        return ["O", *(f"{prefix}-{t}" for t in sorted(types) for prefix in ("B", "I"))]
    if labels and all(_INTEGER.fullmatch(label) for label in labels):
        return sorted(labels, key=lambda label: (int(label), label))
    return sorted(labels)


def count_overlap(train_texts: Iterable[str], eval_texts: Iterable[str]) -> int:
    """How many evaluation texts also occur in the training texts (exact match after stripping whitespace).

    Args:
        train_texts: the training texts.
        eval_texts: the evaluation texts; each occurrence counts, so a repeated text counts each time.

    Returns:
        The number of evaluation texts found in the training texts.
    """
    seen = {text.strip() for text in train_texts}
    return sum(text.strip() in seen for text in eval_texts)


# --- Hugging Face datasets ------------------------------------------------------------------------------------

HF_PREFIX = "hf:"
HF_FORM = ("hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT (e.g. hf:stanfordnlp/sst2:train, hf:nyu-mll/glue:sst2:validation, "
           "hf:stanfordnlp/sst2:train[:10%])")
TOKEN_COLUMNS = ("tokens", "words")  # an NER dataset's token lists, looked for in this order
TAG_COLUMNS = ("ner_tags", "tags", "labels")  # and its tag lists


def is_hf_spec(source: str | Path) -> bool:
    """True for a task data source given as a Hugging Face dataset split (`hf:NAME[:CONFIG]:SPLIT`), not a file."""
    return str(source).startswith(HF_PREFIX)


def parse_hf_spec(spec: str) -> tuple[str, str | None, str]:
    """`hf:NAME[:CONFIG]:SPLIT` -> (name, config or None, split). NAME may be a hub id or a local folder (written by
    `save_to_disk`, or holding parquet / csv / json files).

    Raises:
        DataError: not of that form.
    """
    parts, depth, current = [], 0, ""
    for char in spec[len(HF_PREFIX):]:  # a colon inside brackets belongs to a split slice (train[:10%])
        depth += (char == "[") - (char == "]")
        if char == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
        raise DataError(f"{spec!r}: a Hugging Face dataset is given as {HF_FORM}")
    name, *config, split = (p.strip() for p in parts)
    return name, (config[0] if config else None), split


def _hf_split(spec: str):
    from plmkit.data.sources import load_hf_split

    name, config, split = parse_hf_spec(spec)
    return load_hf_split(name, config, split, fix=f"give it as {HF_FORM}",
                         split_setting=f"the split (the last part of {spec!r})")


def _label_names(feature) -> list[str] | None:
    """The class names of a ClassLabel feature (or of a list of them), else None."""
    import datasets

    inner = getattr(feature, "feature", None)  # datasets.Sequence(ClassLabel)
    if isinstance(feature, list) and feature:  # datasets >= 3: [ClassLabel] for a list column
        inner = feature[0]
    target = inner if inner is not None else feature
    return list(target.names) if isinstance(target, datasets.ClassLabel) else None


def _named(where: str, value: object, names: list[str] | None, column: str) -> object:
    """A ClassLabel id (or a list of ids) as its class name(s); -1 (unlabeled, as GLUE's test splits) as None."""
    if names is None or value is None:
        return value
    if isinstance(value, list):
        return [_named(where, v, names, column) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        if value == -1:
            return None
        if not 0 <= value < len(names):
            raise DataError(f"{where}: label id {value} in {column!r} is not one of the dataset's {len(names)} "
                            "classes")
        return names[value]
    return value


def read_hf_text_examples(spec: str, *, text_column: str | None = None, text_pair_column: str | None = None,
                          label_column: str | None = None, multilabel: bool = False,
                          group_column: str | None = None, require_labels: bool = True) -> list[TextExample]:
    """`read_text_examples` for a Hugging Face dataset split (`hf:NAME[:CONFIG]:SPLIT`): the same columns are
    looked for, and ClassLabel ids become their class names (so labels read as `positive`, not `1`). A label of -1
    (GLUE's unlabeled test splits) is an error when labels are required and no label otherwise."""
    ds = _hf_split(spec)
    options = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column,
               "group_column": group_column, "require_labels": require_labels}
    columns = _find_columns(spec, list(ds.column_names), "columns", **options)
    label_col = columns[2]
    names = _label_names(ds.features[label_col]) if label_col else None
    keep = [c for c in columns if c is not None]
    examples = []
    for row, record in enumerate(ds.select_columns(list(dict.fromkeys(keep))).to_iterable_dataset()):
        where = f"{spec} row {row}"
        if label_col:
            record[label_col] = _named(where, record[label_col], names, label_col)
            if record[label_col] is None and require_labels:
                raise DataError(f"{where}: no label (-1: the split is unlabeled, as GLUE's test splits are); train "
                                "and evaluate on labeled splits, or use the split with plm predict")
        examples.append(_example(where, record, columns, multilabel, require_labels))
    if not examples:
        raise DataError(f"{spec}: the split has no rows")
    return examples


def read_hf_tagged_sentences(spec: str, *, require_tags: bool = True) -> list[TaggedSentence]:
    """`read_tagged_sentences` for a Hugging Face dataset split (`hf:NAME[:CONFIG]:SPLIT`) with a column of token
    lists (`tokens` or `words`) and one of tag lists (`ner_tags`, `tags` or `labels`): ClassLabel ids become their
    tag names (CoNLL-2003's `ner_tags`), and IOB1, BIOES and BMES tags become IOB2, as from a file."""
    ds = _hf_split(spec)
    present = ", ".join(map(repr, ds.column_names))
    token_col = next((c for c in TOKEN_COLUMNS if c in ds.column_names), None)
    if token_col is None:
        raise DataError(f"{spec}: no column of tokens (looked for {', '.join(map(repr, TOKEN_COLUMNS))}; columns: "
                        f"{present})")
    tag_col = next((c for c in TAG_COLUMNS if c in ds.column_names), None)
    if tag_col is None and require_tags:
        raise DataError(f"{spec}: no column of tags (looked for {', '.join(map(repr, TAG_COLUMNS))}; columns: "
                        f"{present})")
    names = _label_names(ds.features[tag_col]) if tag_col else None
    sentences = []
    for row, record in enumerate(ds.select_columns([c for c in (token_col, tag_col) if c]).to_iterable_dataset()):
        where = f"{spec} row {row}"
        tokens = record[token_col]
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise DataError(f"{where}: {token_col!r} holds {_kind(tokens)}, not a list of strings")
        if not tokens:
            continue
        tags = _named(where, record[tag_col], names, tag_col) if tag_col else ["O"] * len(tokens)
        if not isinstance(tags, list) or len(tags) != len(tokens):
            raise DataError(f"{where}: {len(tokens)} tokens but {tag_col!r} holds "
                            f"{len(tags) if isinstance(tags, list) else _kind(tags)} tags")
        for tag in tags:
            if not isinstance(tag, str) or not _TAG.fullmatch(tag):
                fix = ("; its ids have no class names, so map them to tags first" if not isinstance(tag, str)
                       else "")
                raise DataError(f"{where}: tag {tag!r} is neither 'O' nor {TAG_FORMS}{fix}")
        sentences.append(TaggedSentence(tokens=list(tokens), tags=convert_to_iob2(list(tags))))
    if not sentences:
        raise DataError(f"{spec}: no sentences (every row's token list is empty)")
    return sentences
