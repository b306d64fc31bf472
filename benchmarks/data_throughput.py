"""Throughput of `plm data prepare`: tokenizing a corpus into memory-mapped shards, with a fresh cache each run.

    python benchmarks/data_throughput.py                          # WikiText-2 train, configs/pretrain/mlm-bert-small.yaml
    python benchmarks/data_throughput.py --data ../shared/data/wikitext2_raw --config configs/pretrain/clm-gpt-small.yaml
    python benchmarks/data_throughput.py --tokenizer runs/x/tokenizer   # an existing tokenizer: no tokenizer training

Runs what `plm data prepare CONFIG --set data.paths=[FILE]` runs (plmkit.api.prepare_data: the tokenizer, trained
unless --tokenizer is given, then plmkit.data.prepare_shards) in a temporary run folder and shard cache, timing the
two phases apart. Tokens are those written to the shards (train + validation, one separator per document). The fast
tokenizer parallelises each batch of documents in Rust (rayon, one thread per logical CPU unless RAYON_NUM_THREADS
says otherwise, off when TOKENIZERS_PARALLELISM=false); `tokenize_cpu_utilisation` (process CPU seconds over wall
seconds of the shard phase) shows how many cores it kept busy. Prints one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mlm_throughput import REPO, commit, default_data_dir, log


def corpus_file(data: Path | None) -> Path:
    path = data if data is not None else default_data_dir() / "wikitext2_raw"
    if path.is_dir():
        path = path / "wiki.train.raw"
    if not path.is_file():
        raise SystemExit(f"no corpus at {path}: pass --data FILE or set PLMKIT_DATA")
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help="a text file or the wikitext2_raw folder (default: $PLMKIT_DATA or ../shared/data)")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "pretrain" / "mlm-bert-small.yaml")
    parser.add_argument("--tokenizer", default=None, help="tokenizer.pretrained: skip training a tokenizer")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="more config overrides")
    args = parser.parse_args(argv)

    import tokenizers
    import transformers

    from plmkit import load_config
    from plmkit.api import resolve_tokenizer
    from plmkit.data.pack import TOKENIZE_BATCH, prepare_shards

    path = corpus_file(args.data)
    with tempfile.TemporaryDirectory(prefix="plm-data-bench-") as tmp:
        overrides = [f"data.paths={json.dumps([str(path)])}", f"data.cache_dir={tmp}/cache",
                     f"run.output_dir={tmp}/run"]
        if args.tokenizer:
            overrides.append(f"tokenizer.pretrained={args.tokenizer}")
        cfg = load_config(args.config, overrides + args.overrides)
        log(f"corpus {path} ({path.stat().st_size:,} bytes), config {args.config.name}, cache {tmp}/cache (fresh)")
        started = time.perf_counter()
        tokenizer = resolve_tokenizer(cfg, show_progress=False)
        tokenizer_s = time.perf_counter() - started
        log(f"tokenizer ready in {tokenizer_s:.1f} s (vocabulary {len(tokenizer):,})")
        cpu0, wall0 = time.process_time(), time.perf_counter()
        data = prepare_shards(cfg.data, tokenizer, cfg.run.seed, show_progress=False)
        shard_s, shard_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        meta = data.meta
        shard_files = sorted(p.name for p in Path(data.path).iterdir() if p.is_file() and p.name != "meta.json")
    tokens = sum(meta["tokens"].values())
    report = data.report
    result = {
        "benchmark": "data_prepare", "data": str(path), "bytes": path.stat().st_size, "config": args.config.name,
        "tokenizer": args.tokenizer or f"trained: {cfg.tokenizer.train.algorithm} {cfg.tokenizer.train.vocab_size}",
        "vocab_size": len(tokenizer), "documents": report.documents_kept, "documents_read": report.documents_read,
        "tokens": tokens, "train_tokens": meta["tokens"]["train"], "validation_tokens": meta["tokens"]["validation"],
        "shards": sum(meta["shards"].values()), "shard_files": len(shard_files),
        "tokenizer_seconds": round(tokenizer_s, 2), "tokenize_seconds": round(shard_s, 2),
        "seconds": round(tokenizer_s + shard_s, 2),
        "tokens_per_s": round(tokens / shard_s), "tokens_per_s_with_tokenizer_training":
            round(tokens / (tokenizer_s + shard_s)),
        "tokenize_cpu_utilisation": round(shard_cpu / shard_s, 2), "tokenize_batch_documents": TOKENIZE_BATCH,
        "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "unset (on)"),
        "RAYON_NUM_THREADS": os.environ.get("RAYON_NUM_THREADS", "unset (one per logical CPU)"),
        "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "tokenizers": tokenizers.__version__, "transformers": transformers.__version__,
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
