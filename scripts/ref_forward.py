#!/usr/bin/env python3
"""ref_forward.py: an independent float64 forward pass of a llama-family GGUF.

This is a witness for the worker's backends: it reads the GGUF file itself
(its own small parser, written from the GGUF format description, not from
the worker's code), computes the decoder's math in Python floats (IEEE
float64) with the standard library only, and prints JSON with each
position's top-k log-probabilities and checksums of the full logit row.
It is slow (pure Python): meant for micro models of a few hundred
thousand parameters.

The math. d = embedding_length, H = head_count, Hkv = head_count_kv,
hd = d / H (or attention.key_length), r = rope.dimension_count (default hd),
eps = attention.layer_norm_rms_epsilon. A GGUF matrix of dims [n, m] is m
rows of n numbers; "W·x" means the m dot products of its rows with x.

    x_t = token_embd[id_t]                                    (row id_t, length d)
    for each layer l:
        h   = rmsnorm(x_t) ⊙ attn_norm,   rmsnorm(x) = x / sqrt(mean(x²) + eps)
        q_t = Wq·h (+ bq),  k_t = Wk·h (+ bk),  v_t = Wv·h (+ bv)   biases if present
              (phi3: one attn_qkv whose rows are Q, then K, then V)
        q_t, k_t = rope(q_t, t), rope(k_t, t)                 per head, see below
        for each query head j (its key/value head is g = j // (H / Hkv)):
            s_u = q_t[j]·k_u[g] / sqrt(hd)   for the visible positions u:
                  u <= t (causal), and t - u < W when the model has a sliding
                  window W (attention.sliding_window): W keys, itself included
            a_t[j] = Σ_u softmax(s)_u v_u[g]
        x_t = x_t + Wo·a_t
        h   = rmsnorm(x_t) ⊙ ffn_norm
        x_t = x_t + Wdown·(silu(Wgate·h) ⊙ (Wup·h)),   silu(z) = z / (1 + e^-z)
              (phi3: one ffn_up whose first half of rows is gate, second half up)
    logits_t = Wout·(rmsnorm(x_t) ⊙ output_norm)   Wout = output.weight, else token_embd

RoPE rotates pairs (a, b) of a head's first r elements by the angle
θ_i = (t / scale) · base^(-2i/r) / f_i, i = 0 .. r/2-1, where base =
rope.freq_base (10000), scale = rope.scaling.factor when rope.scaling.type
is "linear" (else 1), f_i = rope_freqs.weight[i] when present (else 1):

    (a, b) -> (a cos θ_i - b sin θ_i,  a sin θ_i + b cos θ_i)

with the pair chosen by the architecture's convention in GGUF files:
    llama        "normal" (interleaved): a = x[2i],  b = x[2i+1]
    qwen2, phi3  "neox" (halves):        a = x[i],   b = x[i + r/2]
(llama.cpp's converter permutes Llama's Q and K rows so the interleaved form
applies; Qwen2 and Phi-3 are written unpermuted and use the half split.)

Usage:
    python3 scripts/ref_forward.py --model M.gguf --ids 1,2,3 [--top-k 5]
        [--probes 4] [--no-sliding-window] [--all-logits]

Output (one JSON object): model file name, size and sha256, arch, rope,
sliding_window (the one applied; 0 = none), ids, and for each position i
(the distribution of the token after ids[:i+1]): top (k ids with logprob,
best first, ties broken by the lower id), lse (log Σ exp logits), mean and
rms of the logits, and probe (logprobs at a few fixed ids spread over the
vocabulary). --all-logits adds every logit.
"""

import argparse
import hashlib
import json
import math
import os
import struct
import sys
from array import array
from operator import mul

# ---------------------------------------------------------------------------
# GGUF reader (versions 2 and 3, little-endian).
#
#   header:  "GGUF" | u32 version | u64 n_tensors | u64 n_kv
#   kv:      string key | u32 value type | value
#   string:  u64 length | bytes (UTF-8)
#   array:   u32 element type | u64 count | elements
#   tensor:  string name | u32 n_dims | u64 dims[n_dims] | u32 ggml type | u64 offset
#   data:    starts at the first multiple of general.alignment (32) after the
#            tensor infos; each tensor at data start + its offset.
# ---------------------------------------------------------------------------

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
           7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_GGML_F32, _GGML_F16, _GGML_BF16 = 0, 1, 30


