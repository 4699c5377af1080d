#!/usr/bin/env python3
"""PyTorch eager baseline for `npm run bench`: Qwen3 on CPU, the same checkpoint, the same prompts.

Reads the safetensors file with numpy (no extra package), runs transformers' Qwen3 math in plain torch
ops (float32, eager, 2 threads by default) and prints one JSON object:
  {"torch": "...", "threads": 2, "prefill": {"64": [tok/s...], "512": [...]}, "decode": [tok/s...]}

With --export-onnx FILE it instead writes the same model as one ONNX graph with a KV cache (float32 weights,
external data next to FILE), for the ONNX Runtime peer (bench/ort.ts): inputs input_ids [1, s] and
past_key_i / past_value_i [1, kv, past, d] (past may be 0), outputs logits [1, 1, vocab] (the last position)
and present_key_i / present_value_i.

Needs python3 with torch and numpy (Debian: apt-get install python3-torch python3-numpy
libopenblas0-pthread). Never needed by `npm test`.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F  # nn.Linear's op, as transformers runs it


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        raw = data[b:end]
        if e["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif e["dtype"] == "F16":
            arr = np.frombuffer(raw, dtype=np.float16).astype(np.float32)
        elif e["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype=np.float32)
        else:
            raise SystemExit(f"unsupported dtype {e['dtype']} for {name}")
        out[name] = torch.from_numpy(arr.copy()).reshape(e["shape"])
    return out


def load(dir_):
    cfg = json.load(open(os.path.join(dir_, "config.json")))
    index = os.path.join(dir_, "model.safetensors.index.json")
    if os.path.exists(index):
        w = {}
        for shard in sorted(set(json.load(open(index))["weight_map"].values())):
            w.update(read_safetensors(os.path.join(dir_, shard)))
    else:
        w = read_safetensors(os.path.join(dir_, "model.safetensors"))
    return cfg, w


class Qwen3:
    """transformers' modeling_qwen3.py in plain torch ops (eager attention)."""

    def __init__(self, cfg, w):
        self.c = cfg
        self.w = w
        self.d = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        self.nh, self.nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.eps = cfg["rms_norm_eps"]
        self.inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, self.d, 2, dtype=torch.float32) / self.d))
        self.lm_head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]

    def norm(self, x, weight):
        var = x.pow(2).mean(-1, keepdim=True)
        return weight * (x * torch.rsqrt(var + self.eps))

    def repeat_kv(self, x):
        # transformers' repeat_kv: expand + reshape
        b, kv, t, d = x.shape
        rep = self.nh // self.nkv
        return x[:, :, None].expand(b, kv, rep, t, d).reshape(b, kv * rep, t, d)

    @staticmethod
    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    def forward(self, ids, cache, past):
        w, d = self.w, self.d
        b, s = ids.shape
        h = w["model.embed_tokens.weight"][ids]
        pos = torch.arange(past, past + s, dtype=torch.float32)
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        mask = None
        if s > 1:
            mask = torch.full((s, past + s), float("-inf")).triu(past + 1)
        for i in range(self.c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            x = self.norm(h, w[p + "input_layernorm.weight"])
            q = F.linear(x, w[p + "self_attn.q_proj.weight"]).view(b, s, self.nh, d)
            k = F.linear(x, w[p + "self_attn.k_proj.weight"]).view(b, s, self.nkv, d)
            v = F.linear(x, w[p + "self_attn.v_proj.weight"]).view(b, s, self.nkv, d).transpose(1, 2)
            q = self.norm(q, w[p + "self_attn.q_norm.weight"]).transpose(1, 2)
            k = self.norm(k, w[p + "self_attn.k_norm.weight"]).transpose(1, 2)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            if i in cache:
                k = torch.cat((cache[i][0], k), dim=2)
                v = torch.cat((cache[i][1], v), dim=2)
            cache[i] = (k, v)
            k, v = self.repeat_kv(k), self.repeat_kv(v)
            att = (q @ k.transpose(2, 3)) / math.sqrt(d)
            if mask is not None:
                att = att + mask
            o = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, s, self.nh * d)
            h = h + F.linear(o, w[p + "self_attn.o_proj.weight"])
            x = self.norm(h, w[p + "post_attention_layernorm.weight"])
            g = F.silu(F.linear(x, w[p + "mlp.gate_proj.weight"])) * F.linear(x, w[p + "mlp.up_proj.weight"])
            h = h + F.linear(g, w[p + "mlp.down_proj.weight"])
        h = self.norm(h[:, -1:], w["model.norm.weight"])  # logits of the last position only
        return F.linear(h, self.lm_head)


