package backend

// The intermediate tensors a backend hands its DumpFunc, in the order of a
// step, named with llama.cpp's vocabulary so that a run can be diffed
// against a reference layer by layer. Per-layer names get "-<layer>"
// ("attn_norm-3"). Every backend dumps all of them; a backend whose kernels
// fuse two steps reconstructs the tensor in between (the CUDA backend adds
// the output and down projections into the residual stream, and dumps
// attn_out and ffn_out as the differences).
const (
	DumpInpEmbd    = "inp_embd"    // [T, n_embd] token embeddings
	DumpAttnNorm   = "attn_norm"   // [T, n_embd] RMSNorm before attention
	DumpQcur       = "Qcur"        // [T, n_head·hd] Q (bias added, before RoPE)
	DumpKcur       = "Kcur"        // [T, n_kv·hd] K (bias added, before RoPE)
	DumpVcur       = "Vcur"        // [T, n_kv·hd] V (bias added)
	DumpKQVOut     = "kqv_out"     // [T, n_head·hd] attention output, before the output projection
	DumpAttnOut    = "attn_out"    // [T, n_embd] output projection
	DumpFFNInp     = "ffn_inp"     // [T, n_embd] residual after attention
	DumpFFNNorm    = "ffn_norm"    // [T, n_embd] RMSNorm before the FFN
	DumpFFNAct     = "ffn_act"     // [T, n_ff] silu(gate)·up
	DumpFFNOut     = "ffn_out"     // [T, n_embd] down projection
	DumpLOut       = "l_out"       // [T, n_embd] residual after the layer
	DumpResultNorm = "result_norm" // [rows wanted, n_embd] final RMSNorm of the rows whose logits are computed
)

// DumpLayerNames are the per-layer dump names in the order of a layer.
var DumpLayerNames = []string{DumpAttnNorm, DumpQcur, DumpKcur, DumpVcur, DumpKQVOut, DumpAttnOut,
	DumpFFNInp, DumpFFNNorm, DumpFFNAct, DumpFFNOut, DumpLOut}
