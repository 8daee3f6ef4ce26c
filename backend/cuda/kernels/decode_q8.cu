// decode_q8.cu — decode rows of quantized weights as integer dot products:
// activations rounded to 8 bits a 32-element unit, weights read in their
// GGUF blocks, dp4a or the int8 tensor cores (mmq_<t>, mmq1_<t>, mmqt_<t>
// for q4_0 q4_1 q5_0 q5_1 q8_0 q4_k q5_k q6_k; q8_rows).
//
// Math: the product of matrix.cu's MMArgs (up to 3 jobs over the same
// activations, or glu: out = silu(gate·x)·(up·x)), for decode rows.
//  - Activations: unit u of token t (x[t, 32u … 32u+31]) becomes q_i =
//    rn(x_i·(127/amax)) (int8), its scale dx = amax/127 and its integer sum
//    sx = Σ q_i (amax = max |x_i|; all zero when amax is 0), by q8_unit:
//    for one token each mmq1_ block quantizes it into shared memory (no
//    other launch); for more, q8_rows does it once for all (same values).
//  - Weights: unit u of a row is 32 integers w_i (the block's quants, the
//    constant offset of q4_0/q5_0/q6_k taken off in the integers) and the
//    float factors of its block. The exact integer S = Σ w_i·q_i (dp4a)
//    gives the unit's term of out[t, r]:
//      q4_0, q5_0, q8_0: (d·dx)·S                 (w = q−8, q−16, q)
//      q4_1, q5_1:       (d·dx)·S + (m·dx)·sx      (w = q)
//      q4_k, q5_k:       (d·sc·dx)·S + (−dmin·m·dx)·sx
//      q6_k:             (d·dx)·(sc₀·S₀ + sc₁·S₁)   (w = q−32, 16-element halves)
//    each product and fused multiply-add written out in PTX, so that the
//    compiler cannot regroup them.
//  - Order: lane l of a row's warp adds the terms of units l, l+32, l+64, …
//    in order, then the 32 lane sums meet in the warp's butterfly
//    (warp_sum). The order depends on cols alone, so a row's result is the
//    same whatever T, the block's tokens or the token's place among them
//    (mmq1_ and mmq_ run the same instructions for each output; mmqt_
//    gets the same sums on the tensor cores: see there).
//
// Layout: W rows in their GGUF encoding (quant.cuh), x [T, cols] and out
// [T, rows] float32 (MMArgs). Shared memory of an mmq1_ block: the
// token's quantized units, qs[h][u] (16-byte halves h = 0, 1 of unit u:
// lanes on consecutive units read consecutive 16 bytes), then xd[u] =
// (dx, sx).
//
// Launch: a warp takes 2 rows (of all jobs together; with glu a gate row
// and its up row), a block MMQ_WARPS = 8 warps; MMQ_WARPS, MMQ_TOK and
// MMQT_TOK are -D options from Go (mmqt_ and q8_rows: below):
//   mmq1_<t>  one token             grid (ceil(rows/16), 1), block 256, shared 40·cols/32 bytes
//   mmq1p_<t> one token, from q8_rows' layout (rms_norm_f32 writes it: WORKER_CUDA_NORM_Q8=1)
//                                   grid (ceil(rows/16), 1), block 256
//   mmq_<t>   MMQ_TOK (8) tokens a block, from q8_rows   grid (ceil(rows/16), ceil(T/8)), block 256
//   (with glu ceil(rows/8) row blocks)
//
// Preconditions (checked in Go): cols % 32 == 0, rows aligned as quant.cuh
// wants for the unit functions, sm_61+ (dp4a).

#ifndef MMQ_WARPS
#error "MMQ_WARPS is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif
#ifndef MMQ_TOK
#error "MMQ_TOK is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif
#ifndef MMQT_TOK
#error "MMQT_TOK is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif

