#!/usr/bin/env python3
"""Cross-check an exported demo model: the trainer's own PyTorch forward pass on
the exported bf16 weights (computed in fp32) against `longquant logits
--precision fp32` on the same ids. Prints the max |difference| of the last
positions' logits and exits 1 above --tol (default 2e-3: both sides run fp32 on
identical bf16 weights; what remains is summation order, ~1e-5 relative, times
logits of order 10).

Usage: check_export.py MODEL_DIR [--longquant build/longquant] [--ids 1,2,3]
"""
import argparse
import json
import os
import struct
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import Llama  # noqa: E402


def load_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack_from("<Q", raw, 0)
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        b, e = h["data_offsets"]
        buf = raw[base + b : base + e]
        if h["dtype"] == "BF16":
            a = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            t = torch.from_numpy(a.view(np.float32).copy())
        elif h["dtype"] == "F32":
            t = torch.from_numpy(np.frombuffer(buf, dtype="<f4").copy())
        else:
            sys.exit(f"{path}: {name}: unexpected dtype {h['dtype']}")
        out[name] = t.view(h["shape"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--longquant", default="build/longquant")
    ap.add_argument("--ids", default="")
    ap.add_argument("--last", type=int, default=4)
    ap.add_argument("--tol", type=float, default=2e-3)
    a = ap.parse_args()
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    c = {k: cfg[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                             "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta",
                             "max_position_embeddings", "vocab_size")}
    model = Llama(c, torch.device("cpu"))
    missing = model.load_state_dict(load_safetensors(os.path.join(a.model, "model.safetensors")), strict=False)
    if missing.missing_keys or missing.unexpected_keys:
        sys.exit(f"state dict mismatch: {missing}")
    ids = [int(x) for x in a.ids.split(",")] if a.ids else \
        [int(x) for x in np.random.default_rng(0).integers(0, c["vocab_size"] - 8, size=300)]
    with torch.no_grad():
        ref = model(torch.tensor([ids]))[0, -a.last :].numpy()
    out = subprocess.run([a.longquant, "logits", "--model", a.model, "--ids", ",".join(map(str, ids)),
                          "--last", str(a.last), "--precision", "fp32", "--json"],
                         check=True, capture_output=True, text=True).stdout
    got = np.array(json.loads(out)["logits"], dtype=np.float32)
    diff = float(np.abs(got - ref).max())
    scale = float(np.abs(ref).max())
    print(json.dumps({"tokens": len(ids), "last": a.last, "max_abs_diff": diff, "max_abs_logit": scale,
                      "tol": a.tol}))
    sys.exit(0 if diff <= a.tol else 1)


if __name__ == "__main__":
    main()
