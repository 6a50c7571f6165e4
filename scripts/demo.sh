#!/usr/bin/env bash
# The main job: installs dependencies, builds longquant, and runs it end to end
# on a model it makes itself. Nothing here needs ../shared or a download.
#
# Until the trained demo model lands (issue 6) the models are random-weight
# checkpoints written by `longquant synth`:
#   1. the engine on Llama-3.2-1B's real shapes: info, chat generation, and the
#      prefill / decode benchmark;
#   2. the study pipeline on a small model: quantize with the study's five methods
#      (+ RTN baselines), evaluate every variant on NIAH tasks in two languages,
#      write the report to demo-report/ and print the headline table. Random
#      weights score 0 everywhere, so the drops are all 0: this shows the
#      workflow, not the phenomenon (that needs the trained demo model).
# Rerunning reuses the synthetic checkpoints, quantized variants and results.
#
# Environment: THREADS (default: all cores), LQ_CACHE (default .cache),
#              LQ_REPORT (default demo-report), LQ_SKIP_1B=1 to skip part 1.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"
THREADS="${THREADS:-0}"
CACHE="${LQ_CACHE:-.cache}"
REPORT="${LQ_REPORT:-demo-report}"

./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$JOBS" --target longquant

LQ=build/longquant
mkdir -p "$CACHE"

if [ "${LQ_SKIP_1B:-0}" != 1 ]; then
  M1B="$CACHE/synth-llama-3.2-1b"
  if [ ! -f "$M1B/model.safetensors" ]; then
    echo "== synthesising a random-weight Llama-3.2-1B-shaped checkpoint in $M1B (2.4 GB)"
    $LQ synth --like llama-3.2-1b --out "$M1B" --seed 1 -t "$THREADS"
  fi
  echo "== longquant info"
  $LQ info --model "$M1B"
  echo "== longquant generate --chat (random weights: the text is noise; this shows the pipeline)"
  $LQ generate --model "$M1B" --chat --prompt "What does quantization do to long contexts?" \
    --max-tokens 16 -t "$THREADS"
  echo "== longquant bench: 512-token prefill, 32 decoded tokens"
  $LQ bench --model "$M1B" --prompt-tokens 512 --gen-tokens 32 -t "$THREADS"
fi

MS="$CACHE/synth-tiny-llama"
if [ ! -f "$MS/model.safetensors" ]; then
  echo "== synthesising a small random-weight Llama checkpoint in $MS"
  $LQ synth --like tiny-llama --layers 2 --out "$MS" --seed 2 -t "$THREADS"
fi
echo "== longquant eval: bf16 and every quantization method on NIAH tasks (random weights: scores are 0)"
VARIANTS=(--variant "bf16=$MS")
for m in fp8 gptq-int8 awq-int4 gptq-int4 nf4 rtn-int8 rtn-int4; do
  VARIANTS+=(--variant "$m=$MS,method=$m,calib_samples=8,calib_len=256")
done
$LQ eval "${VARIANTS[@]}" --tasks ruler/niah_single_1,oneruler/niah_single,oneruler/niah_none \
  --lengths 1k,2k --langs en,de,ru --n 2 --seed 1 --db "$CACHE/demo-study.db" --cache "$CACHE/quantized" \
  -t "$THREADS"
echo "== longquant report -> $REPORT/"
$LQ report --db "$CACHE/demo-study.db" --out "$REPORT"