__device__ __forceinline__ int dp4a(uint a, uint b, int c) {
    int d;
    asm("{ dp4a.s32.s32 %0, %1, %2, %3; }" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}
// Rounded float operations the compiler may not contract or regroup.
__device__ __forceinline__ float mul_rn(float a, float b) {
    float d;
    asm("{ mul.rn.f32 %0, %1, %2; }" : "=f"(d) : "f"(a), "f"(b));
    return d;
}
__device__ __forceinline__ float fma_rn(float a, float b, float c) {
    float d;
    asm("{ fma.rn.f32 %0, %1, %2, %3; }" : "=f"(d) : "f"(a), "f"(b), "f"(c));
    return d;
}
__device__ __forceinline__ float div_rn(float a, float b) {
    float d;
    asm("{ div.rn.f32 %0, %1, %2; }" : "=f"(d) : "f"(a), "f"(b));
    return d;
}
__device__ __forceinline__ int f2i_rn(float a) {
    int d;
    asm("{ cvt.rni.s32.f32 %0, %1; }" : "=r"(d) : "f"(a));
    return d;
}
__device__ __forceinline__ float i2f(int a) {
    float d;
    asm("{ cvt.rn.f32.s32 %0, %1; }" : "=f"(d) : "r"(a));
    return d;
}

// Byte-wise v − k for bytes 0 ≤ v < 128 + k (k < 128 in each byte): the
// signed int8 results, no borrow between bytes.
__device__ __forceinline__ uint sub_bytes(uint v, uint k) { return ((v | 0x80808080u) - k) ^ 0x80808080u; }
// Bits 0..3 of b moved to bit 4 of bytes 0..3.
__device__ __forceinline__ uint spread_bit4(uint b) {
    return ((b & 1u) << 4) | ((b & 2u) << 11) | ((b & 4u) << 18) | ((b & 8u) << 25);
}

// A weight unit: 32 integers as int8 in 8 words (byte i of word k is
// element 4k+i), the block's factor a (and b, the per-element constant, for
// types with a min), and for q6_k the two halves' scales.
struct QW {
    uint w[8];
    float a, b;
    int s0, s1;
};

// Per type (W_<t>): load(row, u, w) fills a unit; MIN says the term has a (b·dx)·sx
// part; HALVES that S is sc₀·S₀ + sc₁·S₁ (q6_k).
struct W_q4_0 {
    static const bool MIN = false, HALVES = false;
    static __device__ __forceinline__ void load(const uchar* row, int u, QW& q) {
        const uchar* b = row + 18 * u;
        uint x[4];
        ld_words<4>(b + 2, x);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            q.w[k] = sub_bytes(x[k] & 0x0f0f0f0fu, 0x08080808u);
            q.w[k + 4] = sub_bytes((x[k] >> 4) & 0x0f0f0f0fu, 0x08080808u);
        }
        q.a = ld_h(b);
    }
};
struct W_q4_1 {
    static const bool MIN = true, HALVES = false;
    static __device__ __forceinline__ void load(const uchar* row, int u, QW& q) {
        const uchar* b = row + 20 * u;
        uint x[4];
        ld_words<4>(b + 4, x);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            q.w[k] = x[k] & 0x0f0f0f0fu;
            q.w[k + 4] = (x[k] >> 4) & 0x0f0f0f0fu;
        }
        q.a = ld_h(b);
        q.b = ld_h(b + 2);
    }
};
struct W_q5_0 {
    static const bool MIN = false, HALVES = false;
    static __device__ __forceinline__ void load(const uchar* row, int u, QW& q) {
        const uchar* b = row + 22 * u;
        uint x[5]; // qh, then the 16 quant bytes
        ld_words<5>(b + 2, x);
        uint qh = x[0];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            q.w[k] = sub_bytes((x[1 + k] & 0x0f0f0f0fu) | spread_bit4((qh >> (4 * k)) & 15u), 0x10101010u);
            q.w[k + 4] = sub_bytes(((x[1 + k] >> 4) & 0x0f0f0f0fu) | spread_bit4((qh >> (16 + 4 * k)) & 15u), 0x10101010u);
        }
        q.a = ld_h(b);
    }
};
struct W_q5_1 {
    static const bool MIN = true, HALVES = false;
    static __device__ __forceinline__ void load(const uchar* row, int u, QW& q) {
        const uchar* b = row + 24 * u;
        uint x[5]; // qh, then the 16 quant bytes
        ld_words<5>(b + 4, x);
        uint qh = x[0];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            q.w[k] = (x[1 + k] & 0x0f0f0f0fu) | spread_bit4((qh >> (4 * k)) & 15u);
            q.w[k + 4] = ((x[1 + k] >> 4) & 0x0f0f0f0fu) | spread_bit4((qh >> (16 + 4 * k)) & 15u);
        }
        q.a = ld_h(b);
        q.b = ld_h(b + 2);
    }
};
struct W_q8_0 {
    static const bool MIN = false, HALVES = false;
    static __device__ __forceinline__ void load(const uchar* row, int u, QW& q) {
        const uchar* b = row + 34 * u;
        ld_words<8>(b + 2, q.w);
        q.a = ld_h(b);
    }
};
// q4_k/q5_k: the unit's scale and min folded into a and b.
__device__ __forceinline__ void k_factors(const uchar* b, int j, QW& q) {
    int sc, m;
    scale_min_k4(j, b + 4, &sc, &m);
    q.a = mul_rn(ld_h(b), i2f(sc));
    q.b = -mul_rn(ld_h(b + 2), i2f(m));
}
struct W_q4_k {
    static const bool MIN = true, HALVES = false;
    static __device__ __forceinline__ void load(const uchar* row, int u, QW& q) {
        const uchar* b = row + 144 * (u >> 3);
        int j = u & 7, g = j >> 1, hi = j & 1;
        const u4* p = (const u4*)(b + 16 + 32 * g);
        u4 v0 = p[0], v1 = p[1];
        uint a[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
#pragma unroll
        for (int k = 0; k < 8; k++) q.w[k] = (a[k] >> (4 * hi)) & 0x0f0f0f0fu;
        k_factors(b, j, q);
    }
};
struct W_q5_k {
    static const bool MIN = true, HALVES = false;
    static __device__ __forceinline__ void load(const uchar* row, int u, QW& q) {
        const uchar* b = row + 176 * (u >> 3);
        int j = u & 7, g = j >> 1, hi = j & 1;
        const u4* p = (const u4*)(b + 48 + 32 * g);
        const u4* h = (const u4*)(b + 16);
        u4 v0 = p[0], v1 = p[1], h0 = h[0], h1 = h[1];
        uint a[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
        uint c[8] = {h0.x, h0.y, h0.z, h0.w, h1.x, h1.y, h1.z, h1.w};
#pragma unroll
        for (int k = 0; k < 8; k++) q.w[k] = ((a[k] >> (4 * hi)) & 0x0f0f0f0fu) | (((c[k] >> j) & 0x01010101u) << 4);
        k_factors(b, j, q);
    }
};
struct W_q6_k {
    static const bool MIN = false, HALVES = true;
    static __device__ __forceinline__ void load(const uchar* row, int u, QW& q) {
        const uchar* b = row + 210 * (u >> 3);
        int j = u & 7, n = j >> 2, quarter = j & 3;
        uint ql[8], qh[8];
        ld_words<8>(b + 64 * n + (quarter & 1) * 32, ql);
        ld_words<8>(b + 128 + 32 * n, qh);
        int lshift = (quarter >> 1) * 4, hshift = 2 * quarter;
#pragma unroll
        for (int k = 0; k < 8; k++)
            q.w[k] = sub_bytes(((ql[k] >> lshift) & 0x0f0f0f0fu) | (((qh[k] >> hshift) & 0x03030303u) << 4), 0x20202020u);
        ushort scs = *(const ushort*)(b + 192 + 8 * n + 2 * quarter);
        q.s0 = (int)(signed char)(scs & 0xff);
        q.s1 = (int)(signed char)(scs >> 8);
        q.a = ld_h(b + 208);
    }
};

// acc + the term of weight unit q with integer sum s (sc₀·S₀ + sc₁·S₁ for
// q6_k) and an activation unit of scale dx and sum sx: the float part of
// every kernel here, the same instructions in each.
template <class Q>
__device__ __forceinline__ float mmq_apply(const QW& q, int s, float dx, int sx, float acc) {
    acc = fma_rn(mul_rn(q.a, dx), i2f(s), acc);
    if (Q::MIN) acc = fma_rn(mul_rn(q.b, dx), i2f(sx), acc);
    return acc;
}

// acc + the term of weight unit q and activation unit x (8 words), dx, sx.
template <class Q>
__device__ __forceinline__ float mmq_term(const QW& q, const uint* x, float dx, int sx, float acc) {
    int s;
    if (Q::HALVES) {
        int s0 = 0, s1 = 0;
#pragma unroll
        for (int k = 0; k < 4; k++) { s0 = dp4a(q.w[k], x[k], s0); s1 = dp4a(q.w[k + 4], x[k + 4], s1); }
        s = q.s0 * s0 + q.s1 * s1;
    } else {
        s = 0;
#pragma unroll
        for (int k = 0; k < 8; k++) s = dp4a(q.w[k], x[k], s);
    }
    return mmq_apply<Q>(q, s, dx, sx, acc);
}

// A quantized activation unit's scale and integer sum.
struct alignas(8) Q8Scale {
    float dx;
    int sx;
};

// Quantizes 32 floats at xr (16-byte aligned) into two 16-byte halves of
// int8, the scale and the sum.
__device__ __forceinline__ void q8_unit(const float* xr, u4* h0, u4* h1, float* dx, int* sx) {
    float v[32];
#pragma unroll
    for (int k = 0; k < 8; k++) {
        f4 f = ((const f4*)xr)[k];
        v[4*k] = f.x; v[4*k+1] = f.y; v[4*k+2] = f.z; v[4*k+3] = f.w;
    }
    float amax = 0.f;
#pragma unroll
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fmaxf(v[i], -v[i]));
    float inv = amax > 0.f ? div_rn(127.f, amax) : 0.f;
    uint w[8];
    int sum = 0;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        uint word = 0;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int qv = f2i_rn(mul_rn(v[4*k+i], inv));
            sum += qv;
            word |= ((uint)qv & 0xffu) << (8 * i);
        }
        w[k] = word;
    }
    *h0 = u4{w[0], w[1], w[2], w[3]};
    *h1 = u4{w[4], w[5], w[6], w[7]};
    *dx = div_rn(amax, 127.f);
    *sx = sum;
}

