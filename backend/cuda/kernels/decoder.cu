// decoder.cu — every kernel of the llama-family decoder's forward pass.
//
// Data: activations are float32, row-major [T, n] (T = tokens in the batch).
// Weights stay in their GGUF encoding on the device: a matrix is `rows`
// rows of `cols` elements, each row `row_bytes` bytes of blocks (ggml
// layouts; see the deq_* functions). The KV cache is float32 or F16 (the
// _f32/_f16 kernels): for each sequence and layer, K and V are
// [capacity, n_kv_head*head_dim].
//
// Kernels and launch shapes:
//   embed_<type>    x[t, :] = dequant(W row ids[t])            grid T, block 256
//   mm_<type>       up to 3 jobs out[t, r] (+)= Σ_i W[r, i] x[t, i] (+ bias[r]) over one x, or
//                   with glu: out = silu(gate·x) * (up·x)       grid (ceil(rows/16), ceil(T/4)), block 256:
//                   two output rows per warp; each lane takes 32-element units of both rows
//                   (lane, lane+32, …), dequantizes them into registers with wide loads,
//                   and dots them with up to 4 tokens' activations (16-byte loads)
//   dequant_f16_<type>, to_f16_pad, gemm_epilogue: prompt rows through cuBLAS — weights
//                   dequantized to F16, activations rounded to F16 in tiles of 64 rows (zero
//                   padded: every GEMM has the same shape), float32 accumulation, then the
//                   bias/accumulate/SwiGLU epilogue                 grids of 256-thread blocks
//   mmt_<type>      decode rows on the tensor cores: tiles of 16 weight rows × up to 64 tokens,
//                   1–8 warps splitting a row by a fixed rule, F16 operands, float32
//                   accumulation (see the comment at the kernel)          block 256
//   mme_<type>      one row per warp, element-wise (coalesced activations) for long batches
//                                                                grid (ceil(rows/8), ceil(T/8)), block 256
//   rms_norm_f32    out[t] = x[t] / sqrt(mean(x[t]²) + eps) * w  grid T, block 1024
//   swiglu_f32      g[i] = silu(g[i]) * u[i] (when gate and up differ in type)   grid ceil(n/256), block 256
//   rope_store_<kv> rotate q in place, rotate k and store k, v into the cache     grid T, block 1024
//                   (rotation by pos[t]*inv_freq[i]: NeoX pairs (i, i+rot/2), normal pairs (2i, 2i+1))
//   attention_split_<kv>  out[t, h] = softmax(q[t,h]·K[first..pos[t]]ᵀ·scale) · V, GQA head h/(n_head/n_kv),
//                   split over the positions: online softmax per warp, partial (max, sum, acc)
//                   per split                                   grid (T, n_head, nsplit), block 128
//   attention_merge_f32  combine the splits                       grid (T, n_head), block 128
//   topk_f32        the K largest logits of a row (ties: lower id) and its log-sum-exp, by an
//                   8-bit radix select on order-preserving keys   grid rows, block 1024 (a row a block)
//
// Self-contained: no CUDA headers (half→float through PTX cvt).

typedef unsigned char uchar;
typedef unsigned short ushort;
typedef unsigned int uint;
typedef unsigned long long u64;

#define NEG_INF (-__int_as_float(0x7f800000))

__device__ __forceinline__ float h2f(ushort h) {
    float f;
    asm("{ cvt.f32.f16 %0, %1; }" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ float ld_h(const uchar* p) { return h2f(*(const ushort*)p); }
__device__ __forceinline__ uint ld_u32(const uchar* p) {
    return (uint)p[0] | ((uint)p[1] << 8) | ((uint)p[2] << 16) | ((uint)p[3] << 24);
}

// ---- element dequantization: value of element i of a row ----

__device__ __forceinline__ float deq_f32(const uchar* row, int i) { return ((const float*)row)[i]; }
__device__ __forceinline__ float deq_f16(const uchar* row, int i) { return h2f(((const ushort*)row)[i]); }
__device__ __forceinline__ float deq_bf16(const uchar* row, int i) {
    return __uint_as_float(((uint)((const ushort*)row)[i]) << 16);
}
// Q4_0: 18 bytes per 32: d f16, qs[16] (low nibbles: 0..15, high: 16..31); x = (q-8)*d
__device__ __forceinline__ float deq_q4_0(const uchar* row, int i) {
    const uchar* b = row + (i >> 5) * 18;
    int j = i & 31;
    int q = j < 16 ? (b[2 + j] & 15) : (b[2 + j - 16] >> 4);
    return (q - 8) * ld_h(b);
}
// Q4_1: 20 bytes: d, m f16, qs[16]; x = q*d + m
__device__ __forceinline__ float deq_q4_1(const uchar* row, int i) {
    const uchar* b = row + (i >> 5) * 20;
    int j = i & 31;
    int q = j < 16 ? (b[4 + j] & 15) : (b[4 + j - 16] >> 4);
    return q * ld_h(b) + ld_h(b + 2);
}
// Q5_0: 22 bytes: d f16, qh u32 (5th bits), qs[16]; x = (q-16)*d
__device__ __forceinline__ float deq_q5_0(const uchar* row, int i) {
    const uchar* b = row + (i >> 5) * 22;
    int j = i & 31;
    uint qh = ld_u32(b + 2);
    int q = j < 16 ? ((b[6 + j] & 15) | (((qh >> j) << 4) & 16)) : ((b[6 + j - 16] >> 4) | ((qh >> (j - 16 + 12)) & 16));
    return (q - 16) * ld_h(b);
}
// Q5_1: 24 bytes: d, m f16, qh u32, qs[16]; x = q*d + m
__device__ __forceinline__ float deq_q5_1(const uchar* row, int i) {
    const uchar* b = row + (i >> 5) * 24;
    int j = i & 31;
    uint qh = ld_u32(b + 4);
    int q = j < 16 ? ((b[8 + j] & 15) | (((qh >> j) << 4) & 16)) : ((b[8 + j - 16] >> 4) | ((qh >> (j - 16 + 12)) & 16));
    return q * ld_h(b) + ld_h(b + 2);
}
// Q8_0: 34 bytes: d f16, qs[32] int8; x = q*d
__device__ __forceinline__ float deq_q8_0(const uchar* row, int i) {
    const uchar* b = row + (i >> 5) * 34;
    return (float)(signed char)b[2 + (i & 31)] * ld_h(b);
}
// K-quant 6-bit scale and min of sub-block j from the 12 packed bytes.
__device__ __forceinline__ void scale_min_k4(int j, const uchar* q, int* sc, int* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}
// Q4_K: 144 bytes per 256: d, dmin f16, scales[12], qs[128]; 64-element groups use the
// low then high nibbles of 32 bytes; x = d*sc*q - dmin*m
__device__ __forceinline__ float deq_q4_k(const uchar* row, int i) {
    const uchar* b = row + (i >> 8) * 144;
    int j = i & 255, g = j >> 6, hi = (j >> 5) & 1, l = j & 31;
    int sc, m;
    scale_min_k4(2 * g + hi, b + 4, &sc, &m);
    int q = (b[16 + 32 * g + l] >> (4 * hi)) & 15;
    return ld_h(b) * sc * q - ld_h(b + 2) * m;
}
// Q5_K: 176 bytes: d, dmin f16, scales[12], qh[32], qs[128]; q gets bit (2g+hi) of qh[l] as 16
__device__ __forceinline__ float deq_q5_k(const uchar* row, int i) {
    const uchar* b = row + (i >> 8) * 176;
    int j = i & 255, g = j >> 6, hi = (j >> 5) & 1, l = j & 31;
    int sc, m;
    scale_min_k4(2 * g + hi, b + 4, &sc, &m);
    int q = ((b[48 + 32 * g + l] >> (4 * hi)) & 15) + (((b[16 + l] >> (2 * g + hi)) & 1) << 4);
    return ld_h(b) * sc * q - ld_h(b + 2) * m;
}
// Q6_K: 210 bytes: ql[128], qh[64], scales[16] int8, d f16; x = d*sc*(q-32)
__device__ __forceinline__ float deq_q6_k(const uchar* row, int i) {
    const uchar* b = row + (i >> 8) * 210;
    int j = i & 255, n = j >> 7, r = j & 127, quarter = r >> 5, l = r & 31;
    const uchar* ql = b + 64 * n;
    const uchar* qh = b + 128 + 32 * n;
    const signed char* sc = (const signed char*)(b + 192) + 8 * n;
    int is = l >> 4;
    int q;
    switch (quarter) {
    case 0: q = (ql[l] & 15) | ((qh[l] & 3) << 4); break;
    case 1: q = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4); break;
    case 2: q = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4); break;
    default: q = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4); break;
    }
    return ld_h(b + 208) * (float)sc[is + 2 * quarter] * (float)(q - 32);
}

