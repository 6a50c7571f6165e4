#!/usr/bin/env python3
"""Train longquant's demo model: a small Llama that retrieves needles from long contexts.

Reads the token files written by `lq-traindata` (tools/demo/traindata.cc: the
exact prompts `longquant eval` shows a model, with their answers), trains a
Llama-architecture decoder from scratch with a curriculum over lengths, and
writes a Hugging Face directory (config.json, model.safetensors in bf16,
generation_config.json; the tokenizer files are copied from --tokenizer).

Model: LlamaForCausalLM semantics exactly as transformers computes them (RMSNorm
in fp32, rotate-half RoPE, grouped-query attention, SwiGLU, untied LM head), so
the exported weights mean the same thing in longquant and in transformers.

Loss: mean cross-entropy over answer tokens (the target after the prompt, ending
with <|eot_id|>) plus --text-weight x mean cross-entropy over prompt tokens (the
haystack's repetition teaches induction: copy what followed the same tokens).

Curriculum (fractions of --steps): the length buckets in PHASES, shortest first;
an induction warm-up (random token segments repeated, loss on the repeats) is
mixed into the first phase.

Runs on CUDA (bf16 autocast, fused attention) or CPU (fp32; for testing the
code path). Deterministic for a seed on a given device and library version;
--time-budget S measures the step rate over the first steps and fixes --steps
from it (the chosen number is logged, so a run can be repeated with --steps).

Usage (see docs/demo-model.md for the full recipe):
  train.py --data DIR --tokenizer DIR --out DIR [--steps N | --time-budget S]
"""
import argparse
import json
import lzma
import math
import os
import random
import shutil
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---- data -----------------------------------------------------------------


def read_records(path):
    """lq-traindata file (.bin or .bin.xz) -> list of (prompt_ids, target_ids) as np.int64 arrays."""
    raw = lzma.open(path).read() if path.endswith(".xz") else open(path, "rb").read()
    if raw[:8] != b"LQTD0001":
        sys.exit(f"{path}: not an lq-traindata file (magic {raw[:8]!r})")
    out, p = [], 8
    while p < len(raw):
        if p + 12 > len(raw):
            sys.exit(f"{path}: truncated record header at byte {p}")
        np_, nt, _task, _lang = struct.unpack_from("<IIHH", raw, p)
        p += 12
        n = np_ + nt
        if p + 2 * n > len(raw):
            sys.exit(f"{path}: truncated record at byte {p}")
        ids = np.frombuffer(raw, dtype="<u2", count=n, offset=p).astype(np.int64)
        p += 2 * n
        out.append((ids[:np_], ids[np_:]))
    return out


class Bucket:
    """Examples of one target length, served as padded batches in a seeded order."""

    def __init__(self, length, records, seed):
        self.length = length
        self.records = records
        self.rng = random.Random(seed)
        self.order, self.pos, self.epochs = [], 0, 0

    def batch(self, n, pad_id):
        ids = np.full((n, self.length), pad_id, dtype=np.int64)
        w = np.zeros((n, self.length), dtype=np.float32)  # 1 = answer, 2 = prompt text, 0 = none
        for b in range(n):
            if self.pos >= len(self.order):
                self.order = list(range(len(self.records)))
                self.rng.shuffle(self.order)
                self.pos = 0
                self.epochs += 1
            p, t = self.records[self.order[self.pos]]
            self.pos += 1
            seq = np.concatenate([p, t])[: self.length]
            ids[b, : len(seq)] = seq
            # label at position i is seq[i+1]: mark the position whose *next* token is answer / text
            w[b, len(p) - 1 : len(seq) - 1] = 1.0
            w[b, : len(p) - 1] = 2.0
        return torch.from_numpy(ids), torch.from_numpy(w)