// Row r (0 or 1) of warp w's pair: its job and row within it, or -1.
__device__ __forceinline__ int mmq_row(const MMArgs& a, int w, int r, int* row) {
    if (a.glu) {
        if (w >= a.job[0].rows) return -1;
        *row = w;
        return r; // gate (job 0), up (job 1)
    }
    int total = a.job[0].rows + (a.njobs > 1 ? a.job[1].rows : 0) + (a.njobs > 2 ? a.job[2].rows : 0);
    int rr = 2 * w + r;
    if (rr >= total) return -1;
    int j = find_job(a, &rr);
    *row = rr;
    return j;
}

// PRE: the activations come quantized by q8_rows (xq, xs: see mmqt_
// below), else the block quantizes its tokens into shared memory first.
template <class Q, int NT, bool PRE>
__device__ __forceinline__ void mmq_kernel(const MMArgs& a, const u4* xq, const Q8Scale* xs) {
    extern __shared__ u4 mmq_smem[];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int units = a.cols >> 5;
    int t0 = blockIdx.y * NT;
    int nt = min(NT, a.T - t0);
    u4* qs = mmq_smem;                     // [NT][2][units]
    Q8Scale* xd = (Q8Scale*)(qs + 2 * NT * units); // [NT][units]
    if (!PRE) {
        for (int i = threadIdx.x; i < nt * units; i += blockDim.x) {
            int t = i / units, u = i - t * units;
            float dx;
            int sx;
            q8_unit(a.x + (long)(t0 + t) * a.cols + 32 * u, &qs[(2 * t) * units + u], &qs[(2 * t + 1) * units + u], &dx, &sx);
            xd[t * units + u] = Q8Scale{dx, sx};
        }
        __syncthreads();
    }
    int w = blockIdx.x * MMQ_WARPS + warp;
    int row0, row1;
    int j0 = mmq_row(a, w, 0, &row0), j1 = mmq_row(a, w, 1, &row1);
    if (j0 < 0) return;
    const uchar* p0 = a.job[j0].W + (long)row0 * a.job[j0].row_bytes;
    const uchar* p1 = j1 >= 0 ? a.job[j1].W + (long)row1 * a.job[j1].row_bytes : 0;
    float acc0[NT], acc1[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) acc0[t] = acc1[t] = 0.f;
    QW w0, w1, n0, n1;
    if (lane < units) {
        Q::load(p0, lane, w0);
        if (p1) Q::load(p1, lane, w1);
    }
    for (int u = lane; u < units; u += 32) {
        // The next unit's weights are asked for before this one's sums.
        if (u + 32 < units) {
            Q::load(p0, u + 32, n0);
            if (p1) Q::load(p1, u + 32, n1);
        }
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t < nt) {
                uint x[8];
                Q8Scale s;
                if (PRE) { // words in q8_rows' order 0 4 1 5 2 6 3 7
                    const u4* p = xq + 2 * ((long)(t0 + t) * units + u);
                    u4 h0 = p[0], h1 = p[1];
                    x[0] = h0.x; x[1] = h0.z; x[2] = h1.x; x[3] = h1.z; x[4] = h0.y; x[5] = h0.w; x[6] = h1.y; x[7] = h1.w;
                    s = xs[(long)u * a.T + t0 + t];
                } else {
                    u4 h0 = qs[(2 * t) * units + u], h1 = qs[(2 * t + 1) * units + u];
                    x[0] = h0.x; x[1] = h0.y; x[2] = h0.z; x[3] = h0.w; x[4] = h1.x; x[5] = h1.y; x[6] = h1.z; x[7] = h1.w;
                    s = xd[t * units + u];
                }
                acc0[t] = mmq_term<Q>(w0, x, s.dx, s.sx, acc0[t]);
                if (p1) acc1[t] = mmq_term<Q>(w1, x, s.dx, s.sx, acc1[t]);
            }
        }
        w0 = n0;
        w1 = n1;
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        if (t < nt) {
            float v0 = warp_sum(acc0[t]), v1 = warp_sum(acc1[t]);
            if (lane == t) {
                if (a.glu) {
                    float v = silu(v0) * v1;
                    a.job[0].out[(long)(t0 + t) * a.job[0].rows + row0] = v;
                    if (a.out16) a.out16[(long)(t0 + t) * a.job[0].rows + row0] = f2h(v);
                } else {
                    mm_store(a.job[j0], row0, t0 + t, v0);
                    if (j1 >= 0) mm_store(a.job[j1], row1, t0 + t, v1);
                }
            }
        }
    }
}

