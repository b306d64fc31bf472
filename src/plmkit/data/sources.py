"""Read raw documents from text files, JSONL files or a Hugging Face dataset, streaming where possible.

    docs = read_documents(DataConfig(paths=["corpus/*.txt"]))
"""

from __future__ import annotations

import codecs
import glob
import json
import os
from collections.abc import Iterator
from pathlib import Path

from plmkit.config import DataConfig
from plmkit.errors import DataError

HF_BATCH = 1000  # rows fetched at a time from a datasets.Dataset


def expand_paths(paths: list[str]) -> list[Path]:
    """Expand `~` and globs into an ordered list of files (glob matches sorted, repeats dropped).

    Args:
        paths: files or glob patterns, as given in `data.paths`.

    Returns:
        The matched files, in the order given (each glob's matches sorted by name).

    Raises:
        DataError: `paths` is empty, a path or glob matches no file, or a path is a folder.
    """
    if not paths:
        raise DataError("data.paths is empty; list text or JSONL files or globs, "
                        "e.g. data.paths='[corpus/*.txt]'")
    files: list[Path] = []
    for raw in paths:
        pattern = os.path.expanduser(raw)
        if glob.has_magic(pattern):
            matches = [Path(m) for m in sorted(glob.glob(pattern, recursive=True)) if os.path.isfile(m)]
            if not matches:
                raise DataError(f"data.paths: {raw!r} matches no file; fix the pattern in data.paths")
        else:
            path = Path(pattern)
            if path.is_dir():
                glob_hint = f"{raw.rstrip('/')}/*.txt"
                raise DataError(f"data.paths: {raw!r} is a folder; use a glob such as '{glob_hint}'")
            if not path.is_file():
                raise DataError(f"data.paths: {raw!r} does not exist; fix the path in data.paths")
            matches = [path]
        files += [m for m in matches if m not in files]
    return files


def read_documents(cfg: DataConfig) -> Iterator[str]:
    """Yield raw documents as `cfg` describes them (source, paths, doc_split, text_field, hf_*).

    Args:
        cfg: the data section of the run config.

    Yields:
        One raw (not yet normalised or stripped) document at a time.

    Raises:
        DataError: a missing path, a file that is not UTF-8, a malformed JSONL line or a missing text field.
    """
    if cfg.source == "hf":
        yield from _read_hf(cfg)
        return
    for path in expand_paths(cfg.paths):
        kind = cfg.source
        if kind == "auto":
            kind = "jsonl" if path.suffix.lower() in (".jsonl", ".json") else "text"
        if kind == "jsonl":
            yield from _read_jsonl(path, cfg.text_field)
        else:
            yield from _read_text(path, cfg.doc_split)


_BOMS = {b"\xff\xfe\x00\x00": "utf-32", b"\x00\x00\xfe\xff": "utf-32", b"\xff\xfe": "utf-16", b"\xfe\xff": "utf-16"}


def reencode_hint(path: Path) -> str:
    """What to do with a file that is not UTF-8, from its first bytes: a UTF-16/32 byte-order mark names that
    encoding; NUL bytes mean binary data (or UTF-16 without a mark); else, most often, a one-byte encoding."""
    with open(path, "rb") as f:
        head = f.read(4096)
    fixed = path.with_name(f"{path.stem}.utf8{path.suffix}")
    encoding = next((name for bom, name in _BOMS.items() if head.startswith(bom)), None)
    if encoding is not None:
        return (f"it is {encoding.upper()} text (it starts with a {encoding.upper()} byte-order mark); re-encode it, "
                f"e.g. `iconv -f {encoding} -t utf-8 {path} > {fixed}`")
    if b"\x00" in head:
        return "it holds NUL bytes: it looks like a binary file (or UTF-16 text without a byte-order mark), not text"
    try:  # the first 4 KB are UTF-8 with non-ASCII characters in them: the file is UTF-8, a line further on is not
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # the cut may split a character
        starts_as_utf8 = len(head) == 4096 and max(head) >= 0x80
    except UnicodeDecodeError:
        starts_as_utf8 = False
    if starts_as_utf8:
        return ("the file starts as UTF-8 text with non-ASCII characters, so that line holds bytes of another "
                "encoding (files pasted together?); fix or drop the line (`iconv -f utf-8 -t utf-8 -c` drops every "
                "invalid byte) rather than re-encode the whole file")
    letters = [b for b in head if b > 0x20]
    if letters and sum(b >= 0x80 for b in letters) > 0.3 * len(letters):  # a non-Latin script's encoding
        return (f"most of its bytes are non-ASCII, as in a non-Latin script's encoding; re-encode it from the one it "
                f"is in, e.g. `iconv -f gb18030 -t utf-8 {path} > {fixed}` for Simplified Chinese (GB2312, GBK), "
                "-f big5 for Traditional Chinese, -f shift_jis for Japanese, -f euc-kr for Korean, -f cp1251 for "
                "Cyrillic")
    return (f"re-encode the file as UTF-8 from the encoding it is in, e.g. `iconv -f cp1252 -t utf-8 {path} > "
            f"{fixed}` for Western European text")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its line ending), decoded as strict UTF-8."""
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 at byte {offset + e.start} ({e.reason}); "
                                f"{reencode_hint(path)}") from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # byte-order mark
            offset += len(raw)
            yield lineno, line.rstrip("\r\n")


def _read_text(path: Path, doc_split: str) -> Iterator[str]:
    if doc_split == "line":
        yield from (line for _, line in _lines(path) if line.strip())
        return
    if doc_split == "doc_tags":
        yield from _read_doc_tags(path)
        return
    block: list[str] = []
    for _, line in _lines(path):
        if line.strip():
            block.append(line)
        elif block:
            yield "\n".join(block)
            block = []
    if block:
        yield "\n".join(block)


def _read_doc_tags(path: Path) -> Iterator[str]:
    """One document per `<doc ...>` ... `</doc>` block (WikiExtractor's output): the tag lines are dropped and the
    non-blank lines inside are joined with newlines (the first is the article title)."""
    block: list[str] | None = None
    opened = 0
    found = False
    for lineno, line in _lines(path):
        stripped = line.strip()
        if stripped.startswith("<doc") and (stripped == "<doc>" or stripped[4].isspace()) and stripped.endswith(">"):
            if block is not None:
                raise DataError(f"{path}:{lineno}: <doc> inside the <doc> opened at line {opened}; close it with "
                                "</doc> first (data.doc_split doc_tags reads WikiExtractor's <doc> blocks)")
            block, opened, found = [], lineno, True
        elif stripped == "</doc>":
            if block is None:
                raise DataError(f"{path}:{lineno}: </doc> without an opening <doc ...> line")
            if block:
                yield "\n".join(block)
            block = None
        elif block is not None:
            if stripped:
                block.append(line)
        elif stripped:
            raise DataError(f"{path}:{lineno}: text outside a <doc ...> ... </doc> block; data.doc_split doc_tags "
                            "reads WikiExtractor output (use blank_line or line for plain text)")
    if block is not None:
        raise DataError(f"{path}: the <doc> opened at line {opened} is never closed; add a </doc> line")
    if not found:
        raise DataError(f"{path}: no <doc ...> line; data.doc_split doc_tags reads WikiExtractor output "
                        "(use blank_line or line for plain text)")


def json_record(path: Path, lineno: int, line: str) -> dict:
    """One JSON-lines record; a line that is not a JSON object is a DataError naming the file and line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno}); "
                        "each line must hold one JSON object") from None
    if not isinstance(record, dict):
        hint = (f"; to turn a JSON array into one object per line: `jq -c '.[]' {path} > {Path(path).stem}.jsonl`"
                if isinstance(record, list) else "")
        raise DataError(f"{path}:{lineno}: expected a JSON object per line, got {type(record).__name__}{hint}")
    return record


