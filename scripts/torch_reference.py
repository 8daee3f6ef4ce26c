#!/usr/bin/env python3
"""Independent reference for worker-orcd on a GPU machine (PyTorch + transformers).

Reads a GGUF model with F16/F32 weights (as `go run ./internal/testmodel/cmd/synth
--type F16` writes), exports it to a Hugging Face folder (config.json +
model.safetensors), loads it with transformers in float32, and compares:

  1. logits for a prompt: ||worker - torch|| / ||torch|| < 1e-2 at every position
     (worker logits from `worker-orcd score --logits-out`, row i = position i);
  2. greedy continuation: the worker's ids (from `worker-orcd generate --json`)
     equal transformers' up to the first step whose top-1/top-2 gap is below
     0.05 nats (random weights give near-flat distributions).

Usage:
  torch_reference.py export  --gguf M.gguf --out DIR [--no-window]
  torch_reference.py compare --hf DIR --ids 1,2,3 --worker-logits L.npy \
                             --worker-generate G.json --steps 16 [--from P]

A Phi-3 GGUF's phi3.attention.sliding_window is exported as the config's
sliding_window (transformers then masks keys W or more positions back);
--no-window leaves it out (a control). --from P also reports the worst
position at or after P (past the window).
Exit status 0 when both checks pass.
"""
import argparse, json, math, os, struct, sys

import numpy as np

GGUF_TYPES = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool",
              8: "str", 9: "arr", 10: "u64", 11: "i64", 12: "f64"}
SCALAR = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i", "f32": "<f",
          "bool": "<?", "u64": "<Q", "i64": "<q", "f64": "<d"}


def read_gguf(path):
    """Returns (metadata dict, {name: numpy array shaped [ne1, ne0]}) for F32/F16 tensors."""
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    off = 0

    def take(n):
        nonlocal off
        b = bytes(buf[off:off + n])
        off += n
        return b

    def scalar(t):
        fmt = SCALAR[t]
        return struct.unpack(fmt, take(struct.calcsize(fmt)))[0]

    def string():
        n = struct.unpack("<Q", take(8))[0]
        return take(n).decode("utf-8", "replace")

    def value(t):
        t = GGUF_TYPES[t]
        if t == "str":
            return string()
        if t == "arr":
            et, n = struct.unpack("<IQ", take(12))
            return [value(et) for _ in range(n)]
        return scalar(t)

    assert take(4) == b"GGUF", "not a GGUF file"
    version, n_tensors, n_kv = struct.unpack("<IQQ", take(20))
    meta = {}
    for _ in range(n_kv):
        k = string()
        (t,) = struct.unpack("<I", take(4))
        meta[k] = value(t)
    infos = []
    for _ in range(n_tensors):
        name = string()
        (nd,) = struct.unpack("<I", take(4))
        dims = struct.unpack("<%dQ" % nd, take(8 * nd))
        typ, toff = struct.unpack("<IQ", take(12))
        infos.append((name, dims, typ, toff))
    align = meta.get("general.alignment", 32)
    data = (off + align - 1) // align * align
    tensors = {}
    for name, dims, typ, toff in infos:
        n = int(np.prod(dims))
        if typ == 0:
            a = np.frombuffer(buf, dtype="<f4", count=n, offset=data + toff)
        elif typ == 1:
            a = np.frombuffer(buf, dtype="<f2", count=n, offset=data + toff)
        else:
            sys.exit(f"tensor {name} has ggml type {typ}: this script reads F32/F16 models only (synth --type F16)")
        tensors[name] = a.reshape(tuple(reversed(dims)))
    return meta, tensors


