// Package kernels holds the CUDA C sources of the GPU backend, embedded in
// the binary and compiled at run time by NVRTC.
package kernels

import _ "embed"

// Decoder is decoder.cu: every kernel of the forward pass.
//
//go:embed decoder.cu
var Decoder string

// Source is the translation unit NVRTC compiles: every source file in
// order, each after a #line directive so that compiler messages name the
// file and line.
func Source() string { return "#line 1 \"decoder.cu\"\n" + Decoder }
