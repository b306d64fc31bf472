"""The reference side of benchmarks/finetune.py: the Hugging Face Trainer fine-tuning all-MiniLM-L6-v2 on the first N
SST-2 training rows with run_glue.py's recipe, scored on the SST-2 *dev* split (the issue quotes test figures).

    python benchmarks/finetune_trainer.py                          # first 8,000 rows, 1 epoch, LR 2e-4, batch 32
    python benchmarks/finetune_trainer.py --lr 5e-5 --seed 7
Prints one JSON object on one stdout line (`dev_accuracy`, the settings, wall and CPU seconds); logs go to stderr.
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

from mlm_throughput import default_data_dir, environment, minilm_folder


def read_sst2(path: Path, limit: int | None) -> tuple[list[str], list[int]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    rows = rows[:limit] if limit else rows
    return [r["sentence"] for r in rows], [int(r["label"]) for r in rows]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first", type=int, default=8000, help="train on the first N rows (0: all)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=2e-4, help="default: the issue's tuned 2e-4")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42, help="run_glue.py's default seed")
    parser.add_argument("--data-dir", type=Path, default=None, help="holds sst2/ (default: $PLMKIT_DATA or ../shared/data)")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    folder = (args.data_dir or default_data_dir()) / "sst2"
    model_dir = minilm_folder()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def encode(texts: list[str], labels: list[int]) -> Dataset:
        data = Dataset.from_dict({"sentence": texts, "label": labels})
        return data.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=128), batched=True)

    train = encode(*read_sst2(folder / "train.tsv", args.first or None))
    dev_texts, dev_labels = read_sst2(folder / "dev.tsv", None)
    dev = encode(dev_texts, dev_labels)
    started, cpu = time.time(), time.process_time()
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    with tempfile.TemporaryDirectory(prefix="plm-trainer-sst2-") as out, contextlib.redirect_stdout(sys.stderr):
        training_args = TrainingArguments(output_dir=out, per_device_train_batch_size=args.batch_size,
                                          learning_rate=args.lr, num_train_epochs=args.epochs, seed=args.seed,
                                          use_cpu=not torch.cuda.is_available(), report_to="none",
                                          save_strategy="no", logging_steps=100, disable_tqdm=True)
        trainer = Trainer(model=model, args=training_args, train_dataset=train,
                          data_collator=DataCollatorWithPadding(tokenizer))
        trainer.train()
        predictions = trainer.predict(dev).predictions.argmax(-1)
    result = {"benchmark": "finetune_trainer", "dataset": "sst2", "train_examples": len(train),
              "eval_examples": len(dev), "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
              "seed": args.seed, "dev_accuracy": round(float((predictions == np.array(dev_labels)).mean()), 6),
              "wall_seconds": round(time.time() - started, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
              "recipe": "run_glue.py: AdamW, linear decay, no warm-up, weight decay 0, max length 128",
              **environment()}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    from plmkit.errors import PlmError

    try:
        main()
    except (PlmError, FileNotFoundError) as e:  # bad data, config or paths: one line, no traceback
        sys.exit(f"error: {e}")
