// sampling.cu — the top candidates of logits rows, for sampling on the device.
//
// Math: topk_f32 finds the K (≤ V) largest logits of a row (ties: lower id
// first) by an 8-bit radix select on order-preserving keys (NaN as −inf),
// and the row's log-sum-exp (NaN skipped).
//
// Layout and launch: a block a row; row b is x + b·x_stride floats and its
// results (ids, vals, lse) are out_stride bytes after row b−1's.
//   grid rows, block TOPK_THREADS (a -D option from Go; the scan needs one
//   shared slot a thread)

#ifndef TOPK_THREADS
#error "TOPK_THREADS is passed by the Go launcher as a -D option (backend/cuda kernelDefines)"
#endif

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