// ---- many decode rows: the same sums on the int8 tensor cores ----
//
// mmqt_<t> computes exactly what mmq_ computes, for batches of mmqtMin
// rows or more (backend/cuda decode_q8.go): the activations are quantized once by q8_rows (q8_unit,
// the same values) and each unit's integer sum S comes from the tensor
// cores (mma.m16n8k32 s8·s8 → s32, one unit a k step, exact; q6_k two
// m16n8k16, one a half), then mmq_apply gives the same float term. The
// lane order of mmq_ is kept: class l (units l, l+32, …) is one chain of
// terms in unit order, and the 32 class sums meet in warp_sum's butterfly
// tree: V₁(i) = P_i + P_{i+16}, V₂(i) = V₁(i) + V₁(i+8) (i < 8), V₃(i) =
// V₂(i) + V₂(i+4), V₄(i) = V₃(i) + V₃(i+2), out = V₄(0) + V₄(1). Warp w of
// a block computes V₂(w) (classes w, w+16, w+8, w+24) for a tile of 16
// weight rows (glu: 8 gate rows and their up rows, as mmt_) × MMQT_TOK
// tokens; the block adds the eight V₂ through shared memory.
//
// Fragments (thread g = lane/4, c = lane%4): A words c and c+4 of the
// units of rows g and g+8 (QW word k = elements 4k … 4k+3), B words c and
// c+4 of token g's unit (q8_rows stores a unit's words in the order 0 4 1
// 5 2 6 3 7, so the two are one 8-byte load), C rows g, g+8 × tokens 2c,
// 2c+1, with (dx, sx) of those two tokens one 16-byte load (xs is [unit][T]).
//   q8_rows   grid ceil(T·units/256), block 256
//   mmqt_<t>  grid (ceil(rows/16), ceil(T/MMQT_TOK)), with glu ceil(rows/8) row tiles, block 256