// ---- embedding and matrix products, instantiated per weight type ----

#define TILE_T 8

template <float (*DEQ)(const uchar*, int)>
__device__ __forceinline__ void embed_impl(const uchar* W, long row_bytes, const int* ids, float* x, int cols) {
    int t = blockIdx.x;
    const uchar* row = W + (long)ids[t] * row_bytes;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) x[(long)t * cols + i] = DEQ(row, i);
}

// ---- 32-element units: unit u of a row dequantized into w[0..31] ----
// Every row length is a multiple of 32, and for each type a unit's bytes
// are found without reference to other units. Loads are as wide as the
// block layout's alignment allows (blocks of 18, 22, 34 or 210 bytes are
// only 2-byte aligned).

struct alignas(16) f4 { float x, y, z, w; };
struct alignas(16) u4 { uint x, y, z, w; };
struct alignas(8) u2 { uint x, y; };

__device__ __forceinline__ void unit_f32(const uchar* row, int u, float* w) {
    const f4* p = (const f4*)(row + 128 * u);
#pragma unroll
    for (int k = 0; k < 8; k++) { f4 v = p[k]; w[4*k] = v.x; w[4*k+1] = v.y; w[4*k+2] = v.z; w[4*k+3] = v.w; }
}
__device__ __forceinline__ void unit_f16(const uchar* row, int u, float* w) {
    const u4* p = (const u4*)(row + 64 * u);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        u4 v = p[k];
        uint a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 4; j++) { w[8*k+2*j] = h2f((ushort)(a[j] & 0xffff)); w[8*k+2*j+1] = h2f((ushort)(a[j] >> 16)); }
    }
}
__device__ __forceinline__ void unit_bf16(const uchar* row, int u, float* w) {
    const u4* p = (const u4*)(row + 64 * u);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        u4 v = p[k];
        uint a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 4; j++) { w[8*k+2*j] = __uint_as_float(a[j] << 16); w[8*k+2*j+1] = __uint_as_float(a[j] & 0xffff0000u); }
    }
}
// 16 quant bytes starting 2-byte aligned, as 8 ushorts.
__device__ __forceinline__ void ld16_2(const uchar* p, uchar* q) {
    const ushort* s = (const ushort*)p;
#pragma unroll
    for (int k = 0; k < 8; k++) { ushort v = s[k]; q[2*k] = (uchar)(v & 0xff); q[2*k+1] = (uchar)(v >> 8); }
}
__device__ __forceinline__ void unit_q4_0(const uchar* row, int u, float* w) {
    const uchar* b = row + 18 * u;
    float d = ld_h(b);
    uchar q[16];
    ld16_2(b + 2, q);
#pragma unroll
    for (int j = 0; j < 16; j++) { w[j] = ((q[j] & 15) - 8) * d; w[j + 16] = ((q[j] >> 4) - 8) * d; }
}
__device__ __forceinline__ void unit_q4_1(const uchar* row, int u, float* w) {
    const uchar* b = row + 20 * u;
    float d = ld_h(b), m = ld_h(b + 2);
    uchar q[16];
    ld16_2(b + 4, q);
#pragma unroll
    for (int j = 0; j < 16; j++) { w[j] = (q[j] & 15) * d + m; w[j + 16] = (q[j] >> 4) * d + m; }
}
__device__ __forceinline__ void unit_q5_0(const uchar* row, int u, float* w) {
    const uchar* b = row + 22 * u;
    float d = ld_h(b);
    uint qh = (uint)*(const ushort*)(b + 2) | ((uint)*(const ushort*)(b + 4) << 16);
    uchar q[16];
    ld16_2(b + 6, q);
#pragma unroll
    for (int j = 0; j < 16; j++) {
        w[j] = ((int)((q[j] & 15) | (((qh >> j) << 4) & 16)) - 16) * d;
        w[j + 16] = ((int)((q[j] >> 4) | ((qh >> (j + 12)) & 16)) - 16) * d;
    }
}
__device__ __forceinline__ void unit_q5_1(const uchar* row, int u, float* w) {
    const uchar* b = row + 24 * u;
    float d = ld_h(b), m = ld_h(b + 2);
    uint qh = *(const uint*)(b + 4);
    uchar q[16];
    ld16_2(b + 8, q);
#pragma unroll
    for (int j = 0; j < 16; j++) {
        w[j] = ((q[j] & 15) | (((qh >> j) << 4) & 16)) * d + m;
        w[j + 16] = ((q[j] >> 4) | ((qh >> (j + 12)) & 16)) * d + m;
    }
}
__device__ __forceinline__ void unit_q8_0(const uchar* row, int u, float* w) {
    const uchar* b = row + 34 * u;
    float d = ld_h(b);
    const ushort* s = (const ushort*)(b + 2);
#pragma unroll
    for (int k = 0; k < 16; k++) {
        ushort v = s[k];
        w[2*k] = (float)(signed char)(v & 0xff) * d;
        w[2*k+1] = (float)(signed char)(v >> 8) * d;
    }
}
__device__ __forceinline__ void unit_q4_k(const uchar* row, int u, float* w) {
    const uchar* b = row + 144 * (u >> 3);
    int j = u & 7, g = j >> 1, hi = j & 1;
    int sc, m;
    scale_min_k4(j, b + 4, &sc, &m);
    float d = ld_h(b) * sc, dm = ld_h(b + 2) * m;
    const u4* p = (const u4*)(b + 16 + 32 * g);
#pragma unroll
    for (int k = 0; k < 2; k++) {
        u4 v = p[k];
        uint a[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 16; i++) {
            int q = (a[i >> 2] >> (8 * (i & 3) + 4 * hi)) & 15;
            w[16 * k + i] = d * q - dm;
        }
    }
}
__device__ __forceinline__ void unit_q5_k(const uchar* row, int u, float* w) {
    const uchar* b = row + 176 * (u >> 3);
    int j = u & 7, g = j >> 1, hi = j & 1;
    int sc, m;
    scale_min_k4(j, b + 4, &sc, &m);
    float d = ld_h(b) * sc, dm = ld_h(b + 2) * m;
    const u4* p = (const u4*)(b + 48 + 32 * g);
    const u4* h = (const u4*)(b + 16);
#pragma unroll
    for (int k = 0; k < 2; k++) {
        u4 v = p[k], hv = h[k];
        uint a[4] = {v.x, v.y, v.z, v.w};
        uint c[4] = {hv.x, hv.y, hv.z, hv.w};
#pragma unroll
        for (int i = 0; i < 16; i++) {
            int q = ((a[i >> 2] >> (8 * (i & 3) + 4 * hi)) & 15) + (((c[i >> 2] >> (8 * (i & 3) + j)) & 1) << 4);
            w[16 * k + i] = d * q - dm;
        }
    }
}
__device__ __forceinline__ void unit_q6_k(const uchar* row, int u, float* w) {
    const uchar* b = row + 210 * (u >> 3);
    int j = u & 7, n = j >> 2, quarter = j & 3;
    const ushort* ql = (const ushort*)(b + 64 * n + (quarter & 1) * 32);
    const ushort* qh = (const ushort*)(b + 128 + 32 * n);
    const signed char* sc = (const signed char*)(b + 192) + 8 * n + 2 * quarter;
    float d = ld_h(b + 208);
    float d0 = d * (float)sc[0], d1 = d * (float)sc[1];
    int lshift = (quarter >> 1) * 4, hshift = 2 * quarter;
#pragma unroll
    for (int k = 0; k < 16; k++) {
        ushort lv = ql[k], hv = qh[k];
#pragma unroll
        for (int e = 0; e < 2; e++) {
            int l = 2 * k + e;
            int q = (((lv >> (8 * e)) >> lshift) & 15) | ((((hv >> (8 * e)) >> hshift) & 3) << 4);
            w[l] = (l < 16 ? d0 : d1) * (float)(q - 32);
        }
    }
}

