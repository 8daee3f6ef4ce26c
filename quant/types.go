// Package quant describes the ggml tensor element types that GGUF files use:
// their block layouts, reference dequantization to float32, quantization for
// the types test models need, and CPU dot products.
//
// Every quantized type stores a row as a sequence of fixed-size blocks; a block
// covers BlockSize elements and occupies TypeSize bytes. A row of n elements of
// type t therefore takes n/BlockSize(t)*TypeSize(t) bytes, and n must be a
// multiple of the block size.
package quant

import (
	"errors"
	"fmt"
)

// Type is a ggml tensor element type, numbered as in GGUF files.
type Type uint32

// The ggml types. The numbers are fixed by the file format; gaps are types
// that were removed from the format and must not be reused.
const (
	F32     Type = 0
	F16     Type = 1
	Q4_0    Type = 2
	Q4_1    Type = 3
	Q5_0    Type = 6
	Q5_1    Type = 7
	Q8_0    Type = 8
	Q8_1    Type = 9
	Q2_K    Type = 10
	Q3_K    Type = 11
	Q4_K    Type = 12
	Q5_K    Type = 13
	Q6_K    Type = 14
	Q8_K    Type = 15
	IQ2_XXS Type = 16
	IQ2_XS  Type = 17
	IQ3_XXS Type = 18
	IQ1_S   Type = 19
	IQ4_NL  Type = 20
	IQ3_S   Type = 21
	IQ2_S   Type = 22
	IQ4_XS  Type = 23
	I8      Type = 24
	I16     Type = 25
	I32     Type = 26
	I64     Type = 27
	F64     Type = 28
	IQ1_M   Type = 29
	BF16    Type = 30
	TQ1_0   Type = 34
	TQ2_0   Type = 35
	MXFP4   Type = 39
)

// QK is the block size of the simple formats (Q4_0 … Q8_1); QKK that of the
// K-quants (a "super-block").
const (
	QK  = 32
	QKK = 256
)

type typeInfo struct {
	name      string
	blockSize int // elements per block
	typeSize  int // bytes per block
}

var types = map[Type]typeInfo{
	F32:     {"F32", 1, 4},
	F16:     {"F16", 1, 2},
	Q4_0:    {"Q4_0", QK, 18},
	Q4_1:    {"Q4_1", QK, 20},
	Q5_0:    {"Q5_0", QK, 22},
	Q5_1:    {"Q5_1", QK, 24},
	Q8_0:    {"Q8_0", QK, 34},
	Q8_1:    {"Q8_1", QK, 36},
	Q2_K:    {"Q2_K", QKK, 84},
	Q3_K:    {"Q3_K", QKK, 110},
	Q4_K:    {"Q4_K", QKK, 144},
	Q5_K:    {"Q5_K", QKK, 176},
	Q6_K:    {"Q6_K", QKK, 210},
	Q8_K:    {"Q8_K", QKK, 292},
	IQ2_XXS: {"IQ2_XXS", QKK, 66},
	IQ2_XS:  {"IQ2_XS", QKK, 74},
	IQ3_XXS: {"IQ3_XXS", QKK, 98},
	IQ1_S:   {"IQ1_S", QKK, 50},
	IQ4_NL:  {"IQ4_NL", QK, 18},
	IQ3_S:   {"IQ3_S", QKK, 110},
	IQ2_S:   {"IQ2_S", QKK, 82},
	IQ4_XS:  {"IQ4_XS", QKK, 136},
	I8:      {"I8", 1, 1},
	I16:     {"I16", 1, 2},
	I32:     {"I32", 1, 4},
	I64:     {"I64", 1, 8},
	F64:     {"F64", 1, 8},
	IQ1_M:   {"IQ1_M", QKK, 56},
	BF16:    {"BF16", 1, 2},
	TQ1_0:   {"TQ1_0", QKK, 54},
	TQ2_0:   {"TQ2_0", QKK, 66},
	MXFP4:   {"MXFP4", QK, 17},
}

// Known reports whether t is a ggml type this package knows the layout of.
func (t Type) Known() bool {
	_, ok := types[t]
	return ok
}

// String returns the ggml name of the type ("Q4_K"), or "type(N)" for an
// unknown number.
func (t Type) String() string {
	if ti, ok := types[t]; ok {
		return ti.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// BlockSize is the number of elements one block covers (1 for plain types).
// It is 0 for an unknown type.
func (t Type) BlockSize() int { return types[t].blockSize }

// TypeSize is the number of bytes one block occupies. It is 0 for an unknown
// type.
func (t Type) TypeSize() int { return types[t].typeSize }

// ParseType returns the type with the given ggml name ("Q8_0", case
// sensitive).
func ParseType(name string) (Type, error) {
	for t, ti := range types {
		if ti.name == name {
			return t, nil
		}
	}
	return 0, fmt.Errorf("quant: unknown type name %q", name)
}

// ErrRowSize reports a row length that a type cannot store.
var ErrRowSize = errors.New("row length is not a multiple of the block size")

// RowBytes returns the bytes a row of n elements of type t occupies. It fails
// for an unknown type, a negative n, or an n that is not a multiple of the
// type's block size.
func RowBytes(t Type, n int) (int, error) {
	ti, ok := types[t]
	if !ok {
		return 0, fmt.Errorf("quant: unknown ggml type %d", uint32(t))
	}
	if n < 0 {
		return 0, fmt.Errorf("quant: negative row length %d", n)
	}
	if n%ti.blockSize != 0 {
		return 0, fmt.Errorf("quant: %s row of %d elements: %w %d (use a row length that is a multiple of %d, or another type)",
			ti.name, n, ErrRowSize, ti.blockSize, ti.blockSize)
	}
	return n / ti.blockSize * ti.typeSize, nil
}