def induction_batch(n, length, vocab_lo, vocab_hi, rng):
    """Random segments repeated: the repeats are predictable only by copying."""
    ids = np.zeros((n, length), dtype=np.int64)
    w = np.zeros((n, length), dtype=np.float32)
    for b in range(n):
        seg = rng.randint(16, 96)
        base = [rng.randrange(vocab_lo, vocab_hi) for _ in range(seg)]
        seq = (base * (length // seg + 1))[:length]
        ids[b] = seq
        w[b, seg - 1 : length - 1] = 1.0
    return torch.from_numpy(ids), torch.from_numpy(w)


# ---- model ----------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):  # transformers' LlamaRMSNorm, step for step
        dt = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dt)


def rope_tables(head_dim, theta, n, device):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    f = torch.outer(torch.arange(n, dtype=torch.float32, device=device), inv)
    emb = torch.cat([f, f], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, h, kv, hd = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        self.h, self.kv, self.hd = h, kv, hd
        self.q_proj = nn.Linear(d, h * hd, bias=False)
        self.k_proj = nn.Linear(d, kv * hd, bias=False)
        self.v_proj = nn.Linear(d, kv * hd, bias=False)
        self.o_proj = nn.Linear(h * hd, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.h, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.kv, self.hd).transpose(1, 2)
        cos, sin = cos[:T].to(q.dtype), sin[:T].to(q.dtype)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.h // self.kv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        if hasattr(F, "scaled_dot_product_attention"):
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # torch < 2.0 (Debian's 1.13): plain causal softmax attention
            s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            o = s.masked_fill(mask, float("-inf")).softmax(-1) @ v
        return self.o_proj(o.transpose(1, 2).reshape(B, T, self.h * self.hd))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.self_attn = Attention(c)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class Llama(nn.Module):
    def __init__(self, c, device):
        super().__init__()
        self.c = c
        self.model = Body(c)
        self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        cos, sin = rope_tables(c["head_dim"], c["rope_theta"], c["max_position_embeddings"], device)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c["num_hidden_layers"]) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, ids):
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, self.cos, self.sin)
        return self.lm_head(self.model.norm(x))


# ---- export ---------------------------------------------------------------


