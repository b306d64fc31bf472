"""Tokenize a corpus once into cached, memory-mapped token shards, then cut them into fixed-length blocks.

    data = prepare_shards(cfg.data, tokenizer, seed=cfg.run.seed)
    train = data.dataset("train", block_size=128, cls_id=tokenizer.cls_token_id)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress
from torch.utils.data import Dataset

from plmkit.config import DataConfig
from plmkit.data.corpus import CorpusReport, load_corpus
from plmkit.data.segment import check_segmenter, resolve_segmenter, user_dict_fingerprint, word_starts
from plmkit.data.sources import expand_paths, hf_target, is_saved_dataset
from plmkit.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

FORMAT_VERSION = 1  # bump when the shard layout changes; it is part of the cache key
TOKENIZE_BATCH = 1000  # documents per call to the fast tokenizer (which parallelises in Rust)
STALE_SECONDS = 3600  # a tmp folder of a dead process untouched this long is removed
SPLITS = ("train", "validation")
SPECIAL_ROLES = ("sep", "eos", "cls", "bos", "pad", "unk", "mask")
# the data settings that change the shards (block_size and doc_attention do not: blocks are cut when read)
KEYED_SETTINGS = ("source", "doc_split", "text_field", "normalization", "min_chars", "dedup",
                  "validation_fraction")
Shard = tuple[np.ndarray, np.ndarray]  # (tokens, int64 offsets where its documents start)
# With a segmenter, per-document arrays are structured (ids, word start flag) so packing keeps them aligned; the flags
# are written beside the tokens as <split>-NNNNN.words.bin (uint8, 1 where a token starts a word).
WORDS_SUFFIX = ".words.bin"


@dataclass
class PreparedData:
    path: Path
    """The cache folder holding the shards and meta.json."""
    meta: dict
    """meta.json: dtype, vocab_size, sep_id, cls_id, tokens and shards per split, report."""
    report: CorpusReport

    def dataset(self, split: str, block_size: int, *, cls_id: int | None = None,
                with_segments: bool = False) -> PackedDataset:
        """Blocks of `block_size` tokens from one split (with "word_starts" when the shards have word
        boundaries); see PackedDataset."""
        return PackedDataset(self.path, split, block_size, cls_id=cls_id, with_segments=with_segments)


def prepare_shards(cfg: DataConfig, tokenizer: PreTrainedTokenizerFast, seed: int, *, whole_words: bool = False,
                   show_progress: bool = True) -> PreparedData:
    """Read, clean, split and tokenize the corpus into shards under `cfg.cache_dir`, or reuse a cached copy.

    Each document's token ids and one separator token (sep, else eos) are appended to its split's stream.
    The cache key covers the input files (path, size, mtime), the cleaning and split settings, the seed,
    the tokenizer and the segmenter, but not block_size: blocks are cut when read. With a segmenter
    (data.segmenter, see plmkit.data.segment) a word-start flag per token is stored beside the tokens.

    Args:
        cfg: the data section of the run config.
        tokenizer: a fast Hugging Face tokenizer with a sep or eos token.
        seed: keys the validation split (usually run.seed).
        whole_words: the objective masks whole words; data.segmenter auto then stores pre-tokenizer words.
        show_progress: draw a progress bar on stderr while tokenizing.

    Returns:
        The prepared folder, its meta.json and the CorpusReport (with token counts).

    Raises:
        DataError: unreadable inputs, an empty corpus, or a tokenizer without a separator token.
    """
    sep = separator_id(tokenizer)
    segmenter = resolve_segmenter(cfg.segmenter, whole_words)
    check_segmenter(segmenter, tokenizer, cfg.segmenter_dict)
    root = Path(os.path.expanduser(cfg.cache_dir))
    key = cache_key(cfg, tokenizer, seed, segmenter=segmenter)
    out = root / key
    if (out / "meta.json").is_file():
        return open_prepared(out)
    _remove_stale(root)
    corpus = load_corpus(cfg, seed)
    tmp = root / f"{key}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        dtype = token_dtype(len(tokenizer))
        tokens, shards, words, unknown = {}, {}, {}, {"train": 0, "validation": 0}
        progress = Progress(*Progress.get_default_columns(), MofNCompleteColumn(),
                            console=Console(stderr=True), disable=not show_progress)
        with progress:
            for split, docs in zip(SPLITS, (corpus.train, corpus.validation), strict=True):
                task = progress.add_task(f"tokenizing {split}", total=len(docs))
                arrays = _tokenize(docs, tokenizer, sep, dtype, partial(progress.advance, task), segmenter,
                                   unknown=(unknown, split), user_dict=cfg.segmenter_dict)
                packed = pack_shards(arrays, cfg.shard_tokens)
                tokens[split], shards[split], words[split] = _write_shards(tmp, split, packed)
        corpus.report.train_tokens, corpus.report.validation_tokens = tokens["train"], tokens["validation"]
        corpus.report.train_unknown_tokens = unknown["train"]
        check_unknown_share(tokenizer, unknown["train"], tokens["train"])
        if segmenter != "none":
            corpus.report.train_words, corpus.report.validation_words = words["train"], words["validation"]
        meta = {"format": FORMAT_VERSION, "key": key, "dtype": dtype.name, "vocab_size": len(tokenizer),
                "sep_id": sep, "cls_id": tokenizer.cls_token_id, "tokens": tokens, "shards": shards,
                "segmenter": segmenter, "report": corpus.report.to_dict()}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")  # written last
        if out.exists() and not (out / "meta.json").is_file():
            shutil.rmtree(out)  # an incomplete folder is not trusted
        try:
            os.replace(tmp, out)
        except OSError:
            if not (out / "meta.json").is_file():
                raise
            shutil.rmtree(tmp)  # another process finished the same key first; its shards are identical
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_prepared(out)


def open_prepared(path: str | Path) -> PreparedData:
    """Open a folder written by prepare_shards."""
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    return PreparedData(path=path, meta=meta, report=CorpusReport(**meta["report"]))


def separator_id(tokenizer: PreTrainedTokenizerFast) -> int:
    """The token appended after each document: sep if the tokenizer has one, else eos."""
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if sep is None:
        raise DataError("the tokenizer has neither a sep nor an eos token, so documents cannot be separated; "
                        "add one, e.g. tokenizer.special_tokens: {sep: '[SEP]'}")
    return sep


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab_size <= 65535), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 65535 else np.uint32)


def cache_key(cfg: DataConfig, tokenizer: PreTrainedTokenizerFast, seed: int, *, segmenter: str = "none") -> str:
    """Hex digest of the input fingerprint, the cleaning/split settings, the seed, the tokenizer and the
    (resolved) segmenter; without one the key is what it was before segmenters existed."""
    parts = {
        "format": FORMAT_VERSION,
        "input": input_fingerprint(cfg),
        "settings": {**{k: getattr(cfg, k) for k in KEYED_SETTINGS}, "seed": seed},
        "tokenizer": tokenizer.backend_tokenizer.to_str(),
        "special": {role: getattr(tokenizer, f"{role}_token_id", None) for role in SPECIAL_ROLES},
        "vocab_size": len(tokenizer),
    }
    if segmenter != "none":
        parts["segmenter"] = segmenter
    if segmenter == "jieba" and cfg.segmenter_dict is not None:  # its words change the word boundaries
        parts["segmenter_dict"] = user_dict_fingerprint(cfg.segmenter_dict)
    if cfg.shard_tokens != DataConfig.shard_tokens:  # the default keeps the keys it always had
        parts["shard_tokens"] = cfg.shard_tokens
    return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode("utf-8"), digest_size=16).hexdigest()


def input_fingerprint(cfg: DataConfig) -> list[Any]:
    """What identifies the input without reading it: (resolved path, size, mtime_ns) of every file."""
    if cfg.source != "hf":
        return [_stat(p) for p in expand_paths(cfg.paths)]
    target = hf_target(cfg)
    folder = Path(os.path.expanduser(target))
    if not folder.is_dir():  # a hub dataset: name, config and split
        return ["hub", target, cfg.hf_config, cfg.hf_split]
    files = sorted(Path(d, f) for d, _, names in os.walk(folder) for f in names)
    return ["folder", cfg.hf_config, cfg.hf_split, is_saved_dataset(folder), [_stat(f) for f in files]]


def _stat(path: Path) -> list[Any]:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _remove_stale(root: Path) -> None:
    """Remove tmp folders left by killed runs: their process is gone and they have not changed for a while."""
    for tmp in root.glob("*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        try:
            idle = time.time() - tmp.stat().st_mtime
            stale = pid.isdigit() and not _alive(int(pid)) and idle > STALE_SECONDS
        except OSError:
            continue  # removed by someone else meanwhile
        if stale:
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


UNKNOWN_WARN, UNKNOWN_REFUSE = 0.05, 0.5
"""Shares of unknown tokens in the train stream above which prepare_shards warns, and refuses (the tokenizer was
made for other text: most of what the model would see is one token, and a masked LM has almost nothing to predict)."""


def check_unknown_share(tokenizer: PreTrainedTokenizerFast, unknown: int, total: int, *,
                        of: str = "the training tokens", who: str | None = None,
                        refuse_fix: str | None = "train a tokenizer on it (leave tokenizer.pretrained unset) or use "
                                                 "one made for its language and script",
                        warn_note: str = "a tokenizer trained on it would lose less", warn: bool = True) -> float:
    """The share of unknown tokens among `total`; warns above UNKNOWN_WARN and raises DataError (with `refuse_fix`)
    above UNKNOWN_REFUSE. `of` and `who` name the tokens and the tokenizer in the message."""
    share = unknown / max(total, 1)
    if share <= UNKNOWN_WARN:
        return share
    who = who or getattr(tokenizer, "name_or_path", "") or "the tokenizer"
    what = f"{share:.0%} of {of} are the unknown token {tokenizer.unk_token!r}: {who} does not cover this text"
    if refuse_fix is not None and share > UNKNOWN_REFUSE:
        raise DataError(f"{what}; {refuse_fix}")
    if warn:
        Console(stderr=True).print(f"[yellow]warning: {what} well; {warn_note}")
    return share


def _tokenize(docs: list[str], tokenizer: PreTrainedTokenizerFast, sep: int, dtype: np.dtype,
              advance: Callable[[int], None], segmenter: str = "none",
              unknown: tuple[dict, str] | None = None, user_dict: str | None = None) -> Iterator[np.ndarray]:
    """Yield each document's token ids followed by `sep`, tokenizing TOKENIZE_BATCH documents per call.

    With a segmenter the arrays are structured, fields "ids" and "word_starts" (uint8; the separator starts a word).
    `unknown`, (counts, key): counts[key] grows by the unknown tokens seen."""
    for i in range(0, len(docs), TOKENIZE_BATCH):
        batch = docs[i:i + TOKENIZE_BATCH]
        encoded = tokenizer(batch, add_special_tokens=False, return_attention_mask=False,
                            return_token_type_ids=False, verbose=False)
        ids = encoded["input_ids"]
        lengths = [len(x) + 1 for x in ids]
        flat = np.fromiter(chain.from_iterable([*x, sep] for x in ids), dtype=dtype, count=sum(lengths))
        if unknown is not None and tokenizer.unk_token_id is not None:
            unknown[0][unknown[1]] += int(np.count_nonzero(flat == tokenizer.unk_token_id))
        if segmenter == "none":
            yield from np.split(flat, np.cumsum(lengths)[:-1])
        else:
            starts = word_starts(batch, encoded.encodings, segmenter, user_dict)
            both = np.empty(len(flat), dtype=[("ids", dtype), ("word_starts", np.uint8)])
            both["ids"] = flat
            both["word_starts"] = np.concatenate([np.append(s, True) for s in starts])
            yield from np.split(both, np.cumsum(lengths)[:-1])
        advance(len(batch))


def pack_shards(docs: Iterable[np.ndarray], shard_tokens: int) -> Iterator[Shard]:
    """Group per-document token arrays into shards of at most `shard_tokens` tokens.

    A document is split across shards only when it alone is longer than a shard; its continuation then starts
    the next shard.

    Args:
        docs: one token array per document (separator included), in stream order.
        shard_tokens: the most tokens a shard may hold.

    Yields:
        (tokens, starts): the shard's tokens and the int64 offsets where its documents start.
    """
    pieces: list[np.ndarray] = []
    starts: list[int] = []
    size = 0
    for doc in docs:
        if size and size + len(doc) > shard_tokens:
            yield np.concatenate(pieces), np.array(starts, dtype=np.int64)
            pieces, starts, size = [], [], 0
        pieces.append(doc)
        starts.append(size)
        size += len(doc)
        while size > shard_tokens:  # only a document longer than a whole shard gets here (starts == [0])
            flat = np.concatenate(pieces)
            yield flat[:shard_tokens], np.array(starts, dtype=np.int64)
            pieces, starts, size = [flat[shard_tokens:]], [0], size - shard_tokens
    if size:
        yield np.concatenate(pieces), np.array(starts, dtype=np.int64)


def _write_shards(folder: Path, split: str, shards: Iterable[Shard]) -> tuple[int, int, int]:
    """Write `<split>-NNNNN.bin` (raw tokens), `.idx.npy` (document starts) and, for structured arrays,
    `.words.bin` (word-start flags); return (tokens, shards, words)."""
    total = count = words = 0
    for count, (tokens, starts) in enumerate(shards, start=1):
        name = f"{split}-{count - 1:05d}"
        if tokens.dtype.names:
            flags = np.ascontiguousarray(tokens["word_starts"])
            flags.tofile(folder / f"{name}{WORDS_SUFFIX}")
            words += int(flags.sum())
            tokens = np.ascontiguousarray(tokens["ids"])
        tokens.tofile(folder / f"{name}.bin")
        np.save(folder / f"{name}.idx.npy", starts)
        total += len(tokens)
    return total, count, words


class PackedDataset(Dataset):
    """Non-overlapping fixed-length blocks cut from one split's shards (each shard's short tail is dropped).

    The shards are memory-mapped read-only on first access, so the dataset pickles into DataLoader workers
    cheaply. Item i is {"input_ids": (T,) int64, "index": i} and, with `with_segments`, "segment_ids": (T,)
    int64 numbering the documents within the block from 0 (a document's closing separator belongs to it; a
    cls prefix belongs to the block's first document). When the shards were written with a segmenter, item i
    also has "word_starts": (T,) bool, True where a token starts a word; the block's first token always starts
    one (a word cut by the block edge becomes a word of its own in each block), and so does a cls prefix.
    """

    def __init__(self, path: str | Path, split: str, block_size: int, *, cls_id: int | None = None,
                 with_segments: bool = False):
        self.path, self.split, self.block_size = Path(path), split, block_size
        self.cls_id, self.with_segments = cls_id, with_segments
        meta = json.loads((self.path / "meta.json").read_text(encoding="utf-8"))
        if split not in meta["shards"]:
            raise DataError(f"no split {split!r} in {self.path}; use one of {', '.join(meta['shards'])}")
        self.dtype = np.dtype(meta["dtype"])
        self.stride = block_size - (cls_id is not None)  # stream tokens per block
        if self.stride < 1:
            raise DataError(f"data.block_size must be at least 2 when a cls token starts each block; "
                            f"got {block_size}")
        self.files = [self.path / f"{split}-{k:05d}.bin" for k in range(meta["shards"][split])]
        self.has_words = meta.get("segmenter", "none") != "none"
        sizes = [f.stat().st_size // self.dtype.itemsize for f in self.files]
        self.first_block = np.cumsum([0] + [n // self.stride for n in sizes])  # (shards + 1,)
        self.dropped = sum(n % self.stride for n in sizes)  # each shard's tail, shorter than a block
        if self.first_block[-1] == 0:
            hint = " (or raise data.validation_fraction)" if split == "validation" else ""
            raise DataError(f"the {split} split has {sum(sizes)} tokens in {len(sizes)} shard(s), not enough "
                            f"for one block of {block_size}; lower data.block_size or add data{hint}")
        self._tokens: list[np.ndarray] | None = None
        self._starts: list[np.ndarray] | None = None
        self._words: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.first_block[-1])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tokens": None, "_starts": None, "_words": None}  # each worker maps the files

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"block {index} out of range for {len(self)} blocks")
        if self._tokens is None:
            self._tokens = [np.memmap(f, dtype=self.dtype, mode="r") for f in self.files]
            self._starts = [np.load(f.with_name(f.stem + ".idx.npy")) for f in self.files]
            if self.has_words:
                self._words = [np.memmap(f.with_name(f.stem + WORDS_SUFFIX), dtype=np.uint8, mode="r")
                               for f in self.files]
        shard = int(np.searchsorted(self.first_block, index, side="right")) - 1
        begin = int(index - self.first_block[shard]) * self.stride
        ids = torch.from_numpy(self._tokens[shard][begin:begin + self.stride].astype(np.int64))  # (stride,)
        item: dict[str, Any] = {"input_ids": ids, "index": index}
        if self.with_segments:
            positions = np.arange(begin, begin + self.stride)
            docs = np.searchsorted(self._starts[shard], positions, side="right") - 1  # (stride,)
            item["segment_ids"] = torch.from_numpy((docs - docs[0]).astype(np.int64))
        if self._words is not None:
            starts = torch.from_numpy(self._words[shard][begin:begin + self.stride].astype(bool))  # (stride,)
            starts[0] = True  # a word cut by the block edge is a word of its own here
            item["word_starts"] = starts
        if self.cls_id is not None:
            item["input_ids"] = torch.cat([torch.tensor([self.cls_id]), ids])  # (T,)
            if self.with_segments:
                item["segment_ids"] = torch.cat([torch.zeros(1, dtype=torch.long), item["segment_ids"]])
            if self._words is not None:
                item["word_starts"] = torch.cat([torch.ones(1, dtype=torch.bool), item["word_starts"]])
        return item