// q8_rows: x [T, cols] → xq (unit u of token t at xq[2(t·units + u)], 32
// bytes, words in the order 0 4 1 5 2 6 3 7) and xs[u·T + t] = (dx, sx).
extern "C" __global__ void q8_rows(const float* x, int T, int cols, u4* xq, Q8Scale* xs) {
    pdl_entry();
    int units = cols >> 5;
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)T * units) return;
    int t = (int)(i / units), u = (int)(i - (long)t * units);
    u4 h0, h1;
    float dx;
    int sx;
    q8_unit(x + (long)t * cols + 32 * u, &h0, &h1, &dx, &sx);
    xq[2 * i] = u4{h0.x, h1.x, h0.y, h1.y};
    xq[2 * i + 1] = u4{h0.z, h1.z, h0.w, h1.w};
    xs[(long)u * T + t] = Q8Scale{dx, sx};
}

// d = A·B for one m16n8k32 s8 tile (s32 result, exact).
__device__ __forceinline__ void mma_s8_k32(int* d, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1) {
#if __CUDA_ARCH__ >= 800
    asm volatile("{ mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10}; }"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0));
#endif
}
// d = A·B for one m16n8k16 s8 tile.
__device__ __forceinline__ void mma_s8_k16(int* d, uint a0, uint a1, uint b0) {
#if __CUDA_ARCH__ >= 800
    asm volatile("{ mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%7,%7,%7}; }"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(a0), "r"(a1), "r"(b0), "r"(0));
#endif
}