// A matrix product job: out[t, r] (+)= W[r, :]·x[t, :] (+ bias[r]). One
// launch runs up to 3 jobs over the same activations (Q, K and V), their
// rows numbered one after the other; or, with glu set, jobs 0 and 1 are the
// gate and up matrices and out gets silu(gate·x) * (up·x).
struct MMJob {
    const uchar* W;
    long row_bytes;
    float* out;
    const float* bias; // nullable
    int rows;
    int accumulate;    // out += instead of out =
};
struct MMArgs {
    MMJob job[3];
    int njobs;
    const float* x;
    const ushort* x16; // mmt_ only: x rounded to F16 (same layout)
    ushort* out16;     // mmt_ only, with glu: an F16 copy of the output (nullable)
    int cols;
    int T;
    int glu;
    int parts; // mmt_ only: warps that split a row (1, 2, 4 or 8)
    int tok;   // mmt_ only: tokens a block takes (a multiple of 8, at most MMT_TOK)
};

__device__ __forceinline__ int find_job(const MMArgs& a, int* r) {
    int j = 0;
    while (j + 1 < a.njobs && *r >= a.job[j].rows) { *r -= a.job[j].rows; j++; }
    return j;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ void mm_store(const MMJob& jb, int r, int t, float v) {
    if (jb.bias) v += jb.bias[r];
    float* o = jb.out + (long)t * jb.rows + r;
    if (jb.accumulate) v += *o;
    *o = v;
}

__device__ __forceinline__ float silu(float g) { return g / (1.f + expf(-g)); }

// Element-wise variant for long batches (prefill): lanes take consecutive
// elements, so the activation reads of a warp are coalesced and registers
// stay few; each element is dequantized on its own.
template <float (*DEQ)(const uchar*, int)>
__device__ __forceinline__ void mme_rows(const uchar* row, const float* xt, int cols, int nt, float* acc) {
    for (int i = threadIdx.x & 31; i < cols; i += 32) {
        float w = DEQ(row, i);
#pragma unroll
        for (int t = 0; t < TILE_T; t++)
            if (t < nt) acc[t] += w * xt[(long)t * cols + i];
    }
}

// Unit variant for decode-sized batches: each lane takes 32-element units
// (lane, lane+32, …) of two rows at once (more loads in flight, one pass
// over the activations for both), dequantized into registers with wide
// loads, and dots them with up to TILE_U tokens' activations (16-byte loads).
#ifndef TILE_U
#define TILE_U 4
#endif
template <void (*UNIT)(const uchar*, int, float*)>
__device__ __forceinline__ void mmu_rows2(const uchar* ra, const uchar* rb, const float* xt, int cols, int nt, float* acca, float* accb) {
    int units = cols >> 5;
    for (int u = threadIdx.x & 31; u < units; u += 32) {
        float wa[32], wb[32];
        UNIT(ra, u, wa);
        if (rb) UNIT(rb, u, wb);
#pragma unroll
        for (int t = 0; t < TILE_U; t++) {
            if (t < nt) {
                const f4* xp = (const f4*)(xt + (long)t * cols + 32 * u);
                float sa = 0.f, sb = 0.f;
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    f4 v = xp[k];
                    sa += wa[4*k] * v.x + wa[4*k+1] * v.y + wa[4*k+2] * v.z + wa[4*k+3] * v.w;
                    if (rb) sb += wb[4*k] * v.x + wb[4*k+1] * v.y + wb[4*k+2] * v.z + wb[4*k+3] * v.w;
                }
                acca[t] += sa;
                accb[t] += sb;
            }
        }
    }
}

// Two output rows per warp (rows 2w and 2w+1 of all jobs together; with
// glu, gate and up row w); grid.y tiles the tokens by TILE_U.
template <void (*UNIT)(const uchar*, int, float*)>
__device__ __forceinline__ void mmu_kernel(const MMArgs& a) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int w = blockIdx.x * (blockDim.x >> 5) + warp;
    int t0 = blockIdx.y * TILE_U;
    int nt = min(TILE_U, a.T - t0);
    const float* xt = a.x + (long)t0 * a.cols;
    float acca[TILE_U], accb[TILE_U];