def export(gguf, out, no_window=False):
    import torch
    from safetensors.torch import save_file

    meta, t = read_gguf(gguf)
    arch = meta["general.architecture"]
    g = lambda k, d=None: meta.get(f"{arch}.{k}", d)
    n_layer = g("block_count")
    d = g("embedding_length")
    heads = g("attention.head_count")
    cfg = dict(vocab_size=t["token_embd.weight"].shape[0], hidden_size=d, intermediate_size=g("feed_forward_length"),
               num_hidden_layers=n_layer, num_attention_heads=heads,
               num_key_value_heads=g("attention.head_count_kv", heads), max_position_embeddings=g("context_length"),
               rms_norm_eps=g("attention.layer_norm_rms_epsilon"), rope_theta=g("rope.freq_base", 10000.0),
               tie_word_embeddings="output.weight" not in t, torch_dtype="float32", hidden_act="silu")
    sd = {"model.embed_tokens.weight": t["token_embd.weight"], "model.norm.weight": t["output_norm.weight"]}
    if "output.weight" in t:
        sd["lm_head.weight"] = t["output.weight"]
    for i in range(n_layer):
        p, q = f"blk.{i}.", f"model.layers.{i}."
        sd[q + "input_layernorm.weight"] = t[p + "attn_norm.weight"]
        sd[q + "post_attention_layernorm.weight"] = t[p + "ffn_norm.weight"]
        sd[q + "self_attn.o_proj.weight"] = t[p + "attn_output.weight"]
        sd[q + "mlp.down_proj.weight"] = t[p + "ffn_down.weight"]
        if arch == "phi3":
            sd[q + "self_attn.qkv_proj.weight"] = t[p + "attn_qkv.weight"]
            sd[q + "mlp.gate_up_proj.weight"] = t[p + "ffn_up.weight"]
        else:
            for a, b in (("q", "q"), ("k", "k"), ("v", "v")):
                sd[q + f"self_attn.{b}_proj.weight"] = t[p + f"attn_{a}.weight"]
                if p + f"attn_{a}.bias" in t:
                    sd[q + f"self_attn.{b}_proj.bias"] = t[p + f"attn_{a}.bias"]
            sd[q + "mlp.gate_proj.weight"] = t[p + "ffn_gate.weight"]
            sd[q + "mlp.up_proj.weight"] = t[p + "ffn_up.weight"]
    if arch == "qwen2":
        cfg.update(architectures=["Qwen2ForCausalLM"], model_type="qwen2", use_sliding_window=False)
    elif arch == "phi3":
        window = None if no_window else g("attention.sliding_window")
        cfg.update(architectures=["Phi3ForCausalLM"], model_type="phi3", rope_scaling=None, sliding_window=window,
                   original_max_position_embeddings=g("rope.scaling.original_context_length", g("context_length")),
                   partial_rotary_factor=g("rope.dimension_count", d // heads) / (d // heads), pad_token_id=None)
    elif arch == "llama":
        # GGUF stores Llama's Q and K rows permuted so that its interleaved
        # RoPE (pairs 2i, 2i+1) equals HF's rotate_half (pairs i, i+hd/2) on
        # the original rows: within each head, GGUF row 2j+s is HF row
        # s*hd/2 + j. Undo it, head by head.
        kv_heads = g("attention.head_count_kv", heads)
        for i in range(n_layer):
            for name, nh in (("q_proj", heads), ("k_proj", kv_heads)):
                key = f"model.layers.{i}.self_attn.{name}.weight"
                w = sd[key]
                sd[key] = w.reshape(nh, w.shape[0] // nh // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
        cfg.update(architectures=["LlamaForCausalLM"], model_type="llama", attention_bias=False, mlp_bias=False,
                   rope_scaling=None, head_dim=d // heads)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    save_file({k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in sd.items()},
              os.path.join(out, "model.safetensors"))
    print(f"exported {arch}: {len(sd)} tensors to {out}")


def compare(hf, ids, worker_logits, worker_generate, steps, start=None):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    print(f"transformers {transformers.__version__}, sliding_window {json.load(open(os.path.join(hf, 'config.json'))).get('sliding_window')}")

    model = AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float32).cuda().eval()
    x = torch.tensor([ids], device="cuda")
    with torch.no_grad():
        ref = model(x).logits[0].double().cpu().numpy()
    ours = np.load(worker_logits).astype(np.float64)
    n = min(len(ours), len(ref))
    rel = [np.linalg.norm(ours[i] - ref[i]) / np.linalg.norm(ref[i]) for i in range(n)]
    worst = max(rel)
    ok = worst < 1e-2
    print(f"logits: {n} positions, worst ||Δ||/||ref|| = {worst:.3e} (bound 1e-2) -> {'ok' if ok else 'FAIL'}")
    if start is not None and start < n:
        late = max(rel[start:])
        print(f"logits at positions {start}…{n - 1}: worst ||Δ||/||ref|| = {late:.3e}, median {float(np.median(rel[start:])):.3e}"
              f" (positions before {start}: median {float(np.median(rel[:start])):.3e})")
    # Greedy continuation with transformers, one token at a time, recording gaps.
    got = [t["id"] for t in json.load(open(worker_generate))["tokens"]]
    seq = list(ids)
    agree = 0
    with torch.no_grad():
        for k in range(steps):
            lp = torch.log_softmax(model(torch.tensor([seq], device="cuda")).logits[0, -1].double(), -1)
            top = torch.topk(lp, 2)
            best, gap = int(top.indices[0]), float(top.values[0] - top.values[1])
            if k >= len(got):
                break
            if got[k] != best:
                if gap < 0.05:
                    print(f"greedy: step {k} differs at a near-tie (gap {gap:.4f} nats); rest not compared")
                    break
                print(f"greedy: step {k}: worker {got[k]}, transformers {best} (gap {gap:.4f}) -> FAIL")
                ok = False
                break
            agree += 1
            seq.append(best)
    print(f"greedy: {agree} of {steps} steps equal before any near-tie")
    return ok


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--gguf", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--no-window", action="store_true", help="leave Phi-3's sliding window out (a control)")
    c = sub.add_parser("compare")
    c.add_argument("--hf", required=True)
    c.add_argument("--ids", required=True)
    c.add_argument("--worker-logits", required=True)
    c.add_argument("--worker-generate", required=True)
    c.add_argument("--steps", type=int, default=16)
    c.add_argument("--from", dest="start", type=int, default=None, help="also report positions from here on")
    a = ap.parse_args()
    if a.cmd == "export":
        export(a.gguf, a.out, a.no_window)
        return 0
    ok = compare(a.hf, [int(s) for s in a.ids.split(",")], a.worker_logits, a.worker_generate, a.steps, a.start)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