#define MMQT_NT (MMQT_TOK / 8)

// The class of step k (0..3) of warp w: w, w+16, w+8, w+24.
__device__ __forceinline__ int mmqt_class(int w, int k) { return w + (k == 1 ? 16 : k == 2 ? 8 : k == 3 ? 24 : 0); }

// Ends class step k: its chain cur goes into V₁(w) (k 0: set, 1: add) or
// V₁(w+8) (2, 3), and cur starts again from zero.
__device__ __forceinline__ void mmqt_fold(int k, float (&cur)[MMQT_NT][4], float (&v1)[MMQT_NT][4], float (&v2)[MMQT_NT][4]) {
#pragma unroll
    for (int n = 0; n < MMQT_NT; n++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            if (k == 0) v1[n][e] = cur[n][e];
            else if (k == 1) v1[n][e] = v1[n][e] + cur[n][e];
            else if (k == 2) v2[n][e] = cur[n][e];
            else v2[n][e] = v2[n][e] + cur[n][e];
            cur[n][e] = 0.f;
        }
    }
}

// Moves (k, u) past empty classes (u ≥ units), folding their zero chains.
__device__ __forceinline__ void mmqt_skip_empty(int& k, int& u, int units, int w, float (&cur)[MMQT_NT][4], float (&v1)[MMQT_NT][4], float (&v2)[MMQT_NT][4]) {
    while (k < 4 && u >= units) {
        mmqt_fold(k, cur, v1, v2);
        k++;
        u = mmqt_class(w, k);
    }
}

// Word c (0..3) of w, by selects (a register array indexed by a lane's
// value would go to local memory).
__device__ __forceinline__ uint pick4(const uint* w, int c) { return c == 0 ? w[0] : c == 1 ? w[1] : c == 2 ? w[2] : w[3]; }

// Unit u of rows pa and pb (zeros for a missing row).
template <class Q>
__device__ __forceinline__ void mmqt_load(const uchar* pa, const uchar* pb, int u, QW& wa, QW& wb) {
    if (pa) Q::load(pa, u, wa);
    else {
#pragma unroll
        for (int i = 0; i < 8; i++) wa.w[i] = 0u;
        wa.a = wa.b = 0.f;
        wa.s0 = wa.s1 = 0;
    }
    if (pb) Q::load(pb, u, wb);
    else {
#pragma unroll
        for (int i = 0; i < 8; i++) wb.w[i] = 0u;
        wb.a = wb.b = 0.f;
        wb.s0 = wb.s1 = 0;
    }
}