#pragma unroll
    for (int t = 0; t < TILE_U; t++) { acca[t] = 0.f; accb[t] = 0.f; }
    if (a.glu) {
        int r = w;
        if (r >= a.job[0].rows) return;
        mmu_rows2<UNIT>(a.job[0].W + (long)r * a.job[0].row_bytes, a.job[1].W + (long)r * a.job[1].row_bytes, xt, a.cols, nt, acca, accb);
#pragma unroll
        for (int t = 0; t < TILE_U; t++) {
            float g = warp_sum(acca[t]), u = warp_sum(accb[t]);
            if (lane == 0 && t < nt) a.job[0].out[(long)(t0 + t) * a.job[0].rows + r] = silu(g) * u;
        }
        return;
    }
    int total = a.job[0].rows + (a.njobs > 1 ? a.job[1].rows : 0) + (a.njobs > 2 ? a.job[2].rows : 0);
    int r0 = 2 * w;
    if (r0 >= total) return;
    int ra = r0, rbi = r0 + 1;
    int ja = find_job(a, &ra);
    int jbi = -1;
    if (rbi < total) jbi = find_job(a, &rbi);
    const uchar* pa = a.job[ja].W + (long)ra * a.job[ja].row_bytes;
    const uchar* pb = jbi >= 0 ? a.job[jbi].W + (long)rbi * a.job[jbi].row_bytes : 0;
    mmu_rows2<UNIT>(pa, pb, xt, a.cols, nt, acca, accb);
#pragma unroll
    for (int t = 0; t < TILE_U; t++) {
        float va = warp_sum(acca[t]), vb = warp_sum(accb[t]);
        if (lane == 0 && t < nt) {
            mm_store(a.job[ja], ra, t0 + t, va);
            if (jbi >= 0) mm_store(a.job[jbi], rbi, t0 + t, vb);
        }
    }
}

// One warp per output row (of all jobs together); grid.y tiles the tokens.
template <void (*ROWS)(const uchar*, const float*, int, int, float*)>
__device__ __forceinline__ void mme_kernel(const MMArgs& a) {
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int r = blockIdx.x * (blockDim.x >> 5) + warp;
    int total = a.glu ? a.job[0].rows : a.job[0].rows + (a.njobs > 1 ? a.job[1].rows : 0) + (a.njobs > 2 ? a.job[2].rows : 0);
    if (r >= total) return;
    int t0 = blockIdx.y * TILE_T;
    int nt = min(TILE_T, a.T - t0);
    const float* xt = a.x + (long)t0 * a.cols;
    float acc[TILE_T];
#pragma unroll
    for (int t = 0; t < TILE_T; t++) acc[t] = 0.f;
    if (a.glu) {
        float up[TILE_T];
#pragma unroll
        for (int t = 0; t < TILE_T; t++) up[t] = 0.f;
        ROWS(a.job[0].W + (long)r * a.job[0].row_bytes, xt, a.cols, nt, acc);
        ROWS(a.job[1].W + (long)r * a.job[1].row_bytes, xt, a.cols, nt, up);
#pragma unroll
        for (int t = 0; t < TILE_T; t++) {
            float g = warp_sum(acc[t]), u = warp_sum(up[t]);
            if (lane == 0 && t < nt) a.job[0].out[(long)(t0 + t) * a.job[0].rows + r] = silu(g) * u;
        }
        return;
    }
    int j = find_job(a, &r);
    const MMJob& jb = a.job[j];
    ROWS(jb.W + (long)r * jb.row_bytes, xt, a.cols, nt, acc);
#pragma unroll
    for (int t = 0; t < TILE_T; t++) {
        float v = warp_sum(acc[t]);
        if (lane == 0 && t < nt) mm_store(jb, r, t0 + t, v);
    }
}

// ---- decode rows on the tensor cores (sm_80 and later) ----
//
// mmt_<type>: the same product as mm_<type> for decode rows, reading each
// weight byte once per block of up to 64 tokens instead of once per 4.
//
// Math. Rows are taken in tiles of 16 (with glu: 8 gate rows and the same 8
// up rows). A row tile's 32-element units are split between P = a.parts
// warps by a fixed rule (part p takes steps p, p+P, …; step s is units
// 4s..4s+3), and the P partial sums are added in part order. Per step a lane
// (g = lane/4, c = lane%4) dequantizes unit 4s+c of tile rows g and g+8 with
// the unit_<type> functions, rounds them to F16, and feeds them as the A
// operand of eight mma.m16n8k16 (F16 in, float32 accumulation): mma j takes
// elements 4j..4j+3 of the four lanes' units. A dot product's terms may be
// grouped in any order as long as A and B agree, so the k slots
// {2c, 2c+1, 2c+8, 2c+9} a lane owns in the instruction's layout stand for
// elements 4j..4j+3 of its own unit. The B operand is token 8n+g's
// activations at the same elements, rounded to F16 (a.x16: the producer of
// the activations wrote an F16 copy, or the launcher converted them; the
// same rounding either way). Each output (row, token)
// is thus the same sequence of instructions whatever T, the block's token
// count a.tok or the token's place: tokens do not interact inside an mma,
// the split of the units depends only on cols and P (chosen from the
// matrix's shape by the launcher, never from T), and the partial sums are
// added in a fixed order.
//
// Layout and launch. A block's 8 warps are 8/P row tiles × P parts (warp w:
// tile w/P, part w%P); it takes tokens t0 = blockIdx.y*a.tok … +a.tok. The
// block walks the steps in iterations (iteration i: part p does step
// p + P·i, so the block needs columns 128·P·i … +128·P), and copies those
// columns of its tokens' F16 activations into shared memory with cp.async
// while the warps dequantize their weights; the 8/P tiles then share them.
// A block of fewer than 8 tokens skips the staging: each lane reads its
// token's activations itself and prefetches its next weights into L2 (the
// same values reach the same instructions either way). Shared layout:
// 16-byte pieces (8 F16), piece k (0..3) of unit uc (0..4P-1) of token t at
// piece index uc·U + 4t + k, U = 4·a.tok + 1, so that the eight lanes of
// each 16-byte read phase hit distinct banks. After the walk the same
// memory holds the warps' partial sums red[warp][n][e][lane]. With glu,
// out16 (when set) gets an F16 copy of the output, the next product's input.
//   grid (ceil(tiles / (8/P)), ceil(T / a.tok)), block 256,
//   dynamic shared max(64·P·(4·a.tok + 1), 32768) bytes; tiles = ceil(rows/16), with glu ceil(rows/8)
#define MMT_WARPS 8
#define MMT_TOK 64
#define MMT_NT (MMT_TOK / 8)

