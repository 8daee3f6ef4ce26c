// norm.cu — RMS norm, RoPE with the KV cache store, SwiGLU.
//
// Math and launch shapes:
//   rms_norm_f32     out[t] = x[t] / sqrt(mean(x[t]²) + eps) ⊙ w, and an F16
//                    copy in out16 when set, and out rounded to 8 bits as
//                    q8_rows writes it (xq, xs; decode_q8.cu) when xq is set
//                    (n a multiple of 32 then)                    grid T, block 1024
//   swiglu_f32       g[i] = silu(g[i])·u[i] (and g16[i] = F16 of it when set),
//                    when gate and up differ in type             grid ceil(n/256), block 256
//   rope_store_<kv>  rotate q in place and k by pos[t]·inv_freq[i] (the first
//                    rot elements of each head: NeoX pairs (i, i+rot/2), else
//                    (2i, 2i+1)), then store k and v at position pos[t] of row
//                    t's cache (KV elements float32 or F16)      grid T, block 1024
//
// Layout: x, out, q [T, n_head·hd], k, v [T, n_kv·hd] float32; w [n];
// inv_freq double [rot/2]; tabs [T] device pointers to each row's block
// table (the paged cache: common.cuh), layer the layer stored; pos int [T].
//
// Preconditions (checked in Go): n % 4 == 0 (16-byte loads); rot even and
// ≤ hd; n_kv divides n_head.

// q8_piece: thread's float4 i (of a row t of T) rounded as q8_unit rounds
// its unit (the unit's 8 float4s are 8 consecutive lanes, all present):
// the unit's largest magnitude and integer sum over the 8 lanes, its byte
// word at q8_rows' place in xq, its scale and sum in xs[u·T + t].
__device__ __forceinline__ void q8_piece(f4 r, int i, int t, int T, int units, u4* xq, Q8Scale* xs) {
    int lane = threadIdx.x & 31;
    uint group = 0xffu << (lane & ~7);
    float amax = fmaxf(fmaxf(fmaxf(r.x, -r.x), fmaxf(r.y, -r.y)), fmaxf(fmaxf(r.z, -r.z), fmaxf(r.w, -r.w)));
    for (int o = 1; o < 8; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(group, amax, o));
    float inv = amax > 0.f ? div_rn(127.f, amax) : 0.f;
    int q0 = f2i_rn(mul_rn(r.x, inv)), q1 = f2i_rn(mul_rn(r.y, inv)), q2 = f2i_rn(mul_rn(r.z, inv)), q3 = f2i_rn(mul_rn(r.w, inv));
    uint word = ((uint)q0 & 0xffu) | (((uint)q1 & 0xffu) << 8) | (((uint)q2 & 0xffu) << 16) | (((uint)q3 & 0xffu) << 24);
    int sum = q0 + q1 + q2 + q3;
    for (int o = 1; o < 8; o <<= 1) sum += __shfl_xor_sync(group, sum, o);
    int k = i & 7, u = i >> 3;
    ((uint*)(xq + 2 * ((long)t * units + u)))[k < 4 ? 2 * k : 2 * (k - 4) + 1] = word;
    if (k == 0) xs[(long)u * T + t] = Q8Scale{div_rn(amax, 127.f), sum};
}

extern "C" __global__ void rms_norm_f32(const float* x, const float* w, float* out, int n, float eps, ushort* out16, u4* xq, Q8Scale* xs) {
    pdl_entry();
    // n is a multiple of 4: 16-byte loads, one or a few per thread.
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
        if (xq) q8_piece(r, i, blockIdx.x, gridDim.x, n >> 5, xq, xs); // n4 is a multiple of 8: a unit's lanes all here
    }
}

extern "C" __global__ void swiglu_f32(float* g, const float* u, int total, ushort* g16) {
    pdl_entry();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) {
        float v = g[i];
        v = v / (1.f + expf(-v)) * u[i];
        g[i] = v;
        if (g16) g16[i] = f2h(v);
    }
}

// rope_store_<kv>: rotates q (in place) and k, and writes k and v into each
// row's cache (elements KT) at its position.                   grid T, block 1024
template <typename KT>
__device__ __forceinline__ void rope_store(float* q, const float* k, const float* v, const u64* tabs, int layer,
                                           const int* pos, const double* inv_freq, int n_head, int n_kv, int hd, int rot, int neox) {
    int t = blockIdx.x;
    int half = rot / 2;
    int kvd = n_kv * hd;
    double p = (double)pos[t];
    float* qr = q + (long)t * n_head * hd;
    const float* kr = k + (long)t * kvd;
    const u64* tab = (const u64*)tabs[t];
    KT* K = kv_row<KT>(tab, kv_layer(tab, layer), kvd, pos[t]);
    KT* V = K + KV_BLOCK * kvd;
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
extern "C" __global__ void rope_store_f32(float* q, const float* k, const float* v, const u64* tabs, int layer,
                                          const int* pos, const double* inv_freq, int n_head, int n_kv, int hd, int rot, int neox) {
    pdl_entry();
    rope_store<float>(q, k, v, tabs, layer, pos, inv_freq, n_head, n_kv, hd, rot, neox);
}
extern "C" __global__ void rope_store_f16(float* q, const float* k, const float* v, const u64* tabs, int layer,
                                          const int* pos, const double* inv_freq, int n_head, int n_kv, int hd, int rot, int neox) {
    pdl_entry();
    rope_store<ushort>(q, k, v, tabs, layer, pos, inv_freq, n_head, n_kv, hd, rot, neox);
}
