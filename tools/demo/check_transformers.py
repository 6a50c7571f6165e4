#!/usr/bin/env python3
"""Load a demo model directory with Hugging Face transformers and record what it
computes, so longquant can be checked against an independent implementation:

  * tokenizer: for each sample prompt (token ids made by lq-traindata with
    longquant's tokenizer), transformers' decode and re-encode (must give the
    same ids), and apply_chat_template's rendering of a fixed user message;
  * model (fp32): the logits of the last 4 positions of the first sample, and
    the greedy continuation (up to 16 tokens) of every sample.

Writes JSON to --out; tests/compare steps read it (tools/demo/compare_hf.py).
Needs torch, transformers and tokenizers (the device image has them).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import read_records  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--samples", required=True, help="an lq-traindata file")
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32).eval()
    recs = read_records(a.samples)[: a.n]
    res = {"transformers": __import__("transformers").__version__, "samples": []}
    msg = "Where is the needle?\nAnswer briefly."
    res["chat_message"] = msg
    res["chat_rendered"] = tok.apply_chat_template([{"role": "user", "content": msg}], tokenize=False,
                                                   add_generation_prompt=True)
    eos = [model.config.eos_token_id] if isinstance(model.config.eos_token_id, int) else model.config.eos_token_id
    for i, (p, t) in enumerate(recs):
        ids = [int(x) for x in p]
        text = tok.decode(ids, skip_special_tokens=False)
        re_ids = tok.encode(text, add_special_tokens=False)
        with torch.no_grad():
            x = torch.tensor([ids])
            out = model.generate(x, max_new_tokens=16, do_sample=False, eos_token_id=eos,
                                 pad_token_id=model.config.pad_token_id)
            gen = [int(v) for v in out[0, len(ids):]]
            s = {"prompt_ids": ids, "target_ids": [int(v) for v in t], "reencode_equal": re_ids == ids,
                 "greedy_ids": gen, "greedy_text": tok.decode(gen, skip_special_tokens=True)}
            if i == 0:
                s["last_logits"] = model(x).logits[0, -4:].tolist()
        res["samples"].append(s)
        print(f"sample {i}: {len(ids)} tokens, reencode_equal={s['reencode_equal']}, "
              f"greedy={s['greedy_text']!r}, target={tok.decode([int(v) for v in t])!r}", flush=True)
    json.dump(res, open(a.out, "w"))


if __name__ == "__main__":
    main()
