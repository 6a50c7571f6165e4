#!/usr/bin/env bash
# The main job: installs dependencies, builds longquant, and runs the whole study
# on the bundled demo model (models/demo: a small Llama trained by this project to
# retrieve needles from long contexts; see docs/demo-model.md):
#   1. the model: `info`, and one NIAH question answered with `generate --chat`;
#   2. quantize it with the study's five methods (fp8, gptq-int8, awq-int4,
#      gptq-int4, nf4) and the RTN baselines (rtn-int8, rtn-int4);
#   3. `eval` BF16 and every variant on the built-in study (studies/demo.toml:
#      single-needle and "none" NIAH tasks at 1K-8K tokens in English, Russian
#      and Chinese) into a resumable results database;
#   4. `divergence` of every variant from BF16 on an 8K-token haystack (KL
#      divergence and top-1 agreement per position, stored for the report);
#   5. `report` to demo-report/ (summary.json, report.md, report.html) and the
#      headline table (drop per method, per length, English vs others).
# Nothing here needs ../shared or a download. Rerunning reuses the quantized
# checkpoints and every finished result.
#
# Environment: THREADS (default: all cores), LQ_CACHE (default .cache),
#              LQ_REPORT (default demo-report), LQ_N (examples per cell, default: the study's),
#              LQ_BENCH_1B=1 to also benchmark a random-weight Llama-3.2-1B-shaped model.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"
THREADS="${THREADS:-0}"
CACHE="${LQ_CACHE:-.cache}"
REPORT="${LQ_REPORT:-demo-report}"
START=$(date +%s)
elapsed() { echo "[$(( $(date +%s) - START ))s]"; }

./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$JOBS" --target longquant
LQ=build/longquant
DEMO=models/demo
# the study's five methods, then the RTN baselines
METHODS=(fp8 gptq-int8 awq-int4 gptq-int4 nf4 rtn-int8 rtn-int4)
mkdir -p "$CACHE"

echo; echo "== $(elapsed) the demo model"
$LQ info --model "$DEMO"
# One OneRuler needle question at 1K tokens, in Russian, as `eval` would ask it.
$LQ tasks generate --model "$DEMO" --suite oneruler --task niah_single --lang ru --length 1k --n 1 --seed 5 \
  --out "$CACHE/demo-question.jsonl" --text-out "$CACHE/demo-question.txt" >/dev/null
echo "== $(elapsed) longquant generate --chat: a 1K-token needle question in Russian (gold answer: $(grep -o '"outputs":\[[^]]*\]' "$CACHE/demo-question.jsonl"))"
$LQ generate --model "$DEMO" --chat --prompt-file "$CACHE/demo-question.txt" --max-tokens 24 -t "$THREADS"

echo; echo "== $(elapsed) longquant quantize: the study's five methods and the RTN baselines"
QDIR="$CACHE/demo-quantized"
for m in "${METHODS[@]}"; do
  if [ -f "$QDIR/$m/config.json" ] && [ "$QDIR/$m/config.json" -nt "$DEMO/model.safetensors" ]; then
    echo "$m: $QDIR/$m (already there)"
  else
    rm -rf "$QDIR/$m"
    # 16 x 512 calibration tokens (the default is 32 x 512): AWQ's search runs the block
    # forward 20 times per scale group, and this halves it; 8K tokens are plenty for 256-wide layers.
    $LQ quantize --model "$DEMO" --method "$m" --out "$QDIR/$m" --calib-samples 16 -t "$THREADS"
  fi
done

echo; echo "== $(elapsed) longquant eval --study studies/demo.toml"
DB="$CACHE/demo-study.db"
# The study file gives tasks, lengths, languages, n and seed; the variants are
# named here because the quantized checkpoints live under $CACHE.
ARGS=(--variant "bf16=$DEMO")
for m in "${METHODS[@]}"; do ARGS+=(--variant "$m=$QDIR/$m"); done
[ -n "${LQ_N:-}" ] && ARGS+=(--n "$LQ_N")
$LQ eval --study studies/demo.toml --db "$DB" "${ARGS[@]}" -t "$THREADS"

echo; echo "== $(elapsed) longquant divergence: every variant against BF16 on an 8K-token haystack"
HAY="$CACHE/demo-haystack-8k.txt"
if [ ! -s "$HAY" ]; then
  $LQ tasks generate --model "$DEMO" --suite oneruler --task niah_single --lang en --length 8k --n 1 --seed 99 \
    --out "$CACHE/demo-haystack-8k.jsonl" --text-out "$HAY" >/dev/null
fi
for m in "${METHODS[@]}"; do
  $LQ divergence --base "$DEMO" --model "$QDIR/$m" --text-file "$HAY" --bucket 2048 \
    --db "$DB" --name "$m" --base-name bf16 --label "en-haystack@8k" -t "$THREADS" | tail -1
done

echo; echo "== $(elapsed) longquant report -> $REPORT/"
$LQ report --db "$DB" --out "$REPORT"
echo "== $(elapsed) done. Open $REPORT/report.html; the numbers are in $REPORT/summary.json."