// pack_h2 rounds two floats to F16 and packs them (lo in the low half).
__device__ __forceinline__ uint pack_h2(float lo, float hi) {
    uint r;
    asm("{ cvt.rn.f16x2.f32 %0, %1, %2; }" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ ushort f2h_rn(float f) {
    ushort h;
    asm("{ cvt.rn.f16.f32 %0, %1; }" : "=h"(h) : "f"(f));
    return h;
}

// make_h4 rounds four floats to F16 (in order, for an 8-byte store).
__device__ __forceinline__ u2 make_h4(f4 v) { return u2{pack_h2(v.x, v.y), pack_h2(v.z, v.w)}; }

// to_f16_rows: out[i] = F16(x[i]) for n elements (n a multiple of 4), the
// F16 input of mmt_ when no producer wrote one.           grid ceil(n/1024), block 256
extern "C" __global__ void to_f16_rows(const float* x, ushort* out, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (4 * i < n) ((u2*)out)[i] = make_h4(((const f4*)x)[i]);
}

// c += A·B for one m16n8k16 tile (A row-major 16×16 F16, B 16×8 F16, C float32).
__device__ __forceinline__ void mma_16816(float* c, const uint* a, uint b0, uint b1) {
#if __CUDA_ARCH__ >= 800
    asm volatile("{ mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3}; }"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// 16-byte asynchronous copy global → shared; src_bytes 0 writes zeros.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
#if __CUDA_ARCH__ >= 800
    uint sa;
    asm volatile("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(sa) : "l"(dst));
    asm volatile("{ cp.async.cg.shared.global [%0], [%1], 16, %2; }" :: "r"(sa), "l"(src), "r"(src_bytes) : "memory");
#endif
}
__device__ __forceinline__ void cp_async_wait_all() {
#if __CUDA_ARCH__ >= 800
    asm volatile("{ cp.async.commit_group; cp.async.wait_group 0; }" ::: "memory");
#endif
}

__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("{ prefetch.global.L2 [%0]; }" :: "l"(p)); }

// A operand of step u for tile rows g (row pointer pa) and g+8 (pb): unit u
// of each dequantized and rounded to F16 (zeros for a missing row or unit).
template <void (*UNIT)(const uchar*, int, float*)>
__device__ __forceinline__ void mmt_load_a(const uchar* pa, const uchar* pb, int u, bool uok, uint (*A)[4]) {
    float w[32];
    if (pa && uok) UNIT(pa, u, w);
    else {
#pragma unroll
        for (int i = 0; i < 32; i++) w[i] = 0.f;
    }
#pragma unroll
    for (int j = 0; j < 8; j++) { A[j][0] = pack_h2(w[4*j], w[4*j+1]); A[j][2] = pack_h2(w[4*j+2], w[4*j+3]); }
    if (pb && uok) UNIT(pb, u, w);
    else {
#pragma unroll
        for (int i = 0; i < 32; i++) w[i] = 0.f;
    }
#pragma unroll
    for (int j = 0; j < 8; j++) { A[j][1] = pack_h2(w[4*j], w[4*j+1]); A[j][3] = pack_h2(w[4*j+2], w[4*j+3]); }
}

// Row r (0..15) of row tile `tile`: the job and the row within it, or -1.
__device__ __forceinline__ int mmt_row(const MMArgs& a, int tile, int r, int* row) {
    if (a.glu) {
        int rr = tile * 8 + (r & 7);
        if (rr >= a.job[0].rows) return -1;
        *row = rr;
        return r < 8 ? 0 : 1;
    }
    int total = a.job[0].rows + (a.njobs > 1 ? a.job[1].rows : 0) + (a.njobs > 2 ? a.job[2].rows : 0);
    int rr = tile * 16 + r;
    if (rr >= total) return -1;
    int j = find_job(a, &rr);
    *row = rr;
    return j;
}

template <void (*UNIT)(const uchar*, int, float*)>
__device__ __forceinline__ void mmt_kernel(const MMArgs& a) {
    extern __shared__ f4 mmt_smem[];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int g = lane >> 2, c = lane & 3;
    int P = a.parts, tiles_per_block = MMT_WARPS / P;
    int part = warp % P, tile = blockIdx.x * tiles_per_block + warp / P;
    int t0 = blockIdx.y * a.tok;
    int nt = min(a.tok, a.T - t0);
    int ntiles = (nt + 7) >> 3;
    int U = 4 * a.tok + 1;
    int rowa, rowb;
    int ja = mmt_row(a, tile, g, &rowa), jb = mmt_row(a, tile, g + 8, &rowb);
    const uchar* pa = ja >= 0 ? a.job[ja].W + (long)rowa * a.job[ja].row_bytes : 0;
    const uchar* pb = jb >= 0 ? a.job[jb].W + (long)rowb * a.job[jb].row_bytes : 0;
    const ushort* xt = a.x16 + (long)t0 * a.cols;
    int units = a.cols >> 5;
    int iters = (units + 4 * P - 1) / (4 * P);
    int ppt = 16 * P;        // 16-byte pieces of one token in an iteration
    int pieces = nt * ppt;   // … and of all the block's tokens
    float acc[MMT_NT][4];
#pragma unroll
    for (int n = 0; n < MMT_NT; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
    if (nt < 8) {
        // Few tokens: each lane reads its token's activations directly (no
        // staging, no barriers), and asks L2 for its next step's weights
        // ahead. The same values reach the same mma as when staged.
        long rba = ja >= 0 ? a.job[ja].row_bytes : 0, rbb = jb >= 0 ? a.job[jb].row_bytes : 0;
        for (int s = part; 4 * s < units; s += P) {
            int u = 4 * s + c;
            bool uok = u < units;
            int un = u + 4 * P;
            if (un < units) {
                if (pa) { long o = (long)un * rba / units; prefetch_l2(pa + o); prefetch_l2(pa + min(o + 32, rba - 1)); }
                if (pb) { long o = (long)un * rbb / units; prefetch_l2(pb + o); prefetch_l2(pb + min(o + 32, rbb - 1)); }
            }
            uint A[8][4];
            mmt_load_a<UNIT>(pa, pb, u, uok, A);
            int t = g;
            uint B[16];
            if (t < nt && uok) {
                const u4* xp = (const u4*)(xt + (long)t * a.cols + 32 * u);
#pragma unroll
                for (int k = 0; k < 4; k++) { u4 v = xp[k]; B[4*k] = v.x; B[4*k+1] = v.y; B[4*k+2] = v.z; B[4*k+3] = v.w; }
            } else {
#pragma unroll
                for (int k = 0; k < 16; k++) B[k] = 0u;
            }
#pragma unroll
            for (int j = 0; j < 8; j++) mma_16816(acc[0], A[j], B[2*j], B[2*j+1]);
        }
    } else {
        for (int it = 0; it < iters; it++) {
            // Stage columns 128·P·it … of the block's tokens (zeros past cols).
            int col0 = 128 * P * it;
            __syncthreads();
            for (int q = threadIdx.x; q < pieces; q += blockDim.x) {
                int t = q / ppt, rem = q - t * ppt; // rem = uc*4 + k
                int col = col0 + 8 * rem;
                const ushort* src = xt + (long)t * a.cols + min(col, a.cols - 8);
                cp_async16(mmt_smem + (rem >> 2) * U + 4 * t + (rem & 3), src, col < a.cols ? 16 : 0);
            }
            // Meanwhile: this warp's weights for step s.
            int s = part + P * it;
            int u = 4 * s + c;
            bool uok = u < units;
            uint A[8][4];
            mmt_load_a<UNIT>(pa, pb, u, uok, A);
            cp_async_wait_all();
            __syncthreads();
            if (4 * s < units) {
                const u4* xs = (const u4*)mmt_smem + (4 * part + c) * U;
#pragma unroll
                for (int n = 0; n < MMT_NT; n++) {
                    if (n < ntiles) {
                        int t = 8 * n + g;
                        uint B[16];
                        if (t < nt && uok) {
#pragma unroll
                            for (int k = 0; k < 4; k++) { u4 v = xs[4 * t + k]; B[4*k] = v.x; B[4*k+1] = v.y; B[4*k+2] = v.z; B[4*k+3] = v.w; }
                        } else {
#pragma unroll
                            for (int k = 0; k < 16; k++) B[k] = 0u;
                        }
#pragma unroll
                        for (int j = 0; j < 8; j++) mma_16816(acc[n], A[j], B[2*j], B[2*j+1]);
                    }
                }
            }
        }
    }
    __syncthreads();
    float* red = (float*)mmt_smem; // [warp][n][e][lane]
#pragma unroll
    for (int n = 0; n < MMT_NT; n++) {
        if (n < ntiles) {
#pragma unroll
            for (int e = 0; e < 4; e++) red[((warp * MMT_NT + n) * 4 + e) * 32 + lane] = acc[n][e];
        }
    }
    __syncthreads();
    // Item (tile q of the block, token t, tile row r): consecutive threads
    // take consecutive rows of one token. Row r is C row r&7 of lane
    // 4(r&7) + (t%8)/2, element (t&1) + 2·(r≥8); with glu, r < 8 and the up
    // row is element +2.
    int rpt = a.glu ? 8 : 16;
    int per_tile = rpt * nt;
    for (int i = threadIdx.x; i < tiles_per_block * per_tile; i += blockDim.x) {
        int q = i / per_tile, rem = i % per_tile;
        int t = rem / rpt, r = rem % rpt;
        int n = t >> 3, l = 4 * (r & 7) + ((t & 7) >> 1), e = (t & 1) + (r >= 8 ? 2 : 0);
        float va = 0.f, vb = 0.f;
        for (int pp = 0; pp < P; pp++) {
            const float* rw = red + (((q * P + pp) * MMT_NT + n) * 4) * 32;
            va += rw[e * 32 + l];
            vb += rw[((e + 2) & 3) * 32 + l];
        }
        int row;
        int tq = blockIdx.x * tiles_per_block + q;
        int j = mmt_row(a, tq, r, &row);
        if (j < 0) continue;
        if (a.glu) {
            float v = silu(va) * vb;
            a.job[0].out[(long)(t0 + t) * a.job[0].rows + row] = v;
            if (a.out16) a.out16[(long)(t0 + t) * a.job[0].rows + row] = f2h_rn(v);
        }
        else mm_store(a.job[j], row, t0 + t, va);
    }
}

#define INSTANTIATE_MMT(NAME) \
    extern "C" __global__ void __launch_bounds__(256) mmt_##NAME(MMArgs a) { mmt_kernel<unit_##NAME>(a); }

INSTANTIATE_MMT(f16)
INSTANTIATE_MMT(q4_0)
INSTANTIATE_MMT(q4_1)
INSTANTIATE_MMT(q5_0)
INSTANTIATE_MMT(q5_1)
INSTANTIATE_MMT(q8_0)
INSTANTIATE_MMT(q4_k)
INSTANTIATE_MMT(q5_k)
INSTANTIATE_MMT(q6_k)

// ---- prompt rows through cuBLAS: F16 copies of weights and activations ----

__device__ __forceinline__ ushort f2h(float f) {
    ushort h;
    asm("{ cvt.rn.f16.f32 %0, %1; }" : "=h"(h) : "f"(f));
    return h;
}

// One thread per 32-element unit: W rows → F16 [rows, cols].
template <void (*UNIT)(const uchar*, int, float*)>
__device__ __forceinline__ void dequant_f16_impl(const uchar* W, long row_bytes, int rows, int cols, ushort* out) {
    int units = cols >> 5;
    long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long)rows * units) return;
    int r = (int)(idx / units), u = (int)(idx % units);
    float w[32];
    UNIT(W + (long)r * row_bytes, u, w);
    u4* o = (u4*)(out + (long)r * cols + 32 * u);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        uint v[4];
#pragma unroll
        for (int j = 0; j < 4; j++) v[j] = (uint)f2h(w[8*k+2*j]) | ((uint)f2h(w[8*k+2*j+1]) << 16);
        o[k] = u4{v[0], v[1], v[2], v[3]};
    }
}

// x [T, cols] float → F16 [tile, cols], rows past T zero.   grid ceil(tile*cols/256), block 256
extern "C" __global__ void to_f16_pad(const float* x, int T, int cols, ushort* out, int tile) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)tile * cols) return;
    out[i] = i / cols < T ? f2h(x[i]) : (ushort)0;
}