def _read_jsonl(path: Path, text_field: str) -> Iterator[str]:
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        record = json_record(path, lineno, line)
        text = record.get(text_field)
        if not isinstance(text, str):
            problem = (f"has no {text_field!r} field" if text_field not in record
                       else f"has a {type(text).__name__}, not a string, in {text_field!r}")
            raise DataError(f"{path}:{lineno}: record {problem} (keys: {', '.join(record)}); "
                            "set data.text_field to the field that holds the text")
        yield text


def _read_hf(cfg: DataConfig) -> Iterator[str]:
    target = hf_target(cfg)
    local = Path(os.path.expanduser(target))
    if cfg.hf_dataset is None and not local.is_dir():
        raise DataError(f"data.paths[0]: {target!r} is not a folder; with source hf give a folder saved with "
                        "Dataset.save_to_disk or holding data files, or set data.hf_dataset")
    ds = load_hf_split(target, cfg.hf_config, cfg.hf_split, fix="check data.hf_dataset, data.hf_config and "
                       "data.hf_split")
    if cfg.text_field not in ds.column_names:
        raise DataError(f"{target}: no column {cfg.text_field!r} (columns: {', '.join(ds.column_names)}); "
                        "set data.text_field to the column that holds the text")
    row = 0
    for batch in ds.select_columns([cfg.text_field]).iter(batch_size=HF_BATCH):
        for text in batch[cfg.text_field]:
            if not isinstance(text, str):
                raise DataError(f"{target}: row {row} has a {type(text).__name__} in column "
                                f"{cfg.text_field!r}, not a string; set data.text_field to a text column")
            row += 1
            yield text


def load_hf_split(target: str, config: str | None, split: str, *, fix: str, split_setting: str = "data.hf_split"):
    """One split of a Hugging Face dataset: a folder written by `save_to_disk`, a folder of data files (parquet,
    csv, json), or a hub name (needs the network, or the datasets cache). `fix` ends the error message: which
    settings to check; `split_setting` is where the split was given.

    Raises:
        DataError: the dataset, its config or its split cannot be loaded, with the reason `datasets` gave.
    """
    import datasets  # slow to import; only Hugging Face sources need it

    local = Path(os.path.expanduser(target))
    try:
        if is_saved_dataset(local):
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DataError(f"{target}: no split {split!r}; set {split_setting} to one of {', '.join(ds)}")
                ds = ds[split]
            return ds
        return datasets.load_dataset(str(local) if local.is_dir() else target, config, split=split)
    except (FileNotFoundError, ValueError, ConnectionError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"could not load Hugging Face dataset {target!r} (config {config!r}, split {split!r}): "
                        f"{first}; {fix}") from None


def hf_target(cfg: DataConfig) -> str:
    """The dataset to load with source hf: data.hf_dataset, else the first of data.paths (a local folder)."""
    target = cfg.hf_dataset or (cfg.paths[0] if cfg.paths else None)
    if target is None:
        raise DataError("source hf needs data.hf_dataset (a hub name such as wikitext) "
                        "or data.paths (a local dataset folder)")
    return target


def is_saved_dataset(folder: Path) -> bool:
    """True if `folder` was written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()
