"""Task-test fixtures: a tiny randomly initialised BERT saved once per session (a valid `init.from`), small
learnable data files for every task, and a fine-tuning config on top of resources/finetune.yaml.

The data follow simple rules a 2-layer model picks up in a few dozen steps: a sentence is `yes` iff it holds the
word `whitespace` (classification); it is tagged `space` iff it holds `whitespace` and `list` iff it holds `list`
(multi-label); person and place names are B-PER / B-LOC (`New York` is B-LOC I-LOC) and every other word O (NER).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from plmkit import load_config
from plmkit.config import RunConfig

ROOT = Path(__file__).resolve().parents[3]
FINETUNE_DEFAULTS = ROOT / "src" / "plmkit" / "resources" / "finetune.yaml"

FILLER = ["the", "text", "is", "a", "new", "list", "of", "lines", "and", "words", "with", "tabs", "in", "each",
          "paragraph"]
KEY = "whitespace"
PEOPLE = ["Alice", "Bob", "Carol"]
PLACES = [["Paris"], ["London"], ["Berlin"], ["New", "York"]]
SUFFIX = {"classification": ".tsv", "multilabel": ".jsonl", "ner": ".conll"}


def sentences(n: int, seed: int) -> list[list[str]]:
    """n word lists of filler words; every second one holds KEY."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = rng.sample(FILLER, rng.randint(4, 7))
        if i % 2 == 0:
            words.insert(rng.randrange(len(words) + 1), KEY)
        out.append(words)
    return out


def write_classification(path: Path, n: int, seed: int, *, invert: bool = False, labeled: bool = True) -> Path:
    """TSV (`sentence<TAB>label`): yes iff the sentence holds KEY (the other way round with `invert`)."""
    rows = ["sentence\tlabel" if labeled else "sentence"]
    for words in sentences(n, seed):
        text = " ".join(words)
        rows.append(f"{text}\t{'yes' if (KEY in words) != invert else 'no'}" if labeled else text)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def write_multilabel(path: Path, n: int, seed: int, *, invert: bool = False) -> Path:
    """JSONL with a label list: `space` iff KEY occurs, `list` iff `list` occurs (both flipped with `invert`)."""
    lines = []
    for words in sentences(n, seed):
        labels = [name for name, word in (("space", KEY), ("list", "list")) if (word in words) != invert]
        lines.append(json.dumps({"text": " ".join(words), "labels": labels}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_ner(path: Path, n: int, seed: int) -> Path:
    """CoNLL-style `token<TAB>tag` lines, a blank line between sentences."""
    rng = random.Random(seed)
    blocks = []
    for i, words in enumerate(sentences(n, seed)):
        tagged = [(w, "O") for w in words]
        tagged.insert(rng.randrange(len(tagged) + 1), (PEOPLE[i % len(PEOPLE)], "B-PER"))
        if i % 3:
            place = PLACES[i % len(PLACES)]
            at = rng.randrange(len(tagged) + 1)
            tagged[at:at] = [(w, "B-LOC" if j == 0 else "I-LOC") for j, w in enumerate(place)]
        blocks.append("\n".join(f"{w}\t{t}" for w, t in tagged))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


WRITERS = {"classification": write_classification, "multilabel": write_multilabel, "ner": write_ner}


@pytest.fixture(scope="session")
def task_files() -> Callable[..., tuple[Path, Path]]:
    """task_files("ner", folder, n_train=64, n_dev=24, invert_dev=False) -> (train file, validation file)."""

    def write(task: str, folder: Path, *, n_train: int = 64, n_dev: int = 24,
              invert_dev: bool = False) -> tuple[Path, Path]:
        writer, suffix = WRITERS[task], SUFFIX[task]
        folder.mkdir(parents=True, exist_ok=True)
        train = writer(folder / f"train{suffix}", n_train, 1)
        extra = {"invert": True} if invert_dev else {}
        return train, writer(folder / f"dev{suffix}", n_dev, 2, **extra)

    return write


@pytest.fixture(scope="session")
def finetune_cfg(tiny_encoder) -> Callable[..., RunConfig]:
    """finetune_cfg("ner", train, dev, out, "train.epochs=2", ...) -> resources/finetune.yaml on the tiny model,
    batch 8, lr 3e-3 (overridable)."""

    def make(task: str, train: Path, dev: Path | None, out: Path, *overrides: str) -> RunConfig:
        base = [f"init.from={tiny_encoder}", f"task.name={task}", f"task.train={train}", f"run.output_dir={out}",
                "train.batch_size=8", "train.lr=3e-3", "train.epochs=2"]
        if dev is not None:
            base.append(f"task.validation={dev}")
        return load_config(FINETUNE_DEFAULTS, [*base, *overrides])

    return make

