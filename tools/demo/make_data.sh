#!/usr/bin/env bash
# Writes the demo model's training data: one lq-traindata file per length bucket,
# xz-compressed (the haystacks repeat, so 1 GB of token ids packs into ~15 MB).
# Usage: tools/demo/make_data.sh TOKENIZER_DIR OUT_DIR [SCALE] [STAGE]
#   SCALE (default 1) multiplies the example counts (0.01 for a quick test).
#   STAGE 1 (default): the first training run's mix; STAGE 2: the second run's,
#   weighted towards the multi-needle tasks that force matching the asked key
#   (stage 1 alone learned "one needle: copy it; several: answer none").
# The mix (weights per task; OneRuler tasks split their weight over 6 languages,
# 3 of them non-Latin) and the counts are the recipe in docs/demo-model.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOK="${1:?usage: make_data.sh TOKENIZER_DIR OUT_DIR [SCALE]}"
OUT="${2:?usage: make_data.sh TOKENIZER_DIR OUT_DIR [SCALE]}"
SCALE="${3:-1}"
STAGE="${4:-1}"
if [ "$STAGE" = 1 ]; then
  TASKS="ruler/niah_single_1:3,ruler/niah_single_2:1,ruler/niah_multikey_1:1,ruler/niah_multivalue:0.5"
  TASKS="$TASKS,oneruler/niah_single:3,oneruler/niah_multikey:1,oneruler/niah_multivalue:0.5,oneruler/niah_none:2"
else
  TASKS="ruler/niah_single_1:1,ruler/niah_multikey_1:2,ruler/niah_multikey_2:2,ruler/niah_multiquery:0.5"
  TASKS="$TASKS,ruler/niah_multivalue:0.5,oneruler/niah_single:1,oneruler/niah_multikey:3"
  TASKS="$TASKS,oneruler/niah_multiquery:0.5,oneruler/niah_multivalue:0.5,oneruler/niah_none:1.5"
fi
LANGS="en,de,ru,zh,ja,pl"
mkdir -p "$OUT"
for spec in 512:80000 1024:80000 2048:60000 4096:35000 8192:12000; do
  L=${spec%%:*}
  N=$(python3 -c "print(max(100, int(${spec##*:} * $SCALE)))")
  # seeds STAGE * 1000 + L: never the evaluation seeds (the study and tests use small seeds)
  build/lq-traindata --model "$TOK" --out "$OUT/L$L.bin" --tasks "$TASKS" --langs "$LANGS" \
    --lengths "$L" --n "$N" --seed $((STAGE * 1000 + L))
  xz -T0 -6 -f "$OUT/L$L.bin"
done
ls -la "$OUT"