class Qwen3Graph(torch.nn.Module):
    """The same math, traceable: shapes come from tensors (dynamic s and past), weights are parameters."""

    def __init__(self, cfg, w):
        super().__init__()
        self.m = Qwen3(cfg, w)
        self.n_layers = cfg["num_hidden_layers"]
        self.params = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v, requires_grad=False) for k, v in w.items()})
        self.m.w = {k: self.params[k.replace(".", "__")] for k in w}
        self.m.lm_head = self.m.w["model.embed_tokens.weight" if cfg.get("tie_word_embeddings") else "lm_head.weight"]

    def forward(self, ids, *past):
        m, w, d = self.m, self.m.w, self.m.d
        s = ids.shape[1]
        p0 = past[0].shape[2]
        h = F.embedding(ids, w["model.embed_tokens.weight"])
        pos = torch.arange(s, dtype=torch.float32) + p0
        freqs = pos[:, None] * m.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        # causal: query i (at p0 + i) sees keys j <= p0 + i; float32 min as transformers' eager attention uses
        keep = torch.arange(s + p0)[None, :] <= (torch.arange(s) + p0)[:, None]
        mask = torch.where(keep, torch.tensor(0.0), torch.tensor(torch.finfo(torch.float32).min))
        present = []
        for i in range(self.n_layers):
            p = f"model.layers.{i}."
            x = m.norm(h, w[p + "input_layernorm.weight"])
            q = F.linear(x, w[p + "self_attn.q_proj.weight"]).reshape(1, -1, m.nh, d)
            k = F.linear(x, w[p + "self_attn.k_proj.weight"]).reshape(1, -1, m.nkv, d)
            v = F.linear(x, w[p + "self_attn.v_proj.weight"]).reshape(1, -1, m.nkv, d).transpose(1, 2)
            q = m.norm(q, w[p + "self_attn.q_norm.weight"]).transpose(1, 2)
            k = m.norm(k, w[p + "self_attn.k_norm.weight"]).transpose(1, 2)
            q = q * cos + m.rotate_half(q) * sin
            k = k * cos + m.rotate_half(k) * sin
            k = torch.cat((past[2 * i], k), dim=2)
            v = torch.cat((past[2 * i + 1], v), dim=2)
            present += [k, v]
            rep = m.nh // m.nkv
            kr = k[:, :, None].expand(-1, -1, rep, -1, -1).reshape(1, m.nh, -1, d)
            vr = v[:, :, None].expand(-1, -1, rep, -1, -1).reshape(1, m.nh, -1, d)
            att = (q @ kr.transpose(2, 3)) / math.sqrt(d) + mask
            o = (att.softmax(-1) @ vr).transpose(1, 2).reshape(1, -1, m.nh * d)
            h = h + F.linear(o, w[p + "self_attn.o_proj.weight"])
            x = m.norm(h, w[p + "post_attention_layernorm.weight"])
            g = F.silu(F.linear(x, w[p + "mlp.gate_proj.weight"])) * F.linear(x, w[p + "mlp.up_proj.weight"])
            h = h + F.linear(g, w[p + "mlp.down_proj.weight"])
        h = m.norm(h[:, -1:], w["model.norm.weight"])
        return (F.linear(h, m.lm_head), *present)


def export_onnx(dir_, out):
    """Writes the checkpoint as one ONNX graph with a KV cache (see the module docstring)."""
    cfg, w = load(dir_)
    g = Qwen3Graph(cfg, w).eval()
    n, kv, d = cfg["num_hidden_layers"], g.m.nkv, g.m.d
    past = tuple(torch.zeros(1, kv, 3, d) for _ in range(2 * n))
    names = [f"past_{kind}_{i}" for i in range(n) for kind in ("key", "value")]
    outs = ["logits"] + [nm.replace("past_", "present_") for nm in names]
    axes = {"input_ids": {1: "seq"}, **{nm: {2: "past"} for nm in names}, **{nm: {2: "total"} for nm in outs[1:]}}
    tmp = out + ".tmp"
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(g, (torch.tensor([[1, 2, 3, 4]]), *past), tmp, input_names=["input_ids"] + names,
                          output_names=outs, dynamic_axes=axes, opset_version=14, do_constant_folding=False)
    os.replace(tmp, out)
    json.dump({"onnx": out, "layers": n, "kv_heads": kv, "head_dim": d, "vocab": cfg["vocab_size"]}, sys.stdout)
    print()


def prompt_ids(n, vocab):
    # the same prompt as bench/run.ts's promptIds
    return [(i * 7919 + 13) % min(vocab, 150000) for i in range(n)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--prefill", default="64,512")
    ap.add_argument("--decode-steps", type=int, default=128)
    ap.add_argument("--figure-budget", type=float, default=float("inf"),
                    help="seconds per figure after which no further run starts (at least one run)")
    ap.add_argument("--export-onnx", metavar="FILE", help="write the model as ONNX (with a KV cache) and exit")
    a = ap.parse_args()
    if a.export_onnx:
        return export_onnx(a.dir, a.export_onnx)
    torch.set_num_threads(a.threads)
    cfg, w = load(a.dir)
    m = Qwen3(cfg, w)
    vocab = cfg["vocab_size"]
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "prefill": {}, "decode": []}
    with torch.inference_mode():
        m.forward(torch.tensor([prompt_ids(8, vocab)]), {}, 0)  # warm-up
        for n in [int(x) for x in a.prefill.split(",")]:
            ids = torch.tensor([prompt_ids(n, vocab)])
            runs = []
            start = time.perf_counter()
            while len(runs) < a.repeats:
                t = time.perf_counter()
                m.forward(ids, {}, 0)
                runs.append(n / (time.perf_counter() - t))
                if 2 * time.perf_counter() - t - start > a.figure_budget:  # one more run would pass the budget
                    break
            out["prefill"][str(n)] = runs
        start = time.perf_counter()
        while len(out["decode"]) < a.repeats:
            cache = {}
            logits = m.forward(torch.tensor([prompt_ids(8, vocab)]), cache, 0)
            nxt = int(logits[0, -1].argmax())
            t = time.perf_counter()
            for step in range(a.decode_steps):
                logits = m.forward(torch.tensor([[nxt]]), cache, 8 + step)
                nxt = int(logits[0, -1].argmax())
            out["decode"].append(a.decode_steps / (time.perf_counter() - t))
            if 2 * time.perf_counter() - t - start > a.figure_budget:
                break
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
