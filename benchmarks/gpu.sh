#!/usr/bin/env bash
# Tokens/s and MFU of `plm pretrain` on one GPU, bf16: GPT-2 124M (causal LM, 1,024-token blocks) and BERT-base
# (masked LM, 512-token blocks), configs/pretrain/gpt2-124m.yaml and bert-base-mlm.yaml, on the quickstart's
# standard-library corpus (built on the spot: no data has to be carried to the GPU machine). Run from the repo root:
#   OUT=/tmp/gpu bash benchmarks/gpu.sh                 # STEPS=200 per model, the configs as they are (compiled)
#   STEPS=100 COMPILE=0 MODELS=gpt2 bash benchmarks/gpu.sh
#   CPU_REHEARSAL=1 bash benchmarks/gpu.sh              # a CPU smoke run: 2 layers x 128, 128-token blocks, 5 steps
# Env: STEPS, MODELS (gpt2 bert), COMPILE (1: train.compile, retried without it if the compiled run fails; 0: eager),
# GPT_BATCH / BERT_BATCH (micro-batch; default the configs' 32 and 128; their grad_accum stays), RUN_LIMIT (seconds
# per model, the first model's counted from this script's start; 0: none; a run it stops is summed up from the rows
# it logged and says stopped_by_limit_s), LOG_EVERY (20), EXTRA (more --set overrides), OUT (results), WORK (run
# folders, shard cache). Prints one JSON line per model: the medians of the logged tokens/s and MFU over the logging
# windows after the first two (compilation, warm-up), and what ran; with EXTRA="--set train.profile_steps=3 --set
# train.profile_from=25", also the profile's share of GPU-busy time (the windows holding profiled steps are then left
# out of the medians; WORK/<model>/profile/ holds its operator table and trace).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/plm-gpu-bench}; WORK=${WORK:-/tmp/plm-gpu-bench-work}; mkdir -p "$OUT" "$WORK"
export PYTHONPATH=src HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 COLUMNS=250  # COLUMNS: rich does not wrap the log lines
REHEARSAL=${CPU_REHEARSAL:-0}
STEPS=${STEPS:-$([ "$REHEARSAL" = 1 ] && echo 5 || echo 200)}
LOG_EVERY=${LOG_EVERY:-$([ "$REHEARSAL" = 1 ] && echo 1 || echo 20)}
COMPILE=${COMPILE:-$([ "$REHEARSAL" = 1 ] && echo 0 || echo 1)}
MODELS=${MODELS:-gpt2 bert}
RUN_LIMIT=${RUN_LIMIT:-0}
if ! [[ $RUN_LIMIT =~ ^[0-9]+$ ]]; then echo "gpu.sh: RUN_LIMIT is whole seconds (0: no limit), not '$RUN_LIMIT'" >&2; exit 2; fi
turn_start=$SECONDS  # RUN_LIMIT counts from here for the first model (this start-up included), then per model

source benchmarks/gpu_wheels.sh  # omegaconf from .gpu_wheels/ where it is missing
if [ "$REHEARSAL" != 1 ] && ! python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu.sh: no CUDA device (torch.cuda.is_available() is false); CPU_REHEARSAL=1 runs a tiny CPU smoke run" >&2
  exit 3
fi
python3 - > "$OUT/env.json" <<'PY'
import json, torch, transformers, accelerate
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU rehearsal)"
try:
    import flash_attn; flash = flash_attn.__version__
except ImportError:
    flash = None
print(json.dumps({"gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
                  "accelerate": accelerate.__version__, "flash_attn": flash}))
PY
python3 -c "from pathlib import Path; from plmkit.quickstart import write_stdlib_corpus; write_stdlib_corpus(Path('$WORK/stdlib.txt'))" || exit 1

COMMON=(--set "data.paths=[$WORK/stdlib.txt]" --set data.doc_split=blank_line --set "data.cache_dir=$WORK/cache"
        --set train.max_steps="$STEPS" --set train.log_every="$LOG_EVERY" --set train.eval_every=0
        --set eval.at_start=false --set train.eval_blocks=8 --set train.save_every=1000000
        --set train.precision="$([ "$REHEARSAL" = 1 ] && echo auto || echo bf16)" --set "log.to=[jsonl]" --overwrite)
if [ "$REHEARSAL" = 1 ]; then  # auto precision: bf16 only where this CPU computes it fast
  COMMON+=(--set model.num_layers=2 --set model.hidden_size=128 --set model.num_heads=2 --set data.block_size=128
           --set model.vocab_size=null --set tokenizer.train.vocab_size=2000 --set train.grad_accum=1
           --set train.batch_size=4)
fi

