// sampling.cu — the top candidates of logits rows, for sampling on the device.
//
// Math: the K (≤ V, ≤ 256) largest logits of a row and the row's
// log-sum-exp (NaN skipped). Entries are ranked by a 64-bit key: the
// order-preserving image of the value (NaN as −inf) above the bit-inverted
// index, so all keys differ and ties go to the lower index. A row is cut
// into S chunks of `chunk` entries (S and chunk depend on V only, never on
// the number of rows: a row's result does not depend on the batch). Stage 1
// finds each chunk's K largest keys (the row's K largest are among them:
// every entry of the row's top K is in its own chunk's top K), the chunk's
// maximum m_c and Σ exp(v − m_c); stage 2 selects the K largest of the S·K
// candidates and combines the chunks' sums in chunk order:
// lse = M + log Σ_c sum_c·exp(m_c − M), M = max m_c. Selection is an
// 8-bit radix select over the key, most significant byte first, which stops
// as soon as the entries sharing the chosen prefix are exactly the ones
// still needed.
//
// With a mask (allow: a bitset a row, allow_stride words apart), entries
// whose bit is clear count as −inf: the top of the masked row and its
// log-sum-exp (a grammar's allowed tokens).
//
// Layout: row b is x + b·x_stride floats. Stage 1 writes K keys a chunk to
// keys[(b·S + c)·K …] (0 past the chunk's length: below every real key) and
// (m_c, sum_c) to stats[2(b·S + c)]. Stage 2 writes row b's ids, values (in
// no order: the host sorts them) and lse out_stride bytes after row b−1's.
//   topk_chunk_f32  grid (S, rows), block 256
//   topk_merge_f32  grid rows, block 1024

// sort_key maps a float to a uint32 whose order is the float order (NaN as -inf).
__device__ __forceinline__ uint sort_key(float v) {
    uint b = __float_as_uint(v);
    if (v != v) b = 0xff800000u;
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

// key_value inverts sort_key (a NaN comes back as −inf).
__device__ __forceinline__ float key_value(uint k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// The shared state of a block's radix select.
struct TopkShared {
    uint hist[256];
    u64 prefix;
    uint remaining, done, count;
    float red[32];
};

// radix_select leaves in *prefix and *mask the selection of the K (≤ n)
// largest of n distinct keys: key i is among them iff (key & mask) ≥ prefix.
// KEY(i) gives key i; every thread of the block calls it.
template <class KEY>
__device__ __forceinline__ void radix_select(const KEY& key, int n, uint K, TopkShared& sh, u64* prefix_out, u64* mask_out) {
    int tid = threadIdx.x, nt = blockDim.x;
    u64 prefix = 0, mask = 0;
    uint remaining = K;
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int b = tid; b < 256; b += nt) sh.hist[b] = 0;
        __syncthreads();
        for (int i = tid; i < n; i += nt) {
            u64 k = key(i);
            if ((k & mask) == prefix) atomicAdd(&sh.hist[(uint)(k >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (tid == 0) {
            uint cum = 0;
            int b = 255;
            for (; b > 0; b--) {
                if (cum + sh.hist[b] >= remaining) break;
                cum += sh.hist[b];
            }
            sh.prefix = prefix | ((u64)b << shift);
            sh.remaining = remaining - cum;
            sh.done = sh.hist[b] == remaining - cum; // every entry with this prefix is taken
        }
        __syncthreads();
        prefix = sh.prefix;
        remaining = sh.remaining;
        mask |= (u64)255 << shift;
        bool done = sh.done != 0;
        __syncthreads();
        if (done) break;
    }
    *prefix_out = prefix;
    *mask_out = mask;
}

// row_value is entry i of a chunk starting at index base: x[i], or −inf
// when a mask (allow: the row's bitset, nullable) refuses its id.
__device__ __forceinline__ float row_value(const float* x, const u64* allow, uint base, int i) {
    uint id = base + (uint)i;
    if (allow && !((allow[id >> 6] >> (id & 63)) & 1ull)) return NEG_INF;
    return x[i];
}

struct RowKey {
    const float* x;   // the chunk's first entry
    const u64* allow; // the row's mask (nullable)
    uint base;        // the chunk's index in the row
    __device__ __forceinline__ u64 operator()(int i) const {
        return ((u64)sort_key(row_value(x, allow, base, i)) << 32) | (u64)(~(base + (uint)i));
    }
};
struct CandKey {
    const u64* k;
    __device__ __forceinline__ u64 operator()(int i) const { return k[i]; }
};

// Stage 1: chunk blockIdx.x of row blockIdx.y.
extern "C" __global__ void topk_chunk_f32(const float* x, int V, int K, int chunk, long x_stride, const u64* allow, long allow_stride,
                                          u64* keys, float* stats) {
    pdl_entry();
    __shared__ TopkShared sh;
    int S = gridDim.x, c = blockIdx.x, row = blockIdx.y;
    int lo = c * chunk, n = min(chunk, V - lo);
    const float* xc = x + row * x_stride + lo;
    const u64* rallow = allow ? allow + row * allow_stride : 0;
    float m = NEG_INF;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = row_value(xc, rallow, (uint)lo, i);
        if (v == v) m = fmaxf(m, v);
    }
    m = block_max(m, sh.red);
    float sum = 0.f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = row_value(xc, rallow, (uint)lo, i);
        if (v == v && v != NEG_INF) sum += expf(v - m);
    }
    sum = block_sum(sum, sh.red);
    long slot0 = ((long)row * S + c) * K;
    if (threadIdx.x == 0) {
        stats[2 * ((long)row * S + c)] = m;
        stats[2 * ((long)row * S + c) + 1] = sum;
        sh.count = 0;
    }
    uint Kc = (uint)min(K, n);
    RowKey key{xc, rallow, (uint)lo};
    u64 prefix, mask;
    radix_select(key, n, Kc, sh, &prefix, &mask);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        u64 k = key(i);
        if ((k & mask) >= prefix) keys[slot0 + atomicAdd(&sh.count, 1u)] = k;
    }
    for (int i = (int)Kc + threadIdx.x; i < K; i += blockDim.x) keys[slot0 + i] = 0;
}

// Stage 2: row blockIdx.x's S·K candidates.
extern "C" __global__ void topk_merge_f32(const u64* keys, const float* stats, int S, int K, int* ids, float* vals, float* lse, long out_stride) {
    pdl_entry();
    __shared__ TopkShared sh;
    int row = blockIdx.x;
    {
        long ob = row * out_stride;
        ids = (int*)((char*)ids + ob);
        vals = (float*)((char*)vals + ob);
        lse = (float*)((char*)lse + ob);
    }
    keys += (long)row * S * K;
    stats += 2L * row * S;
    if (threadIdx.x == 0) {
        float M = NEG_INF;
        for (int c = 0; c < S; c++) M = fmaxf(M, stats[2 * c]);
        float sum = 0.f;
        for (int c = 0; c < S; c++)
            if (stats[2 * c] != NEG_INF) sum += stats[2 * c + 1] * expf(stats[2 * c] - M);
        *lse = M == NEG_INF ? NEG_INF : M + logf(sum);
        sh.count = 0;
    }
    CandKey key{keys};
    u64 prefix, mask;
    radix_select(key, S * K, (uint)K, sh, &prefix, &mask);
    for (int i = threadIdx.x; i < S * K; i += blockDim.x) {
        u64 k = keys[i];
        if ((k & mask) >= prefix) {
            uint s = atomicAdd(&sh.count, 1u);
            ids[s] = (int)~(uint)k;
            vals[s] = key_value((uint)(k >> 32));
        }
    }
}