// GEMM epilogue: out[t, r] (+)= c[t, r] (+ bias[r]) for the T valid rows;
// with up != 0: out[t, r] = silu(c[t, r]) * up[t, r].     grid ceil(T*rows/256), block 256
extern "C" __global__ void gemm_epilogue(const float* c, const float* up, int T, int rows, float* out, const float* bias, int accumulate) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)T * rows) return;
    float v = c[i];
    if (up) {
        out[i] = v / (1.f + expf(-v)) * up[i];
        return;
    }
    if (bias) v += bias[i % rows];
    if (accumulate) v += out[i];
    out[i] = v;
}

#define INSTANTIATE(NAME)                                                                                   \
    extern "C" __global__ void embed_##NAME(const uchar* W, long row_bytes, const int* ids, float* x, int cols) { \
        embed_impl<deq_##NAME>(W, row_bytes, ids, x, cols);                                                 \
    }                                                                                                       \
    extern "C" __global__ void mmu_##NAME(MMArgs a) { mmu_kernel<unit_##NAME>(a); }                         \
    extern "C" __global__ void mme_##NAME(MMArgs a) { mme_kernel<mme_rows<deq_##NAME>>(a); }               \
    extern "C" __global__ void dequant_f16_##NAME(const uchar* W, long row_bytes, int rows, int cols, ushort* out) { \
        dequant_f16_impl<unit_##NAME>(W, row_bytes, rows, cols, out);                                       \
    }

INSTANTIATE(f32)
INSTANTIATE(f16)
INSTANTIATE(bf16)
INSTANTIATE(q4_0)
INSTANTIATE(q4_1)
INSTANTIATE(q5_0)
INSTANTIATE(q5_1)
INSTANTIATE(q8_0)
INSTANTIATE(q4_k)
INSTANTIATE(q5_k)
INSTANTIATE(q6_k)

// ---- elementwise ----