template <class Q>
__device__ __forceinline__ void mmqt_kernel(const MMArgs& a, const u4* xq, const Q8Scale* xs) {
    __shared__ float red[MMQ_WARPS][MMQT_NT][4][32]; // V₂ of each warp
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int g = lane >> 2, c = lane & 3;
    int tile = blockIdx.x;
    int t0 = blockIdx.y * MMQT_TOK;
    int nt = min(MMQT_TOK, a.T - t0);
    int units = a.cols >> 5;
    int rowa, rowb;
    int ja = mmt_row(a, tile, g, &rowa), jb = mmt_row(a, tile, g + 8, &rowb);
    const uchar* pa = ja >= 0 ? a.job[ja].W + (long)rowa * a.job[ja].row_bytes : 0;
    const uchar* pb = jb >= 0 ? a.job[jb].W + (long)rowb * a.job[jb].row_bytes : 0;
    float v1[MMQT_NT][4], v2[MMQT_NT][4], cur[MMQT_NT][4];
#pragma unroll
    for (int n = 0; n < MMQT_NT; n++) {
#pragma unroll
        for (int e = 0; e < 4; e++) v1[n][e] = v2[n][e] = cur[n][e] = 0.f;
    }
    // The warp walks its units class by class (k = 0..3: classes w, w+16,
    // w+8, w+24, the tree's leaf order), loading each unit's weights one
    // step ahead; a class's chain ends in cur, then is folded into V₁(w)
    // (k 0, 1) or V₁(w+8) (k 2, 3). Empty classes fold zeros, as their
    // lanes add zeros in mmq_.
    int k = 0, u = warp;
    QW wa, wb, na, nb;
    mmqt_skip_empty(k, u, units, warp, cur, v1, v2);
    if (k < 4) mmqt_load<Q>(pa, pb, u, wa, wb);
    while (k < 4) {
        int nk = k, nu = u + 32;
        if (nu >= units) {
            nk = k + 1;
            nu = mmqt_class(warp, nk);
            while (nk < 4 && nu >= units) { nk++; nu = mmqt_class(warp, nk); }
        }
        if (nk < 4) mmqt_load<Q>(pa, pb, nu, na, nb);
        uint a0 = pick4(wa.w, c), a1 = pick4(wb.w, c), a2 = pick4(wa.w + 4, c), a3 = pick4(wb.w + 4, c);
#pragma unroll
        for (int n = 0; n < MMQT_NT; n++) {
            if (8 * n < nt) {
                int tb = 8 * n + g; // this thread's B token
                u2 bx = tb < nt ? ((const u2*)(xq + 2 * ((long)(t0 + tb) * units + u)))[c] : u2{0u, 0u};
                int tc = 8 * n + 2 * c; // its C tokens tc, tc+1
                Q8Scale s0 = tc < nt ? xs[(long)u * a.T + t0 + tc] : Q8Scale{0.f, 0};
                Q8Scale s1 = tc + 1 < nt ? xs[(long)u * a.T + t0 + tc + 1] : Q8Scale{0.f, 0};
                int S[4];
                if (Q::HALVES) {
                    int h0[4], h1[4];
                    mma_s8_k16(h0, a0, a1, bx.x);
                    mma_s8_k16(h1, a2, a3, bx.y);
                    S[0] = wa.s0 * h0[0] + wa.s1 * h1[0];
                    S[1] = wa.s0 * h0[1] + wa.s1 * h1[1];
                    S[2] = wb.s0 * h0[2] + wb.s1 * h1[2];
                    S[3] = wb.s0 * h0[3] + wb.s1 * h1[3];
                } else {
                    mma_s8_k32(S, a0, a1, a2, a3, bx.x, bx.y);
                }
                cur[n][0] = mmq_apply<Q>(wa, S[0], s0.dx, s0.sx, cur[n][0]);
                cur[n][1] = mmq_apply<Q>(wa, S[1], s1.dx, s1.sx, cur[n][1]);
                cur[n][2] = mmq_apply<Q>(wb, S[2], s0.dx, s0.sx, cur[n][2]);
                cur[n][3] = mmq_apply<Q>(wb, S[3], s1.dx, s1.sx, cur[n][3]);
            }
        }
        // Fold the classes this unit ends: its own, then any empty ones
        // before the next unit's.
        for (int kk = k; kk < nk; kk++) mmqt_fold(kk, cur, v1, v2);
        k = nk;
        u = nu;
        wa = na;
        wb = nb;
    }
#pragma unroll
    for (int n = 0; n < MMQT_NT; n++) {
#pragma unroll
        for (int e = 0; e < 4; e++) red[warp][n][e][lane] = v1[n][e] + v2[n][e]; // V₂(w)
    }
    __syncthreads();
    // Item (token t, tile row r): consecutive threads take consecutive rows
    // of one token. Row r is C row r&7 of lane 4(r&7) + (t%8)/2, element
    // (t&1) + 2·(r≥8); with glu, r < 8 and the up row is element +2.
    int rpt = a.glu ? 8 : 16;
    for (int i = threadIdx.x; i < rpt * nt; i += blockDim.x) {
        int t = i / rpt, r = i % rpt;
        int n = t >> 3, l = 4 * (r & 7) + ((t & 7) >> 1), e = (t & 1) + (r >= 8 ? 2 : 0);
        float va, vb = 0.f;
        {
            float v3_0 = red[0][n][e][l] + red[4][n][e][l], v3_1 = red[1][n][e][l] + red[5][n][e][l];
            float v3_2 = red[2][n][e][l] + red[6][n][e][l], v3_3 = red[3][n][e][l] + red[7][n][e][l];
            va = (v3_0 + v3_2) + (v3_1 + v3_3);
        }
        if (a.glu) {
            int f = e + 2;
            float v3_0 = red[0][n][f][l] + red[4][n][f][l], v3_1 = red[1][n][f][l] + red[5][n][f][l];
            float v3_2 = red[2][n][f][l] + red[6][n][f][l], v3_3 = red[3][n][f][l] + red[7][n][f][l];
            vb = (v3_0 + v3_2) + (v3_1 + v3_3);
        }
        int row;
        int j = mmt_row(a, tile, r, &row);
        if (j < 0) continue;
        if (a.glu) {
            float v = silu(va) * vb;
            a.job[0].out[(long)(t0 + t) * a.job[0].rows + row] = v;
            if (a.out16) a.out16[(long)(t0 + t) * a.job[0].rows + row] = f2h(v);
        } else mm_store(a.job[j], row, t0 + t, va);
    }
}

