#!/usr/bin/env bash
# Builds the demo tokenizer: a corpus of the task prompts the demo model is
# trained and evaluated on (every task and language of the training mix, made by
# `longquant tasks generate` with a throwaway byte-level tokenizer), then BPE.
# Usage: tools/demo/make_tokenizer.sh OUT_DIR
# Needs build/longquant and build/lq-traindata (cmake --build build) and python3-regex.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:?usage: make_tokenizer.sh OUT_DIR}"
LQ=build/longquant
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
$LQ synth --like tiny-llama --layers 1 --out "$WORK/bytes" --seed 1 >/dev/null
gen() {  # suite task lang
  $LQ tasks generate --model "$WORK/bytes" --suite "$1" --task "$2" --lang "$3" --length 6000 --n 8 \
    --seed 777 --out "$WORK/$1-$2-$3.jsonl" >/dev/null
}
for t in niah_single_1 niah_single_2 niah_multikey_1 niah_multivalue niah_multiquery; do gen ruler $t en; done
for l in en de ru zh ja pl; do
  for t in niah_single niah_multikey niah_multivalue niah_multiquery niah_none; do gen oneruler $t $l; done
done
build/lq-traindata --print-words "$WORK/words.txt"
python3 - "$WORK" > "$WORK/corpus.txt" <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/*.jsonl")):
    for line in open(f, encoding="utf-8"):
        e = json.loads(line)
        print(e["input"] + e["answer_prefix"] + " " + ", ".join(e["outputs"]))
# every key word, as it appears in RULER keys ("word-word") and OneRuler needles
for w in open(sys.argv[1] + "/words.txt", encoding="utf-8"):
    print(f' {w.strip()}-{w.strip()} "{w.strip()}" «{w.strip()}» “{w.strip()}”')
# the chat template's fixed text
print("system\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nuser\n\nassistant\n\n")
PY
mkdir -p "$OUT"
python3 tools/demo/train_tokenizer.py "$WORK/corpus.txt" --vocab "${VOCAB:-2048}" --out "$OUT/tokenizer.json"
# tokenizer_config.json: Llama-3.1's chat format (what longquant's llama3 renderer
# and the official template render for system/user/assistant messages, without
# tools), so transformers' apply_chat_template gives the same prompt.
python3 - "$OUT" <<'PY'
import json, sys
template = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}"
    "{{- 'Today Date: 26 Jul 2024\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")
cfg = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<|pad|>",
       "model_max_length": 131072, "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
       "chat_template": template}
json.dump(cfg, open(sys.argv[1] + "/tokenizer_config.json", "w"), indent=1)
PY
echo "wrote $OUT/tokenizer.json and $OUT/tokenizer_config.json"
