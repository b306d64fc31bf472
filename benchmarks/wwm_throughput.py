"""Whole-word masking costs: segmenting at prepare time, masking in collate, and training tokens/s with and without.

    python benchmarks/wwm_throughput.py --tokenizer runs/mlm-wwm-zh-tiny/tokenizer     # zhwiki sample, jieba
    python benchmarks/wwm_throughput.py --data ../shared/data/wikitext2_raw/wiki.train.raw --doc-split line \
        --tokenizer runs/en/tokenizer --segmenters none,pretokenizer --config configs/debug/mlm_wwm.yaml --train-steps 0

Three measurements, alternating the variants within each repeat so that load from other jobs hits them alike:
- prepare: process CPU seconds of the tokenize-and-segment pass (plmkit.data.pack._tokenize) per segmenter;
- collate: seconds to mask one batch (--batch x --block tokens) with MaskedLM.collate, token vs whole-word masking;
- train: tokens/s of `plm pretrain CONFIG` (plmkit.api.pretrain), whole_word false vs true, on the same shards (the
  segmenter is the last of --segmenters), from metrics.jsonl between steps 10 and --train-steps - 5 (no evaluation
  or checkpoint inside that window).
Prints one JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mlm_throughput import REPO, commit, default_data_dir, log, plmkit_rate


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="a text file (default: zhwiki_sample under $PLMKIT_DATA or ../shared/data)")
    parser.add_argument("--doc-split", default="doc_tags", help="data.doc_split of the file (default doc_tags)")
    parser.add_argument("--tokenizer", required=True, help="a tokenizer folder (e.g. a run's tokenizer/)")
    parser.add_argument("--segmenters", default="none,pretokenizer,jieba")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "pretrain" / "mlm-wwm-zh.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config overrides for the training runs (default: hidden 128)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--train-steps", type=int, default=40,
                        help="0: no training runs; else a multiple of 5, at least 20 (rows are logged every 5 steps)")
    args = parser.parse_args(argv)
    if args.train_steps and (args.train_steps < 20 or args.train_steps % 5):
        parser.error(f"--train-steps {args.train_steps}: give 0 (no training runs) or a multiple of 5 that is at least "
                     "20 (the rate is read between the rows of steps 10 and --train-steps - 5)")

    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from plmkit import load_config
    from plmkit.api import pretrain
    from plmkit.config import DataConfig
    from plmkit.data import prepare_shards
    from plmkit.data.corpus import load_corpus
    from plmkit.data.pack import _tokenize
    from plmkit.objectives.mlm import MaskedLM, MLMConfig

    path = args.data or default_data_dir() / "zhwiki_sample" / "zhwiki_AA_wiki_00.txt"
    segmenters = args.segmenters.split(",")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    data_cfg = DataConfig(paths=[str(path)], doc_split=args.doc_split, validation_fraction=0.0)
    docs = load_corpus(data_cfg, 13).train
    if "jieba" in segmenters:
        import jieba

        jieba.setLogLevel(30)
        jieba.initialize()  # load the dictionary outside the timing
    log(f"{path}: {len(docs)} documents; tokenizer {args.tokenizer} ({len(tokenizer)} tokens)")

    cpu: dict[str, list[float]] = {s: [] for s in segmenters}
    tokens = 0
    for _ in range(args.repeats):
        for seg in segmenters:
            start = time.process_time()
            tokens = sum(len(a) for a in _tokenize(docs, tokenizer, tokenizer.sep_token_id, np.dtype(np.uint32),
                                                   lambda n: None, seg))
            cpu[seg].append(time.process_time() - start)
    prepare = {s: {"cpu_seconds": [round(x, 3) for x in v], "tokens_per_cpu_s": round(tokens / statistics.median(v))}
               for s, v in cpu.items()}
    log(f"prepare: {json.dumps(prepare)}")

    with tempfile.TemporaryDirectory(prefix="plm-wwm-bench-") as tmp:
        cfg = DataConfig(paths=[str(path)], doc_split=args.doc_split, validation_fraction=0.0,
                         cache_dir=f"{tmp}/cache", segmenter=segmenters[-1])
        data = prepare_shards(cfg, tokenizer, 13, whole_words=True, show_progress=False)
        blocks = data.dataset("train", args.block, cls_id=tokenizer.cls_token_id)
        batches = [[blocks[(b * args.batch + i) % len(blocks)] for i in range(args.batch)] for b in range(20)]
        objectives = {"token": MaskedLM(MLMConfig(), tokenizer, 13),
                      "whole_word": MaskedLM(MLMConfig(whole_word=True), tokenizer, 13)}
        collate: dict[str, list[float]] = {k: [] for k in objectives}
        with torch.no_grad():
            for _ in range(args.repeats):
                for name, obj in objectives.items():
                    start = time.perf_counter()
                    for batch in batches:
                        obj.collate(batch)
                    collate[name].append((time.perf_counter() - start) / len(batches))
        collate_ms = {k: round(1000 * statistics.median(v), 2) for k, v in collate.items()}
        log(f"collate ms per {args.batch}x{args.block} batch: {collate_ms}")

        train: dict[str, list[float]] = {"token": [], "whole_word": []}
        for rep in range(args.repeats if args.train_steps else 0):
            for name, rates in train.items():
                overrides = [f"data.paths={json.dumps([str(path)])}", f"data.doc_split={args.doc_split}",
                             "data.validation_fraction=0.0", f"data.cache_dir={tmp}/cache", f"run.output_dir={tmp}/{name}{rep}",
                             f"tokenizer.pretrained={args.tokenizer}", f"data.segmenter={segmenters[-1]}",
                             f"objective.whole_word={name == 'whole_word'}", f"train.max_steps={args.train_steps}",
                             "train.eval_every=0", "eval.at_start=false", f"train.save_every={args.train_steps}",
                             "train.log_every=5", *(args.overrides or ["model.hidden_size=128"])]
                run_dir = pretrain(load_config(args.config, overrides), show_progress=False).output_dir
                rates.append(plmkit_rate(run_dir, 10, args.train_steps - 5))
                log(f"train {name} repeat {rep}: {rates[-1]:,.0f} tokens/s")
    result = {
        "benchmark": "wwm", "data": str(path), "tokens": tokens, "tokenizer": args.tokenizer,
        "vocab_size": len(tokenizer), "prepare": prepare, "collate_ms_per_batch": collate_ms,
        "train_tokens_per_s": {k: [round(x) for x in v] for k, v in train.items()},
        "train_steps": args.train_steps, "config": str(args.config), "overrides": args.overrides,
        "commit": commit(), "date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    from plmkit.errors import PlmError

    try:
        main()
    except (PlmError, FileNotFoundError) as e:  # bad data, config or paths: one line, no traceback
        sys.exit(f"error: {e}")
