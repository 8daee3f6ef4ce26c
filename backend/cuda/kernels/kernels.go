// Package kernels holds the CUDA C sources of the GPU backend, embedded in
// the binary and compiled at run time by NVRTC, one file a kernel family,
// each beginning with a comment giving its math, memory layout and launch
// shapes:
//
//	common.cuh    types and helpers shared by all (F16 conversion, reductions)
//	quant.cuh     dequantization of the GGUF block formats
//	matrix.cu     embedding and matrix products (mmu_, mme_, mmt_, cuBLAS helpers)
//	decode_q8.cu  decode rows of quantized weights as 8-bit integer dot products (mmq_)
//	norm.cu       RMS norm, RoPE with the KV cache store, SwiGLU
//	attention.cu  attention split over the positions, and the merge
//	sampling.cu   top-k and log-sum-exp of logits rows
//
// The Go launchers of each family are in backend/cuda (matrix.go, decode_q8.go, norm.go,
// attention.go, sampling.go).
package kernels

import (
	"embed"
	"strings"
)

//go:embed *.cuh *.cu
var fsys embed.FS

// File is one source file.
type File struct {
	Name string
	Text string
}

// order is the order of the files in the translation unit: helpers before
// their users.
var order = []string{"common.cuh", "quant.cuh", "matrix.cu", "decode_q8.cu", "norm.cu", "attention.cu", "sampling.cu"}

// Files returns every source file, in translation-unit order.
func Files() []File {
	fs := make([]File, len(order))
	for i, name := range order {
		b, err := fsys.ReadFile(name)
		if err != nil {
			panic("kernels: " + name + " not embedded: " + err.Error()) // a build error, not a run-time one
		}
		fs[i] = File{Name: name, Text: string(b)}
	}
	return fs
}

// Join makes one translation unit of files: each after a #line directive,
// so that NVRTC's messages name the file and line.
func Join(files []File) string {
	var sb strings.Builder
	for _, f := range files {
		sb.WriteString("#line 1 \"" + f.Name + "\"\n")
		sb.WriteString(f.Text)
		if !strings.HasSuffix(f.Text, "\n") {
			sb.WriteString("\n")
		}
	}
	return sb.String()
}

// Source is the translation unit NVRTC compiles: Join(Files()).
func Source() string { return Join(Files()) }