__device__ __forceinline__ float block_sum(float v, float* sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    v = threadIdx.x < nw ? sh[threadIdx.x] : 0.f;
    if (warp == 0)
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

__device__ __forceinline__ float block_max(float v, float* sh) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    int nw = blockDim.x >> 5;
    v = threadIdx.x < nw ? sh[threadIdx.x] : NEG_INF;
    if (warp == 0)
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

extern "C" __global__ void rms_norm_f32(const float* x, const float* w, float* out, int n, float eps, ushort* out16) {
    // n is a multiple of 32: 16-byte loads, one or a few per thread.
    __shared__ float sh[32];
    const f4* xr = (const f4*)(x + (long)blockIdx.x * n);
    f4* o = (f4*)(out + (long)blockIdx.x * n);
    const f4* wr = (const f4*)w;
    int n4 = n >> 2;
    float ss = 0.f;
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
        f4 v = xr[i];
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    ss = block_sum(ss, sh);
    float scale = rsqrtf(ss / n + eps);
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
        f4 v = xr[i], g = wr[i];
        f4 r = f4{v.x * scale * g.x, v.y * scale * g.y, v.z * scale * g.z, v.w * scale * g.w};
        o[i] = r;
        if (out16) ((u2*)(out16 + (long)blockIdx.x * n))[i] = make_h4(r);
    }
}

extern "C" __global__ void swiglu_f32(float* g, const float* u, int total, ushort* g16) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) {
        float v = g[i];
        v = v / (1.f + expf(-v)) * u[i];
        g[i] = v;
        if (g16) g16[i] = f2h(v);
    }
}

// KV cache elements: float32 or F16 (rounded to nearest when stored).
__device__ __forceinline__ float kv_ld(const float* p, long i) { return p[i]; }
__device__ __forceinline__ float kv_ld(const ushort* p, long i) { return h2f(p[i]); }
__device__ __forceinline__ void kv_st(float* p, long i, float v) { p[i] = v; }
__device__ __forceinline__ void kv_st(ushort* p, long i, float v) { p[i] = f2h_rn(v); }

// rope_store_<kv>: rotates q (in place) and k, and writes k and v into each
// row's cache (elements KT) at its position.                   grid T, block 1024
template <typename KT>
__device__ __forceinline__ void rope_store(float* q, const float* k, const float* v, const u64* kptr, const u64* vptr,
                                           const int* pos, const double* inv_freq, int n_head, int n_kv, int hd, int rot, int neox) {
    int t = blockIdx.x;
    int half = rot / 2;
    int kvd = n_kv * hd;
    double p = (double)pos[t];
    float* qr = q + (long)t * n_head * hd;
    const float* kr = k + (long)t * kvd;
    KT* K = (KT*)kptr[t] + (long)pos[t] * kvd;
    KT* V = (KT*)vptr[t] + (long)pos[t] * kvd;
    // Elements outside the rotated pairs: copied as they are.
    for (int i = threadIdx.x; i < kvd; i += blockDim.x) {
        int e = i % hd;
        kv_st(V, i, v[(long)t * kvd + i]);
        if (e >= rot) kv_st(K, i, kr[i]);
    }
    for (int w = threadIdx.x; w < (n_head + n_kv) * half; w += blockDim.x) {
        int h = w / half, i = w % half;
        double sn, cs;
        sincos(p * inv_freq[i], &sn, &cs);
        float fs = (float)sn, fc = (float)cs;
        int hh = h < n_head ? h : h - n_head;
        int a = neox ? hh * hd + i : hh * hd + 2 * i;
        int b = neox ? a + half : a + 1;
        if (h < n_head) {
            float x0 = qr[a], x1 = qr[b];
            qr[a] = x0 * fc - x1 * fs;
            qr[b] = x0 * fs + x1 * fc;
        } else {
            float x0 = kr[a], x1 = kr[b];
            kv_st(K, a, x0 * fc - x1 * fs);
            kv_st(K, b, x0 * fs + x1 * fc);
        }
    }
}
extern "C" __global__ void rope_store_f32(float* q, const float* k, const float* v, const u64* kptr, const u64* vptr,
                                          const int* pos, const double* inv_freq, int n_head, int n_kv, int hd, int rot, int neox) {
    rope_store<float>(q, k, v, kptr, vptr, pos, inv_freq, n_head, n_kv, hd, rot, neox);
}
extern "C" __global__ void rope_store_f16(float* q, const float* k, const float* v, const u64* kptr, const u64* vptr,
                                          const int* pos, const double* inv_freq, int n_head, int n_kv, int hd, int rot, int neox) {
    rope_store<ushort>(q, k, v, kptr, vptr, pos, inv_freq, n_head, n_kv, hd, rot, neox);
}

// Attention, split over the sequence (flash-decoding): block (t, h, split)
// takes a contiguous share of the positions first..pos[t] (the share is
// computed here from pos, so a captured graph serves every step). Each of
// its 4 warps walks its positions with an online softmax, lanes holding head
// elements lane, lane+32, …; the block merges its warps and writes a partial
// (max, sum, acc[hd]) that attention_merge_f32 combines across splits.
#define ATT_WARPS 4
#define MAX_HD 128
template <typename KT>
__device__ __forceinline__ void attention_split(const float* q, float* part, const u64* kptr, const u64* vptr, const int* pos,
                                                int n_head, int n_kv, int hd, int window, float scale, int nsplit) {
    __shared__ float wm[ATT_WARPS], ws[ATT_WARPS];
    __shared__ float wacc[ATT_WARPS][MAX_HD];
    int t = blockIdx.x, h = blockIdx.y, split = blockIdx.z;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int kvh = h / (n_head / n_kv);
    int kvd = n_kv * hd;
    const KT* K = (const KT*)kptr[t] + kvh * hd;
    const KT* V = (const KT*)vptr[t] + kvh * hd;
    const float* qr = q + ((long)t * n_head + h) * hd;
    int last = pos[t];
    int first = window > 0 ? max(0, last - window + 1) : 0;
    int n = last + 1 - first;
    int per = (n + nsplit - 1) / nsplit;
    int lo = first + split * per, hi = min(last + 1, lo + per);
    const int E = MAX_HD / 32; // elements per lane (hd ≤ 128)
    float qv[E], acc[E];
#pragma unroll
    for (int e = 0; e < E; e++) {
        int i = lane + 32 * e;
        qv[e] = i < hd ? qr[i] * scale : 0.f;
        acc[e] = 0.f;
    }
    float m = NEG_INF, sum = 0.f;
    for (int p = lo + warp; p < hi; p += ATT_WARPS) {
        const KT* kr = K + (long)p * kvd;
        float sdot = 0.f;
#pragma unroll
        for (int e = 0; e < E; e++) {
            int i = lane + 32 * e;
            if (i < hd) sdot += qv[e] * kv_ld(kr, i);
        }
        for (int o = 16; o > 0; o >>= 1) sdot += __shfl_xor_sync(0xffffffffu, sdot, o);
        float mnew = fmaxf(m, sdot);
        float corr = expf(m - mnew), w = expf(sdot - mnew);
        sum = sum * corr + w;
        const KT* vr = V + (long)p * kvd;
#pragma unroll
        for (int e = 0; e < E; e++) {
            int i = lane + 32 * e;
            acc[e] = acc[e] * corr + (i < hd ? w * kv_ld(vr, i) : 0.f);
        }
        m = mnew;
    }
    if (lane == 0) { wm[warp] = m; ws[warp] = sum; }
#pragma unroll
    for (int e = 0; e < E; e++) wacc[warp][lane + 32 * e] = acc[e];
    __syncthreads();
    // Merge the warps: threads take head elements.
    float M = NEG_INF;
    for (int w = 0; w < ATT_WARPS; w++) M = fmaxf(M, wm[w]);
    float* out = part + (((long)t * n_head + h) * nsplit + split) * (hd + 2);
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float a = 0.f;
        for (int w = 0; w < ATT_WARPS; w++)
            if (ws[w] > 0.f) a += wacc[w][i] * expf(wm[w] - M);
        out[2 + i] = a;
    }
    if (threadIdx.x == 0) {
        float S = 0.f;
        for (int w = 0; w < ATT_WARPS; w++)
            if (ws[w] > 0.f) S += ws[w] * expf(wm[w] - M);
        out[0] = M;
        out[1] = S;
    }
}
extern "C" __global__ void attention_split_f32(const float* q, float* part, const u64* kptr, const u64* vptr, const int* pos,
                                               int n_head, int n_kv, int hd, int window, float scale, int nsplit) {
    attention_split<float>(q, part, kptr, vptr, pos, n_head, n_kv, hd, window, scale, nsplit);
}
extern "C" __global__ void attention_split_f16(const float* q, float* part, const u64* kptr, const u64* vptr, const int* pos,
                                               int n_head, int n_kv, int hd, int window, float scale, int nsplit) {
    attention_split<ushort>(q, part, kptr, vptr, pos, n_head, n_kv, hd, window, scale, nsplit);
}