#define INSTANTIATE_MMQ(NAME) \
    extern "C" __global__ void __launch_bounds__(256) mmq_##NAME(MMArgs a, const u4* xq, const Q8Scale* xs) { pdl_entry(); mmq_kernel<W_##NAME, MMQ_TOK, true>(a, xq, xs); } \
    extern "C" __global__ void __launch_bounds__(256) mmq1_##NAME(MMArgs a) { pdl_entry(); mmq_kernel<W_##NAME, 1, false>(a, 0, 0); } \
    extern "C" __global__ void __launch_bounds__(256) mmq1p_##NAME(MMArgs a, const u4* xq, const Q8Scale* xs) { pdl_entry(); mmq_kernel<W_##NAME, 1, true>(a, xq, xs); } \
    extern "C" __global__ void __launch_bounds__(256) mmqt_##NAME(MMArgs a, const u4* xq, const Q8Scale* xs) { pdl_entry(); mmqt_kernel<W_##NAME>(a, xq, xs); }

INSTANTIATE_MMQ(q4_0)
INSTANTIATE_MMQ(q4_1)
INSTANTIATE_MMQ(q5_0)
INSTANTIATE_MMQ(q5_1)
INSTANTIATE_MMQ(q8_0)
INSTANTIATE_MMQ(q4_k)
INSTANTIATE_MMQ(q5_k)
INSTANTIATE_MMQ(q6_k)