def save_safetensors(path, tensors):
    """Minimal safetensors writer (bf16 / f32 tensors, sorted names, 8-byte aligned header)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        if t.dtype == torch.bfloat16:
            data, dt = t.view(torch.int16).numpy().tobytes(), "BF16"
        else:
            data, dt = t.float().numpy().tobytes(), "F32"
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def hf_config(c, tok):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": c["hidden_size"], "intermediate_size": c["intermediate_size"],
        "num_hidden_layers": c["num_hidden_layers"], "num_attention_heads": c["num_attention_heads"],
        "num_key_value_heads": c["num_key_value_heads"], "head_dim": c["head_dim"],
        "hidden_act": "silu", "rms_norm_eps": c["rms_norm_eps"], "rope_theta": c["rope_theta"],
        "rope_scaling": None, "max_position_embeddings": c["max_position_embeddings"],
        "vocab_size": c["vocab_size"], "tie_word_embeddings": False, "attention_bias": False,
        "mlp_bias": False, "attention_dropout": 0.0, "initializer_range": 0.02,
        "bos_token_id": tok["bos"], "eos_token_id": tok["eot"], "pad_token_id": tok["pad"],
        "torch_dtype": "bfloat16", "use_cache": True,
    }


def export(model, out, tok_dir, tok, extra_meta):
    os.makedirs(out, exist_ok=True)
    sd = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items() if k not in ("cos", "sin")}
    save_safetensors(os.path.join(out, "model.safetensors"), sd)
    cfg = hf_config(model.c, tok)
    cfg["longquant_demo"] = extra_meta
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
    json.dump({"bos_token_id": tok["bos"], "eos_token_id": [tok["eot"], tok["eos"]], "do_sample": False},
              open(os.path.join(out, "generation_config.json"), "w"), indent=1)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        if os.path.abspath(tok_dir) != os.path.abspath(out):
            shutil.copy(os.path.join(tok_dir, f), os.path.join(out, f))


# ---- training ---------------------------------------------------------------

# (fraction of steps where the phase starts, {length: weight}). Each step draws one
# length from the phase's weights and fills --batch-tokens with examples of it.
PHASES = [
    (0.00, {512: 1.0}),
    (0.08, {512: 0.6, 1024: 0.4}),
    (0.20, {512: 0.3, 1024: 0.4, 2048: 0.3}),
    (0.40, {512: 0.15, 1024: 0.25, 2048: 0.35, 4096: 0.25}),
    (0.70, {1024: 0.2, 2048: 0.3, 4096: 0.35, 8192: 0.15}),
]


def phase_at(frac, available):
    cur = PHASES[0][1]
    for start, mix in PHASES:
        if frac >= start:
            cur = mix
    mix = {L: w for L, w in cur.items() if L in available}
    if not mix:  # data for this phase is missing: fall back to the longest we have
        mix = {max(available): 1.0}
    return mix


def lr_at(step, steps, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="directory of lq-traindata files named L<length>.bin[.xz]")
    ap.add_argument("--tokenizer", required=True, help="directory with tokenizer.json + tokenizer_config.json")
    ap.add_argument("--out", required=True, help="output model directory")
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--time-budget", type=float, default=0, help="seconds of training (fixes --steps after a probe)")
    ap.add_argument("--batch-tokens", type=int, default=65536)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--text-weight", type=float, default=0.1)
    ap.add_argument("--induction", type=float, default=0.25, help="share of induction warm-up steps in phase 0")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=768)
    ap.add_argument("--rope-theta", type=float, default=100000.0)
    ap.add_argument("--max-pos", type=int, default=16384)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--export-every", type=int, default=0, help="also export every N steps (0: at the end)")
    ap.add_argument("--log", default="", help="JSONL training log (default OUT/train_log.jsonl)")
    ap.add_argument("--init", default="", help="start from this exported model directory's weights")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    random.seed(a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True

    tj = json.load(open(os.path.join(a.tokenizer, "tokenizer.json"), encoding="utf-8"))
    special = {t["content"]: t["id"] for t in tj["added_tokens"]}
    n_bpe = len(tj["model"]["vocab"])
    vocab = max(max(special.values()) + 1, n_bpe)
    tok = {"bos": special["<|begin_of_text|>"], "eos": special["<|end_of_text|>"], "eot": special["<|eot_id|>"],
           "pad": special["<|pad|>"]}

    buckets, held = {}, {}
    for f in sorted(os.listdir(a.data)):
        if f.startswith("L") and (f.endswith(".bin") or f.endswith(".bin.xz")):
            L = int(f[1:].split(".")[0])
            recs = read_records(os.path.join(a.data, f))
            n_held = min(64, len(recs) // 10)
            held[L] = recs[:n_held]
            buckets[L] = Bucket(L, recs[n_held:], a.seed * 1000 + L)
            print(f"data {f}: {len(recs)} examples ({n_held} held out), "
                  f"{sum(len(p) + len(t) for p, t in recs) / 1e6:.1f}M tokens", flush=True)
    if not buckets:
        sys.exit(f"{a.data}: no L<length>.bin[.xz] files")

    c = {"hidden_size": a.hidden, "intermediate_size": a.ffn, "num_hidden_layers": a.layers,
         "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "head_dim": a.hidden // a.heads,
         "rms_norm_eps": 1e-5, "rope_theta": a.rope_theta, "max_position_embeddings": a.max_pos, "vocab_size": vocab}
    model = Llama(c, dev).to(dev)
    if a.init:
        from check_export import load_safetensors
        r = model.load_state_dict({k: v.to(dev) for k, v in
                                   load_safetensors(os.path.join(a.init, "model.safetensors")).items()}, strict=False)
        if r.missing_keys or r.unexpected_keys:
            sys.exit(f"--init {a.init}: weights do not match the model: {r}")
        print(f"initialised from {a.init}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters, {json.dumps(c)}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, **({"fused": True} if cuda else {}))
    log_path = a.log or os.path.join(a.out, "train_log.jsonl")
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    logf = open(log_path, "w")

    def log(rec):
        logf.write(json.dumps(rec) + "\n")
        logf.flush()
        print(json.dumps(rec), flush=True)

    rng = random.Random(a.seed)
    lo_id = 256  # induction tokens: merged BPE ids (any id works; these are real text pieces)

    def step_loss(ids, w):
        ids, w = ids.to(dev, non_blocking=True), w.to(dev, non_blocking=True)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=cuda):
            logits = model(ids[:, :-1])
        logits = logits.float()
        tgt = ids[:, 1:]
        wt = w[:, :-1]
        ce = F.cross_entropy(logits.reshape(-1, vocab), tgt.reshape(-1), reduction="none").view_as(tgt.float())
        ans = (wt == 1.0).float()
        txt = (wt == 2.0).float()
        l_ans = (ce * ans).sum() / ans.sum().clamp(min=1)
        l_txt = (ce * txt).sum() / txt.sum().clamp(min=1)
        with torch.no_grad():
            pred = logits.argmax(-1)
            wrong = ((pred != tgt) & (ans > 0)).any(-1)
            has = ans.sum(-1) > 0
            exact = ((~wrong) & has).float().sum() / has.float().sum().clamp(min=1)
        return l_ans + a.text_weight * l_txt, l_ans, l_txt, exact

    @torch.no_grad()
    def evaluate():
        model.eval()
        res = {}
        for L, recs in sorted(held.items()):
            hits, n = 0, 0
            for i in range(0, len(recs), 8):
                chunk = recs[i : i + 8]
                b = Bucket(L, chunk, 0)
                ids, w = b.batch(len(chunk), tok["pad"])
                _, _, _, ex = step_loss(ids, w)
                hits += ex.item() * len(chunk)
                n += len(chunk)
            res[L] = round(hits / max(1, n), 3)
        model.train()
        return res

    meta = {"seed": a.seed, "batch_tokens": a.batch_tokens, "lr": a.lr, "text_weight": a.text_weight,
            "phases": [[s, {str(k): v for k, v in m.items()}] for s, m in PHASES],
            "device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__}
    steps = a.steps
    if not steps:
        if not a.time_budget:
            sys.exit("give --steps or --time-budget")
        # Probe: seconds per step at each length (forward + backward, no update), then the
        # number of steps whose expected time under PHASES fits the budget.
        per = {}
        for L in sorted(buckets):
            bs = max(1, a.batch_tokens // L)
            for rep in range(3):
                if cuda:
                    torch.cuda.synchronize()
                t = time.time()
                ids, w = buckets[L].batch(bs, tok["pad"])
                loss = step_loss(ids, w)[0]
                loss.backward()
                opt.zero_grad(set_to_none=True)
                if cuda:
                    torch.cuda.synchronize()
                per[L] = time.time() - t
        opt.state.clear()
        expected, grid = 0.0, 1000
        for i in range(grid):
            mix = phase_at(i / grid, buckets.keys())
            tot = sum(mix.values())
            expected += sum(w / tot * per[L] for L, w in mix.items()) / grid
        steps = max(10, int(a.time_budget / (expected * 1.08)))  # 8%: logging, evaluation, export
        meta["probe_seconds_per_step"] = {str(k): round(v, 4) for k, v in per.items()}
        meta["steps_from_time_budget"] = steps
        log({"event": "probe", "seconds_per_step": meta["probe_seconds_per_step"], "steps": steps})
    t0 = time.time()
    step = 0
    tokens = 0
    while step < steps:
        frac = step / steps
        mix = phase_at(frac, buckets.keys())
        L = rng.choices(list(mix), weights=list(mix.values()))[0]
        bs = max(1, a.batch_tokens // L)
        if frac < PHASES[1][0] and rng.random() < a.induction:
            ids, w = induction_batch(bs, L, lo_id, n_bpe, rng)
        else:
            ids, w = buckets[L].batch(bs, tok["pad"])
        lr = lr_at(step, steps, a.lr, a.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, l_ans, l_txt, exact = step_loss(ids, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += ids.numel()
        if step % 25 == 0 or step == 1:
            log({"step": step, "of": steps, "len": L, "lr": round(lr, 6), "loss": round(loss.item(), 4),
                 "answer_loss": round(l_ans.item(), 4), "text_loss": round(l_txt.item(), 4),
                 "exact": round(exact.item(), 3), "grad_norm": round(gn.item(), 3),
                 "tokens_M": round(tokens / 1e6, 2), "sec": round(time.time() - t0, 1)})
        if step % a.eval_every == 0 or step == steps:
            log({"step": step, "heldout_exact": evaluate(), "sec": round(time.time() - t0, 1)})
        if a.export_every and step % a.export_every == 0 and step < steps:
            export(model, a.out, a.tokenizer, tok, dict(meta, steps_done=step, tokens=tokens))
        if a.time_budget and time.time() - t0 > a.time_budget * 1.1:
            log({"event": "stopping early: 1.1x the time budget", "step": step})
            break
    meta.update(steps_done=step, tokens=tokens, seconds=round(time.time() - t0, 1), parameters=n_params)
    export(model, a.out, a.tokenizer, tok, meta)
    log({"event": "done", **meta})


if __name__ == "__main__":
    main()
