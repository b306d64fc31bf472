#!/usr/bin/env bash
# A GPU session's measurements in one call: which attention kernel SDPA picks (benchmarks/gpu_attention.py), then
# benchmarks/gpu.sh once per variant in RUNS, each under its own time limit and with a 3-step profile, and at the end
# one archive of everything. Sized for one device call of under 10 minutes. Run from the repo root:
#   OUT=/tmp/gpu bash benchmarks/gpu_all.sh
#   CPU_REHEARSAL=1 OUT=/tmp/gpu bash benchmarks/gpu_all.sh      # the same on a CPU with tiny models (about 3 min)
# Env: RUNS (';'-separated name=model|extra --set overrides), GPT_STEPS (60), BERT_STEPS (50), GPT_LIMIT (170 s) and
# BERT_LIMIT (230 s) per run, ATTENTION_LIMIT (120 s), OUT. Prints gpu_attention.py's JSON line, then gpu.sh's line of
# each run with "variant" added. $OUT/<variant>.tgz holds a run's logs, metrics and profile (ops.txt, summary.json,
# trace.json: a BERT-base trace is about 60 MB, 6 MB packed) and $OUT/attention.json the attention check: a device
# call brings back at most 8 files of at most 16 MiB, so each run travels as one archive.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/plm-gpu-all}; W=$(mktemp -d /tmp/plm-gpu-all.XXXX); mkdir -p "$OUT"
REHEARSAL=${CPU_REHEARSAL:-0}
RUNS=${RUNS:-"gpt2=gpt2|;gpt2-cudagraphs=gpt2|--set train.compile_mode=reduce-overhead;bert=bert|;bert-fused-sdpa=bert|--set train.sdpa_backends=[flash,efficient,cudnn]"}
GPT_STEPS=${GPT_STEPS:-$([ "$REHEARSAL" = 1 ] && echo 8 || echo 60)}
BERT_STEPS=${BERT_STEPS:-$([ "$REHEARSAL" = 1 ] && echo 8 || echo 50)}
PROFILE_FROM=$([ "$REHEARSAL" = 1 ] && echo 4 || echo 35)
export PYTHONPATH=src PYTHONUNBUFFERED=1

mkdir -p "$W/attention"
if [ "$REHEARSAL" = 1 ]; then attention_args=(--device cpu --shape 2,2,64,16); else attention_args=(); fi
timeout -k 5 "${ATTENTION_LIMIT:-120}" python3 benchmarks/gpu_attention.py "${attention_args[@]}" \
  > "$OUT/attention.json" 2> "$W/attention/stderr.txt"
echo "{\"gpu_attention_rc\": $?}"
cat "$OUT/attention.json"

IFS=';' read -ra variants <<< "$RUNS"
for variant in "${variants[@]}"; do
  name=${variant%%=*}; rest=${variant#*=}; model=${rest%%|*}; extra=${rest#*|}
  case $model in
    gpt2) steps=$GPT_STEPS; limit=${GPT_LIMIT:-170} ;;
    bert) steps=$BERT_STEPS; limit=${BERT_LIMIT:-230} ;;
    *) echo "gpu_all.sh: unknown model $model in $variant" >&2; continue ;;
  esac
  # CUDA graphs need a GPU; a rehearsal runs the variant without them
  [ "$REHEARSAL" = 1 ] && extra=${extra//--set train.compile_mode=reduce-overhead/}
  [ "$REHEARSAL" = 1 ] && extra=${extra//--set train.sdpa_backends=\[flash,efficient,cudnn\]/--set train.sdpa_backends=[flash,math]}
  mkdir -p "$W/$name"
  MODELS=$model STEPS=$steps LOG_EVERY=10 OUT="$W/$name" WORK="$W/work" \
    EXTRA="--set train.profile_steps=3 --set train.profile_from=$PROFILE_FROM $extra" \
    timeout -k 5 "$limit" bash benchmarks/gpu.sh > "$W/$name/gpu.out" 2> "$W/$name/gpu.err"
  rc=$?
  cp -r "$W/work/$model/profile" "$W/$name/" 2>/dev/null
  cp "$W/work/$model/metrics.jsonl" "$W/$name/metrics.jsonl" 2>/dev/null
  line=$(grep '^{' "$W/$name/gpu.out" | tail -1)
  python3 - "$name" "$rc" "$extra" "$line" <<'PY'
import json, sys
name, rc, extra, line = sys.argv[1:]
res = json.loads(line) if line else {"error": "no result: the run failed or ran out of its time limit"}
print(json.dumps({"variant": name, "limit_rc": int(rc), "extra": extra.strip(), **res}))
PY
  tar czf "$OUT/$name.tgz" -C "$W" "$name"
done
rm -rf "$W"
