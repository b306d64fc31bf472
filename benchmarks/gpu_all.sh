#!/usr/bin/env bash
# A GPU session's measurements: which attention kernel SDPA picks and how fast each runs
# (benchmarks/gpu_attention.py, at BERT-base's and GPT-2's shapes), then benchmarks/gpu.sh once per variant in RUNS,
# each under its own time limit and with a 3-step profile. The default, the two configs as they are, with the
# attention checks takes up to 2 x 125 + 180 + 270 s, more than one device call may (10 minutes): run it without the
# checks (about 5 minutes), or the checks alone with RUNS="". Run from the repo root:
#   ATTENTION="" OUT=/tmp/gpu bash benchmarks/gpu_all.sh           # GPT-2 124M and BERT-base as configured
#   RUNS="gpt2=gpt2|;gpt2-b16=gpt2|--set train.batch_size=16 --set train.grad_accum=4" ATTENTION=gpt2 OUT=/tmp/gpu \
#     bash benchmarks/gpu_all.sh                                     # variants: --set overrides after the '|'
#   CPU_REHEARSAL=1 OUT=/tmp/gpu bash benchmarks/gpu_all.sh      # all of it on a CPU with tiny models (about 3 minutes)
# Env: RUNS (';'-separated name=model|extra --set overrides; default "gpt2=gpt2|;bert=bert|"), ATTENTION (bert
# gpt2; empty skips the check), GPT_STEPS (50), BERT_STEPS (50), GPT_LIMIT (150 s) and BERT_LIMIT (240 s) per run,
# ATTENTION_LIMIT (120 s), OUT. Prints each attention check's JSON line (and its error output if it fails), then
# gpu.sh's line of each run with "variant" added. $OUT/attention_<shapes>.json and $OUT/<variant>.tgz (a run's logs,
# metrics and profile: ops.txt, summary.json, trace.json, a BERT-base trace being about 90 MB, 7 MB packed) come back
# from a device call as they are: it brings back at most 8 files of at most 16 MiB.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/plm-gpu-all}; W=$(mktemp -d /tmp/plm-gpu-all.XXXX); mkdir -p "$OUT"
REHEARSAL=${CPU_REHEARSAL:-0}
RUNS=${RUNS-"gpt2=gpt2|;bert=bert|"}  # RUNS="": the attention checks alone
GPT_STEPS=${GPT_STEPS:-$([ "$REHEARSAL" = 1 ] && echo 8 || echo 50)}
BERT_STEPS=${BERT_STEPS:-$([ "$REHEARSAL" = 1 ] && echo 8 || echo 50)}
PROFILE_FROM=$([ "$REHEARSAL" = 1 ] && echo 4 || echo 25)
export PYTHONPATH=src PYTHONUNBUFFERED=1
source benchmarks/gpu_wheels.sh  # the attention check imports plmkit, and so omegaconf, before gpu.sh runs
if [ "$REHEARSAL" != 1 ] && ! python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_all.sh: no CUDA device (torch.cuda.is_available() is false); CPU_REHEARSAL=1 runs a tiny CPU smoke run" >&2
  exit 3
fi
failed=0

mkdir -p "$W/attention"
for shapes in ${ATTENTION-bert gpt2}; do  # BERT-base's attention (dropout 0.1), GPT-2 124M's (causal, no dropout)
  case $shapes in
    bert) args=(--shape 32,12,512,64 --dropout 0.1) ;;
    gpt2) args=(--shape 16,12,1024,64 --causal --dropout 0) ;;
    *) echo "gpu_all.sh: unknown ATTENTION entry $shapes (bert | gpt2)" >&2; continue ;;
  esac
  [ "$REHEARSAL" = 1 ] && args=(--device cpu --shape 2,2,64,16 "${args[@]:2}")
  timeout -k 5 "${ATTENTION_LIMIT:-120}" python3 benchmarks/gpu_attention.py "${args[@]}" \
    > "$OUT/attention_$shapes.json" 2> "$W/attention/$shapes.err"
  rc=$?
  echo "{\"gpu_attention\": \"$shapes\", \"rc\": $rc}"
  cat "$OUT/attention_$shapes.json"
  [ $rc != 0 ] && tail -20 "$W/attention/$shapes.err" >&2  # why it failed, on the call's output
done

IFS=';' read -ra variants <<< "$RUNS"
for variant in "${variants[@]}"; do
  name=${variant%%=*}; rest=${variant#*=}; model=${rest%%|*}; extra=${rest#*|}
  case $model in
    gpt2) steps=$GPT_STEPS; limit=${GPT_LIMIT:-150} ;;
    bert) steps=$BERT_STEPS; limit=${BERT_LIMIT:-240} ;;
    *) echo "gpu_all.sh: unknown model $model in $variant" >&2; continue ;;
  esac
  # CUDA graphs need a GPU; a rehearsal runs the variant without them
  [ "$REHEARSAL" = 1 ] && extra=${extra//--set train.compile_mode=reduce-overhead/}
  [ "$REHEARSAL" = 1 ] && extra=${extra//--set train.sdpa_backends=\[flash,efficient,cudnn\]/--set train.sdpa_backends=[flash,math]}
  mkdir -p "$W/$name"
  MODELS=$model STEPS=$steps LOG_EVERY=10 OUT="$W/$name" WORK="$W/work" \
    EXTRA="--set train.profile_steps=3 --set train.profile_from=$PROFILE_FROM $extra" \
    RUN_LIMIT=$limit timeout -k 5 "$((limit + 30))" bash benchmarks/gpu.sh > "$W/$name/gpu.out" 2> "$W/$name/gpu.err"
  rc=$?  # gpu.sh stops its run at RUN_LIMIT and sums it up; this limit, 30 s later, is a safety net
  # the profile's trace, and the metrics of a run that the safety net stopped (gpu.sh copies them otherwise)
  cp -r "$W/work/$model/profile" "$W/$name/" 2>/dev/null
  cp "$W/work/$model/metrics.jsonl" "$W/$name/metrics.jsonl" 2>/dev/null
  line=$(grep '^{' "$W/$name/gpu.out" | tail -1)
  [ -z "$line" ] && failed=1
  why=$(tail -3 "$W/$name/gpu.err" "$W/$name/$model.err" 2>/dev/null | grep -v '^$' | grep -v '^==>' | tail -2)
  python3 - "$name" "$rc" "$extra" "$line" "$why" <<'PY'
import json, sys
name, rc, extra, line, why = sys.argv[1:]
stopped = "ran out of its time limit" if rc in ("124", "137") else f"failed (exit status {rc})"
res = json.loads(line) if line else {"error": f"no result: the run {stopped}", "stderr_tail": why}
print(json.dumps({"variant": name, "limit_rc": int(rc), "extra": extra.strip(), **res}))
PY
  tar czf "$OUT/$name.tgz" -C "$W" "$name"
done
rm -rf "$W"
exit $failed  # 1 when a variant gave no result (its line above says why)