// Combines the nsplit partials of each (t, h): out = Σ acc_s e^(m_s-M) / Σ sum_s e^(m_s-M).
extern "C" __global__ void attention_merge_f32(const float* part, float* out, int n_head, int hd, int nsplit, ushort* out16) {
    __shared__ float scale[64]; // e^(m_s - M) / S for each split (nsplit ≤ 64)
    int t = blockIdx.x, h = blockIdx.y;
    const float* pp = part + ((long)t * n_head + h) * nsplit * (hd + 2);
    if (threadIdx.x < 32) {
        int lane = threadIdx.x;
        float m = NEG_INF, s = 0.f;
        for (int sp = lane; sp < nsplit; sp += 32) {
            if (pp[sp * (hd + 2) + 1] > 0.f) m = fmaxf(m, pp[sp * (hd + 2)]);
        }
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        for (int sp = lane; sp < nsplit; sp += 32) {
            float ss = pp[sp * (hd + 2) + 1];
            if (ss > 0.f) s += ss * expf(pp[sp * (hd + 2)] - m);
        }
        s = warp_sum(s);
        for (int sp = lane; sp < nsplit; sp += 32) {
            float ss = pp[sp * (hd + 2) + 1];
            scale[sp] = ss > 0.f ? expf(pp[sp * (hd + 2)] - m) / s : 0.f;
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float a = 0.f;
        for (int sp = 0; sp < nsplit; sp++)
            if (scale[sp] != 0.f) a += pp[sp * (hd + 2) + 2 + i] * scale[sp];
        out[((long)t * n_head + h) * hd + i] = a;
        if (out16) out16[((long)t * n_head + h) * hd + i] = f2h(a);
    }
}

// ---- top-k of a logits row, for sampling on the device ----

#define TOPK_THREADS 1024

// sort_key maps a float to a uint32 whose order is the float order (NaN as -inf).
__device__ __forceinline__ uint sort_key(float v) {
    uint b = __float_as_uint(v);
    if (v != v) b = 0xff800000u;
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// block_exscan returns the exclusive prefix sum of v over the block's threads.
__device__ __forceinline__ uint block_exscan(uint v, uint* sh) {
    int tid = threadIdx.x;
    sh[tid] = v;
    __syncthreads();
    for (int off = 1; off < (int)blockDim.x; off <<= 1) {
        uint t = tid >= off ? sh[tid - off] : 0;
        __syncthreads();
        sh[tid] += t;
        __syncthreads();
    }
    uint incl = sh[tid];
    __syncthreads();
    return incl - v;
}

// topk_f32 writes the K (≤ V) largest entries of x[0..V) to ids/vals (those
// strictly above the K-th largest value first, in no order, then ties at
// that value by increasing index) and the row's log-sum-exp to *lse.
// Block b takes row x + b*x_stride and writes its results out_stride bytes
// further on than block b-1 (one launch for a run of rows).
extern "C" __global__ void topk_f32(const float* x, int V, int K, int* ids, float* vals, float* lse, long x_stride, long out_stride) {
    __shared__ uint hist[256];
    x += blockIdx.x * x_stride;
    {
        long ob = blockIdx.x * out_stride;
        ids = (int*)((char*)ids + ob);
        vals = (float*)((char*)vals + ob);
        lse = (float*)((char*)lse + ob);
    }
    __shared__ float red[32];
    __shared__ uint s_prefix, s_remaining;
    __shared__ uint scan[TOPK_THREADS];
    int tid = threadIdx.x, nt = blockDim.x;
    float m = NEG_INF;
    for (int i = tid; i < V; i += nt) {
        float v = x[i];
        if (v == v) m = fmaxf(m, v);
    }
    m = block_max(m, red);
    float sum = 0.f;
    for (int i = tid; i < V; i += nt) {
        float v = x[i];
        if (v == v) sum += expf(v - m);
    }
    sum = block_sum(sum, red);
    if (tid == 0) *lse = m + logf(sum);
    // Radix select, most significant byte first: after the four passes,
    // prefix is the K-th largest key and remaining how many entries equal to
    // it are taken.
    uint prefix = 0, mask = 0, remaining = (uint)K;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = tid; b < 256; b += nt) hist[b] = 0;
        __syncthreads();
        for (int i = tid; i < V; i += nt) {
            uint k = sort_key(x[i]);
            if ((k & mask) == prefix) atomicAdd(&hist[(k >> shift) & 255], 1u);
        }
        __syncthreads();
        if (tid == 0) {
            uint cum = 0;
            int b = 255;
            for (; b > 0; b--) {
                if (cum + hist[b] >= remaining) break;
                cum += hist[b];
            }
            s_prefix = prefix | ((uint)b << shift);
            s_remaining = remaining - cum;
        }
        __syncthreads();
        prefix = s_prefix;
        remaining = s_remaining;
        mask |= 255u << shift;
        __syncthreads();
    }
    // Collect: each thread owns a contiguous range, so scans give every
    // entry its slot and ties keep index order.
    int chunk = (V + nt - 1) / nt;
    int lo = min(V, tid * chunk), hi = min(V, lo + chunk);
    uint ngt = 0, neq = 0;
    for (int i = lo; i < hi; i++) {
        uint k = sort_key(x[i]);
        ngt += k > prefix;
        neq += k == prefix;
    }
    uint gt = block_exscan(ngt, scan);
    uint eq = block_exscan(neq, scan);
    uint above = (uint)K - remaining;
    for (int i = lo; i < hi; i++) {
        float v = x[i];
        uint k = sort_key(v);
        if (k > prefix) {
            ids[gt] = i;
            vals[gt] = v;
            gt++;
        } else if (k == prefix) {
            if (eq < remaining) {
                ids[above + eq] = i;
                vals[above + eq] = v;
            }
            eq++;
        }
    }
}