class Reader:
    def __init__(self, buf):
        self.buf, self.off = buf, 0

    def unpack(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.off)[0]
        self.off += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.unpack("<Q")
        s = self.buf[self.off:self.off + n]
        if len(s) != n:
            raise ValueError("truncated string at offset %d" % self.off)
        self.off += n
        return s.decode("utf-8", errors="replace")

    def value(self, vt):
        if vt in _SCALAR:
            return self.unpack(_SCALAR[vt])
        if vt == _STRING:
            return self.string()
        if vt == _ARRAY:
            et, n = self.unpack("<I"), self.unpack("<Q")
            return [self.value(et) for _ in range(n)]
        raise ValueError("unknown metadata value type %d at offset %d" % (vt, self.off))


class GGUF:
    """Metadata (dict) and tensors (name -> (ggml type, dims, byte offset))."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.buf = f.read()
        r = Reader(self.buf)
        if self.buf[:4] != b"GGUF":
            raise ValueError("%s: not a GGUF file (magic %r)" % (path, self.buf[:4]))
        r.off = 4
        version = r.unpack("<I")
        if version not in (2, 3):
            raise ValueError("%s: GGUF version %d (want 2 or 3)" % (path, version))
        n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
        self.meta = {}
        for _ in range(n_kv):
            key = r.string()
            self.meta[key] = r.value(r.unpack("<I"))
        infos = []
        for _ in range(n_tensors):
            name = r.string()
            dims = [r.unpack("<Q") for _ in range(r.unpack("<I"))]
            infos.append((name, r.unpack("<I"), dims, r.unpack("<Q")))
        align = self.meta.get("general.alignment", 32)
        data = (r.off + align - 1) // align * align
        self.tensors = {n: (t, dims, data + off) for n, t, dims, off in infos}

    def has(self, name):
        return name in self.tensors

    def floats(self, name):
        """All elements of a tensor as Python floats, in file order."""
        typ, dims, off = self.tensors[name]
        n = math.prod(dims)
        if typ == _GGML_F32:
            a = array("f")
            a.frombytes(self.buf[off:off + 4 * n])
            if sys.byteorder != "little":
                a.byteswap()
            return list(a)
        if typ == _GGML_F16:
            return list(struct.unpack_from("<%de" % n, self.buf, off))
        if typ == _GGML_BF16:
            # bf16 is the top half of a float32.
            hs = struct.unpack_from("<%dH" % n, self.buf, off)
            return list(struct.unpack("<%df" % n, struct.pack("<%dI" % n, *(h << 16 for h in hs))))
        raise ValueError("tensor %s has ggml type %d: only F32, F16 and BF16 are read" % (name, typ))

    def matrix(self, name):
        """A 2-D tensor of dims [n, m] as m rows of n floats."""
        _, dims, _ = self.tensors[name]
        if len(dims) != 2:
            raise ValueError("tensor %s has dims %s, want 2" % (name, dims))
        n, m = dims
        x = self.floats(name)
        return [x[i * n:(i + 1) * n] for i in range(m)]


# ---------------------------------------------------------------------------
# The decoder.
# ---------------------------------------------------------------------------

ROPE_BY_ARCH = {"llama": "normal", "qwen2": "neox", "phi3": "neox"}


def matvec(w, x):
    return [sum(map(mul, row, x)) for row in w]


def add(a, b):
    return [u + v for u, v in zip(a, b)]


def rmsnorm(x, weight, eps):
    s = 1.0 / math.sqrt(sum(v * v for v in x) / len(x) + eps)
    return [v * s * w for v, w in zip(x, weight)]


def silu(z):
    # z / (1 + e^-z), written to avoid overflow for large negative z.
    if z >= 0:
        return z / (1.0 + math.exp(-z))
    e = math.exp(z)
    return z * e / (1.0 + e)


class Model:
    def __init__(self, g, sliding_window=True):
        self.g = g
        arch = g.meta.get("general.architecture")
        if arch not in ROPE_BY_ARCH:
            raise ValueError("architecture %r not handled (want one of %s)" % (arch, sorted(ROPE_BY_ARCH)))
        self.arch, self.rope = arch, ROPE_BY_ARCH[arch]

        def hp(key, default=None):
            v = g.meta.get(arch + "." + key, default)
            if v is None:
                raise ValueError("missing metadata %s.%s" % (arch, key))
            return v

        self.n_layer = hp("block_count")
        self.d = hp("embedding_length")
        self.n_head = hp("attention.head_count")
        self.n_head_kv = hp("attention.head_count_kv", self.n_head)
        self.hd = hp("attention.key_length", self.d // self.n_head)
        self.rope_dim = hp("rope.dimension_count", self.hd)
        self.eps = hp("attention.layer_norm_rms_epsilon", 1e-5)
        self.window = hp("attention.sliding_window", 0) if sliding_window else 0
        base = hp("rope.freq_base", 10000.0)
        scale = 1.0
        stype = g.meta.get(arch + ".rope.scaling.type", "none")
        if stype == "linear":
            scale = hp("rope.scaling.factor", 1.0) or 1.0
        elif stype not in ("none", ""):
            raise ValueError("rope scaling %r not handled" % stype)
        if g.has("rope_factors_long.weight"):
            raise ValueError("LongRoPE (rope_factors_long) not handled")
        half = self.rope_dim // 2
        factors = g.floats("rope_freqs.weight") if g.has("rope_freqs.weight") else [1.0] * half
        # θ_i(t) = t · inv_freq[i]
        self.inv_freq = [base ** (-2.0 * i / self.rope_dim) / factors[i] / scale for i in range(half)]

        self.embd = g.matrix("token_embd.weight")
        self.vocab = len(self.embd)
        self.out_norm = g.floats("output_norm.weight")
        self.out = g.matrix("output.weight") if g.has("output.weight") else self.embd
        qd, kvd = self.n_head * self.hd, self.n_head_kv * self.hd
        self.layers = []
        for i in range(self.n_layer):
            p = "blk.%d." % i
            L = {"attn_norm": g.floats(p + "attn_norm.weight"),
                 "ffn_norm": g.floats(p + "ffn_norm.weight"),
                 "o": g.matrix(p + "attn_output.weight"),
                 "down": g.matrix(p + "ffn_down.weight")}
            if g.has(p + "attn_qkv.weight"):
                qkv = g.matrix(p + "attn_qkv.weight")
                L["q"], L["k"], L["v"] = qkv[:qd], qkv[qd:qd + kvd], qkv[qd + kvd:qd + 2 * kvd]
            else:
                L["q"], L["k"], L["v"] = (g.matrix(p + "attn_%s.weight" % n) for n in "qkv")
            for n in "qkv":
                name = p + "attn_%s.bias" % n
                L["b" + n] = g.floats(name) if g.has(name) else None
            if g.has(p + "ffn_gate.weight"):
                L["gate"], L["up"] = g.matrix(p + "ffn_gate.weight"), g.matrix(p + "ffn_up.weight")
            else:
                up = g.matrix(p + "ffn_up.weight")
                f = len(up) // 2
                L["gate"], L["up"] = up[:f], up[f:]
            self.layers.append(L)

    def rotate(self, x, heads, t):
        """RoPE of the vector x (heads × hd) at position t, in place."""
        half = self.rope_dim // 2
        for i in range(half):
            th = t * self.inv_freq[i]
            c, s = math.cos(th), math.sin(th)
            for h in range(heads):
                base = h * self.hd
                if self.rope == "normal":
                    ia, ib = base + 2 * i, base + 2 * i + 1
                else:
                    ia, ib = base + i, base + i + half
                a, b = x[ia], x[ib]
                x[ia] = a * c - b * s
                x[ib] = a * s + b * c

    def forward(self, ids):
        """Logits (lists of floats) for every position of ids."""
        hd, group = self.hd, self.n_head // self.n_head_kv
        xs = [list(self.embd[i]) for i in ids]
        for L in self.layers:
            qs, ks, vs = [], [], []
            for t, x in enumerate(xs):
                h = rmsnorm(x, L["attn_norm"], self.eps)
                q, k, v = matvec(L["q"], h), matvec(L["k"], h), matvec(L["v"], h)
                if L["bq"] is not None:
                    q, k, v = add(q, L["bq"]), add(k, L["bk"]), add(v, L["bv"])
                self.rotate(q, self.n_head, t)
                self.rotate(k, self.n_head_kv, t)
                qs.append(q)
                ks.append(k)
                vs.append(v)
            for t in range(len(xs)):
                lo = max(0, t - self.window + 1) if self.window > 0 else 0
                a = []
                for j in range(self.n_head):
                    g = j // group
                    q = qs[t][j * hd:(j + 1) * hd]
                    s = [sum(map(mul, q, ks[u][g * hd:(g + 1) * hd])) / math.sqrt(hd) for u in range(lo, t + 1)]
                    m = max(s)
                    e = [math.exp(v - m) for v in s]
                    z = sum(e)
                    out = [0.0] * hd
                    for w, u in zip(e, range(lo, t + 1)):
                        vv = vs[u][g * hd:(g + 1) * hd]
                        for i in range(hd):
                            out[i] += w / z * vv[i]
                    a.extend(out)
                xs[t] = add(xs[t], matvec(L["o"], a))
            for t, x in enumerate(xs):
                h = rmsnorm(x, L["ffn_norm"], self.eps)
                gu = [silu(gv) * uv for gv, uv in zip(matvec(L["gate"], h), matvec(L["up"], h))]
                xs[t] = add(x, matvec(L["down"], gu))
        return [matvec(self.out, rmsnorm(x, self.out_norm, self.eps)) for x in xs]


# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------

def summarize(logits, top_k, probes):
    m = max(logits)
    lse = m + math.log(sum(math.exp(v - m) for v in logits))
    order = sorted(range(len(logits)), key=lambda i: (-logits[i], i))
    n = len(logits)
    return {
        "top": [{"id": i, "logprob": round(logits[i] - lse, 7)} for i in order[:top_k]],
        "lse": round(lse, 7),
        "mean": round(sum(logits) / n, 7),
        "rms": round(math.sqrt(sum(v * v for v in logits) / n), 7),
        "probe": [{"id": i, "logprob": round(logits[i] - lse, 7)} for i in probes],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="GGUF file (F32/F16/BF16 weights)")
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--probes", type=int, default=4, help="logprobs at this many fixed ids spread over the vocabulary")
    ap.add_argument("--no-sliding-window", action="store_true", help="ignore <arch>.attention.sliding_window")
    ap.add_argument("--all-logits", action="store_true", help="also print every logit")
    args = ap.parse_args()

    ids = [int(s) for s in args.ids.split(",") if s.strip()]
    g = GGUF(args.model)
    model = Model(g, sliding_window=not args.no_sliding_window)
    for i in ids:
        if not 0 <= i < model.vocab:
            sys.exit("token id %d out of range [0, %d)" % (i, model.vocab))
    probes = [k * model.vocab // args.probes for k in range(args.probes)] if args.probes > 0 else []
    rows = model.forward(ids)
    out = {
        "generator": "scripts/ref_forward.py (pure-Python float64)",
        "model": os.path.basename(args.model),
        "model_bytes": len(g.buf),
        "model_sha256": hashlib.sha256(g.buf).hexdigest(),
        "arch": model.arch,
        "rope": model.rope,
        "sliding_window": model.window,
        "vocab_size": model.vocab,
        "ids": ids,
        "positions": [],
    }
    for i, row in enumerate(rows):
        p = {"i": i}
        p.update(summarize(row, args.top_k, probes))
        if args.all_logits:
            p["logits"] = row
        out["positions"].append(p)
    # One line per position keeps the file small and its diffs readable.
    positions = out.pop("positions")
    head = "".join(' %s: %s,\n' % (json.dumps(k), json.dumps(v, separators=(",", ":"))) for k, v in out.items())
    lines = ",\n  ".join(json.dumps(p, separators=(",", ":")) for p in positions)
    sys.stdout.write('{\n' + head + ' "positions": [\n  ' + lines + "\n ]\n}\n")


if __name__ == "__main__":
    main()
