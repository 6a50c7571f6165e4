#!/usr/bin/env bash
# The demo model's training run on a GPU machine (how models/demo was made; see
# docs/demo-model.md). Expects the repository with .demo-data/ (tools/demo/make_data.sh)
# and writes the model, the training log and the transformers cross-check to $OUT.
# Usage: OUT=dir tools/demo/device_train.sh [TIME_BUDGET_SECONDS] [extra train.py args]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUDGET="${1:-420}"
shift || true
export PYTHONUNBUFFERED=1
nvidia-smi -L || true
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python3 tools/demo/train.py --data .demo-data --tokenizer models/demo --out "$OUT/model" \
  --time-budget "$BUDGET" --export-every 1000 --log "$OUT/train_log.jsonl" "$@"
python3 tools/demo/check_transformers.py "$OUT/model" --samples .demo-data/L1024.bin.xz --out "$OUT/hf_check.json" \
  || echo "transformers check failed"
