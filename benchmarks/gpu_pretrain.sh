#!/usr/bin/env bash
# GPU check for the pre-training path (run on a CUDA machine from the repo root; OUT= a folder for results).
#   OUT=/tmp/gpu bash benchmarks/gpu_pretrain.sh
# 1. the bf16 GPU tests (pytest -m gpu); 2. throughput of the shipped small BERT and GPT-2 configs, bf16, on the
# standard-library corpus the quickstart builds. Prints one JSON line with what it measured.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/plm-gpu}; mkdir -p "$OUT"
export PYTHONPATH=src HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
source benchmarks/gpu_wheels.sh  # omegaconf from .gpu_wheels/ where it is missing
if ! python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_pretrain.sh: no CUDA device (torch.cuda.is_available() is false); it measures GPU runs only" >&2
  exit 3
fi
W=$(mktemp -d /tmp/plm-gpu-pretrain.XXXX)  # this run's own corpus, cache and run folders
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt"
python3 -c "import torch, transformers, accelerate; print(torch.__version__, transformers.__version__, accelerate.__version__)" >> "$OUT/gpu.txt"
python3 -m pytest -q -m gpu tests/e2e/test_gpu.py -p no:cacheprovider > "$OUT/pytest_gpu.txt" 2>&1; echo "pytest rc=$?" >> "$OUT/pytest_gpu.txt"
python3 -c "from pathlib import Path; from plmkit.quickstart import write_stdlib_corpus; print(write_stdlib_corpus(Path('$W/stdlib.txt')))"
COMMON="--set data.paths=[$W/stdlib.txt] --set data.doc_split=blank_line --set data.cache_dir=$W/cache --set train.eval_every=0 --set train.save_every=100000 --set train.log_every=20 -q --overwrite"
python3 -m plmkit pretrain configs/pretrain/mlm-bert-small.yaml $COMMON --set run.output_dir=$W/bert --set train.max_steps=${BERT_STEPS:-400} > "$OUT/bert.json" 2> "$OUT/bert.err"
python3 -m plmkit pretrain configs/pretrain/clm-gpt-small.yaml $COMMON --set run.output_dir=$W/gpt --set train.max_steps=${GPT_STEPS:-150} > "$OUT/gpt.json" 2> "$OUT/gpt.err"
cp $W/bert/metrics.jsonl "$OUT/bert_metrics.jsonl" 2>/dev/null; cp $W/gpt/metrics.jsonl "$OUT/gpt_metrics.jsonl" 2>/dev/null
python3 - "$OUT" <<'PY'
import json, sys, statistics
out = sys.argv[1]
res = {"gpu": open(f"{out}/gpu.txt").read().strip().splitlines()}
for name in ("bert", "gpt"):
    try:
        rows = [json.loads(l) for l in open(f"{out}/{name}_metrics.jsonl")]
        steady = [r["tokens_per_s"] for r in rows[2:]] or [r["tokens_per_s"] for r in rows]
        res[name] = {"steps": rows[-1]["step"], "tokens_per_s_median": statistics.median(steady),
                     "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"]}
    except Exception as e:
        res[name] = {"error": repr(e)}
res["pytest_gpu"] = open(f"{out}/pytest_gpu.txt").read().strip().splitlines()[-2:]
print(json.dumps(res))
open(f"{out}/summary.json", "w").write(json.dumps(res))
PY
