"""Pre-training throughput of every objective: `plm pretrain` on the same text with a model of the same width for the
same steps, one objective after another in this one process.

    python benchmarks/objective_throughput.py                       # 30 steps each, all objectives
    python benchmarks/objective_throughput.py --objectives mlm electra --steps 12 --warmup 4
Each objective starts from its debug config (configs/debug/<name>.yaml: what makes it that objective) with the model,
data and batch set to the benchmark's: hidden 256, 4 layers (T5: 4 encoder + 4 decoder layers), 4 heads, FFN 1,024,
dropout 0.1, 128-token inputs, batch 32, a tokenizer of 16,000 tokens trained on the same text, the precision `auto`
picks. Prints one JSON object on one stdout line; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers shared with mlm_throughput.py

from mlm_throughput import (
    REPO,
    add_timing_options,
    environment,
    log,
    parse_timed,
    plmkit_rate,
    read_documents,
    reset_accelerate,
)

OBJECTIVES = {"mlm": "mlm", "mlm_wwm": "mlm_wwm", "clm": "clm", "electra": "electra",
              "span_corruption": "span_corruption"}
"""Benchmark name -> its debug config in configs/debug/ (whole-word masking is MLM with objective.whole_word)."""
WIDTH = {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024, "dropout": 0.1}
BLOCK, BATCH, VOCAB = 128, 32, 16000


def overrides(corpus: Path, work: Path, args, name: str) -> list[str]:
    """The benchmark's model, data and schedule on top of the objective's debug config."""
    return [f"run.output_dir={work / name}", f"run.seed={args.seed}", f"data.paths={json.dumps([str(corpus)])}",
            "data.doc_split=line", "data.min_chars=0", "data.dedup=false", "data.validation_fraction=0.05",
            f"data.block_size={BLOCK}", f"data.cache_dir={work / 'cache'}", f"tokenizer.train.vocab_size={VOCAB}",
            *(f"model.{k}={v}" for k, v in WIDTH.items()), "model.max_position_embeddings=512",
            f"train.batch_size={BATCH}", f"train.max_steps={args.steps}", "train.lr=5e-4",
            "train.lr_schedule=linear", "train.warmup_steps=0", "train.precision=auto",
            f"train.log_every={args.warmup}", "train.eval_every=0", "train.eval_blocks=16", "eval.at_start=false",
            f"train.save_every={args.steps}", "log.to=[jsonl]"]


def run_objective(name: str, corpus: Path, work: Path, args) -> dict:
    from plmkit import load_config
    from plmkit.api import pretrain

    cfg = load_config(REPO / "configs" / "debug" / f"{OBJECTIVES[name]}.yaml", overrides(corpus, work, args, name))
    reset_accelerate()
    started = time.time()
    with contextlib.redirect_stdout(sys.stderr):
        result = pretrain(cfg, overwrite=True, show_progress=not args.quiet)
    run_dir = Path(cfg.run.output_dir)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    timed = [r for r in rows if "mfu" in r and r["step"] > args.warmup]
    vocab = len(json.loads((run_dir / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"])
    config = json.loads((run_dir / "final" / "config.json").read_text(encoding="utf-8"))
    return {"tokens_per_s": round(plmkit_rate(run_dir, args.warmup, args.steps), 1),
            "mfu": round(sum(r["mfu"] for r in timed) / max(len(timed), 1), 4),
            "arch": cfg.model.arch, "vocab_size": config.get("vocab_size", vocab),
            "loss_first_step": rows[0]["step"], "loss_first": rows[0].get("loss"),
            "loss_last": result.metrics.get("loss"), "wall_seconds": round(time.time() - started, 1)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objectives", nargs="+", choices=list(OBJECTIVES), default=list(OBJECTIVES))
    add_timing_options(parser, steps=30, per="objective", quiet="no progress bars")
    parser.add_argument("--data", type=Path, default=None,
                        help="a text file, one document per line, a folder holding wiki.train.raw, or stdlib "
                             "(the standard-library corpus); default: WikiText-2 train from $PLMKIT_DATA or "
                             "../shared/data")
    return parse_timed(parser, argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="plm-objective-throughput-") as tmp:
        work = Path(tmp)
        docs, source = read_documents(args.data, min_chars=20, needed_chars=max(10 * args.steps * BATCH * BLOCK,
                                                                                 400_000))
        corpus = work / "corpus.txt"
        corpus.write_text("\n".join(docs) + "\n", encoding="utf-8")
        results = {}
        for name in args.objectives:
            log(f"{name}: {args.steps} steps of {BATCH} x {BLOCK} tokens")
            results[name] = run_objective(name, corpus, work, args)
            log(f"    {results[name]['tokens_per_s']:,.0f} tokens/s, MFU {results[name]['mfu']:.1%}")
    result = {"benchmark": "objective_throughput", "objectives": results, "steps": args.steps,
              "timed_steps": args.steps - args.warmup, "batch_size": BATCH, "block_size": BLOCK,
              "model": {**WIDTH, "tokenizer_vocab_size_setting": VOCAB},  # each objective's own: its vocab_size
              "measure": ("input tokens per second (T5: encoder input tokens) from the end of step warmup to the "
                          "end of the last step, from metrics.jsonl; MFU: the mean of the timed rows"),
              "data": source, "documents": len(docs), "wall_seconds": round(time.time() - started, 1),
              **environment()}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    from plmkit.errors import PlmError

    try:
        main()
    except (PlmError, FileNotFoundError) as e:  # bad data, config or paths: one line, no traceback
        sys.exit(f"error: {e}")