run_model() {  # name config batch -> $OUT/<name>.{out,err}, $WORK/<name>/metrics.jsonl
  local name=$1 config=$2 batch=$3 compile=$4 args=()
  [ "$REHEARSAL" != 1 ] && [ -n "$batch" ] && args+=(--set train.batch_size="$batch")
  args+=(--set train.compile="$([ "$compile" = 1 ] && echo true || echo false)")  # the configs set true
  # shellcheck disable=SC2206
  [ -n "${EXTRA:-}" ] && args+=($EXTRA)  # after COMMON, so that EXTRA's --set overrides win (on a GPU)
  # a rehearsal stays tiny, at auto precision, whatever EXTRA sets
  [ "$REHEARSAL" = 1 ] && args+=(--set train.batch_size=4 --set train.grad_accum=1 --set train.precision=auto)
  local limit=()  # RUN_LIMIT: a run stopped at its limit is still summed up below from the rows it logged
  if [ "$RUN_LIMIT" -gt 0 ]; then
    local left=$((RUN_LIMIT - (SECONDS - turn_start)))
    [ "$left" -lt 1 ] && return 124
    limit=(timeout --foreground -k 5 "$left")  # --foreground: Ctrl-C still reaches the run
  fi
  "${limit[@]}" python3 -m plmkit pretrain "$config" "${COMMON[@]}" "${args[@]}" \
    --set "run.output_dir=$WORK/$name" > "$OUT/$name.out" 2> "$OUT/$name.err"
}

stopped() { [ "$RUN_LIMIT" -gt 0 ] && { [ "$rc" = 124 ] || [ "$rc" = 137 ]; }; }  # the last run's rc: its limit's?

for model in $MODELS; do
  case $model in
    gpt2) config=configs/pretrain/gpt2-124m.yaml; batch=${GPT_BATCH:-} ;;
    bert) config=configs/pretrain/bert-base-mlm.yaml; batch=${BERT_BATCH:-} ;;
    *) echo "gpu.sh: unknown model $model (gpt2 | bert)" >&2; continue ;;
  esac
  compiled=$COMPILE; compile_error=""
  run_model "$model" "$config" "$batch" "$compiled"; rc=$?
  if [ $rc != 0 ] && ! stopped && [ "$compiled" = 1 ]; then  # the eager rerun gets the time that is left
    compile_error=$(tail -3 "$OUT/$model.err" | tr '\n"' ' _')
    compiled=0; run_model "$model" "$config" "$batch" 0; rc=$?
  fi
  stopped && limited=$RUN_LIMIT || limited=0
  cp "$WORK/$model/metrics.jsonl" "$OUT/${model}_metrics.jsonl" 2>/dev/null
  cp "$WORK/$model/profile/summary.json" "$OUT/${model}_profile.json" 2>/dev/null
  python3 - "$OUT" "$model" "$config" "$rc" "$compiled" "$compile_error" "$STEPS" "$REHEARSAL" "$limited" <<'PY'
import json, os, re, statistics, sys
out, name, config, rc, compiled, compile_error, steps, rehearsal, limited = sys.argv[1:]
res = {"model": name, "config": config, "rc": int(rc), "steps": int(steps), "compile": compiled == "1",
       "cpu_rehearsal": rehearsal == "1", **json.load(open(f"{out}/env.json"))}
if compile_error:
    res["compile_failed"] = compile_error.strip()
if limited != "0":  # the medians below are then those of the rows written before the stop
    res["stopped_by_limit_s"] = int(limited)
err = open(f"{out}/{name}.err", errors="replace").read()
for pattern, key in ((r"model FLOPs (\S+) per token; MFU against (.*)", ("flops_per_token", "peak")),
                     (r"precision (\S+), (\S+) attention, (\S+) AdamW(.*)", ("precision", "attention", "adamw", "extras"))):
    m = re.search(pattern, err)
    if m:
        res.update({k: v.strip(", ") for k, v in zip(key, m.groups(), strict=True) if v.strip(", ")})
try:
    rows = [json.loads(line) for line in open(f"{out}/{name}_metrics.jsonl") if line.strip()]
    rows = [r for r in rows if "tokens_per_s" in r]
    steady = rows[2:] or rows
    if os.path.exists(f"{out}/{name}_profile.json"):  # the profiled steps (and the trace's writing) are slower
        prof = json.load(open(f"{out}/{name}_profile.json"))
        first, last = prof["first_step"], prof["first_step"] + prof["steps"]
        starts = [0] + [r["step"] for r in rows[:-1]]
        steady = [r for r, start in zip(rows, starts) if r in steady and (r["step"] < first or start >= last)] or steady
    res.update({"windows": len(rows), "windows_used": len(steady),
                "tokens_per_s_median": statistics.median(r["tokens_per_s"] for r in steady),
                "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"]})
    if all("mfu" in r for r in steady):
        res["mfu_median"] = statistics.median(r["mfu"] for r in steady)
    if os.path.exists(f"{out}/{name}_profile.json"):  # EXTRA="--set train.profile_steps=3"
        prof = json.load(open(f"{out}/{name}_profile.json"))
        res["profile"] = {k: prof[k] for k in ("steps", "first_step", "wall_s_per_step", "device_busy") if k in prof}
    last = [line for line in open(f"{out}/{name}.out") if line.startswith("{")]
    if last:  # plm pretrain's result: mfu there is the mean over all logged windows, warm-up included
        run = json.loads(last[-1])
        res["run"] = {k: run[k] for k in ("mfu", "tokens_seen", "train_seconds", "eval_loss", "peak_memory_gb")
                     if k in run}
except Exception as exc:  # report what failed rather than nothing
    res["error"] = repr(exc)
    res["stderr_tail"] = err.strip().splitlines()[-5:]
print(json.dumps(res))
with open(f"{out}/summary.jsonl", "a") as f:
    f.write(json.dumps(res) + "\n")
PY
  turn_start=$SECONDS
done
