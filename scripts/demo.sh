#!/usr/bin/env bash
# The main job: installs dependencies, builds longquant, and runs it end to end.
#
# Until the trained demo model lands (issue 6) this synthesises a random-weight
# checkpoint with Llama-3.2-1B's real shapes, prints its description, generates
# from a text prompt through the chat template, and benchmarks prefill and decode
# on it. Nothing here needs ../shared or a download.
#
# Environment: THREADS (default: all cores), LQ_DEMO_MODEL (default llama-3.2-1b),
#              LQ_CACHE (default .cache) where the synthetic checkpoint is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-2}"
THREADS="${THREADS:-0}"
MODEL_LIKE="${LQ_DEMO_MODEL:-llama-3.2-1b}"
CACHE="${LQ_CACHE:-.cache}"

./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$JOBS" --target longquant

LQ=build/longquant
MODEL="$CACHE/synth-$MODEL_LIKE"
if [ ! -f "$MODEL/model.safetensors" ]; then
  echo "== synthesising a random-weight $MODEL_LIKE checkpoint in $MODEL"
  mkdir -p "$CACHE"
  $LQ synth --like "$MODEL_LIKE" --out "$MODEL" --seed 1 -t "$THREADS"
fi

echo "== longquant info"
$LQ info --model "$MODEL"

echo "== longquant generate (random weights: the text is noise; this shows the pipeline)"
$LQ generate --model "$MODEL" --chat --prompt "What does quantization do to long contexts?" \
  --max-tokens 16 -t "$THREADS"

echo "== longquant bench: 512-token prefill, 32 decoded tokens"
$LQ bench --model "$MODEL" --prompt-tokens 512 --gen-tokens 32 -t "$THREADS"
