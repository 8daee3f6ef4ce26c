package gguf

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"worker-orcd/internal/fixtures"
	"worker-orcd/quant"
)

// sampleBuilder returns a builder that uses every metadata type, a nested
// array and tensors of several types.
func sampleBuilder(t testing.TB) *Builder {
	b := NewBuilder()
	b.Set("general.architecture", "qwen2")
	b.Set("u8", uint8(200))
	b.Set("i8", int8(-100))
	b.Set("u16", uint16(60000))
	b.Set("i16", int16(-30000))
	b.Set("u32", uint32(4000000000))
	b.Set("i32", int32(-2000000000))
	b.Set("f32", float32(1.5))
	b.Set("bool", true)
	b.Set("str", "héllo\nworld")
	b.Set("u64", uint64(math.MaxUint64))
	b.Set("i64", int64(math.MinInt64))
	b.Set("f64", math.Pi)
	b.Set("arr.str", []string{"a", "", "ü"})
	b.Set("arr.i32", []int32{1, -2, 3})
	b.Set("arr.f32", []float32{0.5, -1})
	b.Set("arr.bool", []bool{true, false})
	b.Set("arr.u8", []uint8{})
	inner1, _ := ValueOf([]int32{1, 2})
	inner2, _ := ValueOf([]int32{3})
	b.Set("arr.nested", []Value{inner1, inner2})
	f32 := make([]byte, 4*8*3)
	for i := range f32 {
		f32[i] = byte(i)
	}
	if err := b.AddTensor("a.weight", quant.F32, []uint64{8, 3}, f32); err != nil {
		t.Fatal(err)
	}
	if err := b.AddTensor("b.weight", quant.Q8_0, []uint64{64}, make([]byte, 68)); err != nil {
		t.Fatal(err)
	}
	if err := b.AddTensor("c.weight", quant.Q4_K, []uint64{256, 2}, make([]byte, 288)); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, align := range []int{0, 64} {
		b := sampleBuilder(t)
		if align != 0 {
			b.Set("general.alignment", uint32(align))
		}
		data, err := b.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		f, err := Parse(data)
		if err != nil {
			t.Fatalf("align %d: %v", align, err)
		}
		if f.Version != 3 {
			t.Errorf("version %d", f.Version)
		}
		if len(f.KV) != len(b.kv) {
			t.Fatalf("got %d keys, want %d", len(f.KV), len(b.kv))
		}
		for i, kv := range b.kv {
			got := f.KV[i]
			if got.Key != kv.Key || got.Value.Type != kv.Value.Type || got.Value.ArrayType != kv.Value.ArrayType ||
				!reflect.DeepEqual(got.Value.Any(), kv.Value.Any()) {
				t.Errorf("key %d: got %s=%v (%s), want %s=%v (%s)", i, got.Key, got.Value, got.Value.TypeName(), kv.Key, kv.Value, kv.Value.TypeName())
			}
		}
		wantAlign := uint64(32)
		if align != 0 {
			wantAlign = uint64(align)
		}
		if f.Alignment != wantAlign || f.DataOffset%int64(wantAlign) != 0 {
			t.Errorf("alignment %d, data offset %d", f.Alignment, f.DataOffset)
		}
		for i, bt := range b.tensors {
			ti := f.Tensors[i]
			if ti.Name != bt.name || ti.Type != bt.typ || !reflect.DeepEqual(ti.Dims, bt.dims) {
				t.Errorf("tensor %d: got %s %s %v", i, ti.Name, ti.Type, ti.Dims)
			}
			if ti.Offset%wantAlign != 0 {
				t.Errorf("tensor %s offset %d not aligned", ti.Name, ti.Offset)
			}
			if got := f.TensorData(&ti); !reflect.DeepEqual(got, bt.data) {
				t.Errorf("tensor %s data differs", ti.Name)
			}
		}
		// Writing the parsed file again gives the same bytes.
		b2 := NewBuilder()
		for _, kv := range f.KV {
			b2.Set(kv.Key, kv.Value)
		}
		for i := range f.Tensors {
			ti := &f.Tensors[i]
			if err := b2.AddTensor(ti.Name, ti.Type, ti.Dims, f.TensorData(ti)); err != nil {
				t.Fatal(err)
			}
		}
		data2, err := b2.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(data, data2) {
			t.Errorf("align %d: re-encoding differs (%d vs %d bytes)", align, len(data), len(data2))
		}
	}
}

func TestAccessors(t *testing.T) {
	data, err := sampleBuilder(t).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := f.Uint32("u32"); err != nil || v != 4000000000 {
		t.Errorf("Uint32 = %v, %v", v, err)
	}
	if v, err := f.Uint32("u16"); err != nil || v != 60000 {
		t.Errorf("Uint32 of a uint16 = %v, %v", v, err)
	}
	if v, err := f.Int32("i8"); err != nil || v != -100 {
		t.Errorf("Int32 of an int8 = %v, %v", v, err)
	}
	if v, err := f.Uint64("u64"); err != nil || v != math.MaxUint64 {
		t.Errorf("Uint64 = %v, %v", v, err)
	}
	if v, err := f.Float32("f64"); err != nil || v != float32(math.Pi) {
		t.Errorf("Float32 = %v, %v", v, err)
	}
	if v, err := f.String("str"); err != nil || v != "héllo\nworld" {
		t.Errorf("String = %q, %v", v, err)
	}
	if v, err := f.Strings("arr.str"); err != nil || !reflect.DeepEqual(v, []string{"a", "", "ü"}) {
		t.Errorf("Strings = %q, %v", v, err)
	}
	if v, err := f.Int32s("arr.i32"); err != nil || !reflect.DeepEqual(v, []int32{1, -2, 3}) {
		t.Errorf("Int32s = %v, %v", v, err)
	}
	if f.Architecture() != "qwen2" {
		t.Errorf("Architecture = %q", f.Architecture())
	}
	errCases := []struct {
		name string
		call func() error
		kind error
		msg  string
	}{
		{"missing", func() error { _, err := f.Strings("tokenizer.ggml.tokens"); return err },
			ErrKeyNotFound, `GGUFError: Metadata key not found: "tokenizer.ggml.tokens"`},
		{"string as uint32", func() error { _, err := f.Uint32("str"); return err },
			ErrWrongType, `GGUFError: metadata key "str" has type string, want uint32`},
		{"negative as uint32", func() error { _, err := f.Uint32("i8"); return err },
			ErrWrongType, `GGUFError: metadata key "i8" is -100, outside the uint32 range [0, 4294967295]`},
		{"int array as strings", func() error { _, err := f.Strings("arr.i32"); return err },
			ErrWrongType, `GGUFError: metadata key "arr.i32" has type array[int32], want array[string]`},
		{"nested as int32s", func() error { _, err := f.Int32s("arr.nested"); return err },
			ErrWrongType, `GGUFError: metadata key "arr.nested" has type array[array[int32]], want array of integers`},
		{"bool as float", func() error { _, err := f.Float32("bool"); return err },
			ErrWrongType, `GGUFError: metadata key "bool" has type bool, want float32 or float64`},
	}
	for _, c := range errCases {
		err := c.call()
		if !errors.Is(err, c.kind) || err.Error() != c.msg {
			t.Errorf("%s: got %v, want %q", c.name, err, c.msg)
		}
	}
}

// header builds the first bytes of a GGUF file by hand.
func header(version uint32, nTensors, nKV uint64) []byte {
	b := []byte(Magic)
	b = binary.LittleEndian.AppendUint32(b, version)
	b = binary.LittleEndian.AppendUint64(b, nTensors)
	return binary.LittleEndian.AppendUint64(b, nKV)
}

func appendStr(b []byte, s string) []byte {
	return append(binary.LittleEndian.AppendUint64(b, uint64(len(s))), s...)
}

func tensorInfo(b []byte, name string, dims []uint64, typ quant.Type, off uint64) []byte {
	b = appendStr(b, name)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(dims)))
	for _, d := range dims {
		b = binary.LittleEndian.AppendUint64(b, d)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(typ))
	return binary.LittleEndian.AppendUint64(b, off)
}

func TestMalformed(t *testing.T) {
	kvStr := func(key, val string) []byte {
		b := appendStr(nil, key)
		b = binary.LittleEndian.AppendUint32(b, uint32(TypeString))
		return appendStr(b, val)
	}
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	withData := func(b []byte, n int) []byte {
		for len(b)%32 != 0 {
			b = append(b, 0)
		}
		return append(b, make([]byte, n)...)
	}
	hugeStr := cat(header(3, 0, 1), binary.LittleEndian.AppendUint64(nil, 1<<63), make([]byte, 16))
	hugeArr := cat(header(3, 0, 1), appendStr(nil, "a"), binary.LittleEndian.AppendUint32(nil, uint32(TypeArray)),
		binary.LittleEndian.AppendUint32(nil, uint32(TypeUint64)), binary.LittleEndian.AppendUint64(nil, 1<<62))
	cases := []struct {
		name string
		data []byte
		kind error
		want string // substring of the message
	}{
		{"empty", nil, ErrBadMagic, "file is 0 bytes"},
		{"bad magic", []byte{0, 0, 0, 0, 3, 0, 0, 0}, ErrBadMagic, `GGUFError: bad magic 0x00000000 (bytes 00 00 00 00) at offset 0 (want "GGUF" 47 47 55 46): the file is not a GGUF model`},
		{"version 1", header(1, 0, 0), ErrVersion, "version 1 is not supported"},
		{"version 4", header(4, 0, 0), ErrVersion, "unsupported GGUF version 4"},
		{"big endian", header(0x03000000, 0, 0), ErrVersion, "byte-swapped"},
		{"short header", header(3, 0, 0)[:12], ErrTruncated, "file ends inside the header"},
		{"2^60 tensors", header(3, 1<<60, 0), ErrInvalid, "header claims 1152921504606846976 tensors"},
		{"2^60 kv", header(3, 0, 1<<60), ErrInvalid, "metadata pairs"},
		{"string length 2^63", hugeStr, ErrTruncated, "claims 9223372036854775808 bytes"},
		{"array length 2^62", hugeArr, ErrTruncated, "claims 4611686018427387904 elements"},
		{"duplicate key", cat(header(3, 0, 2), kvStr("k", "a"), kvStr("k", "b")), ErrInvalid, `duplicate metadata key "k"`},
		{"unknown value type", cat(header(3, 0, 1), appendStr(nil, "k"), binary.LittleEndian.AppendUint32(nil, 13), make([]byte, 8)), ErrInvalid, "unknown metadata value type 13"},
		{"bad bool", cat(header(3, 0, 1), appendStr(nil, "k"), binary.LittleEndian.AppendUint32(nil, uint32(TypeBool)), []byte{2}), ErrInvalid, "bool byte is 2"},
		{"unknown ggml type", withData(tensorInfo(header(3, 1, 0), "t", []uint64{32}, 99, 0), 128), ErrInvalid, `tensor "t" has unknown ggml type 99`},
		{"zero dim", withData(tensorInfo(header(3, 1, 0), "t", []uint64{32, 0}, quant.F32, 0), 128), ErrInvalid, "dimension 1 equal to 0"},
		{"five dims", withData(tensorInfo(header(3, 1, 0), "t", []uint64{1, 1, 1, 1, 1}, quant.F32, 0), 128), ErrInvalid, "has 5 dimensions"},
		{"overflowing dims", withData(tensorInfo(header(3, 1, 0), "t", []uint64{1 << 40, 1 << 40}, quant.F32, 0), 128), ErrInvalid, "overflow"},
		{"misaligned", withData(tensorInfo(header(3, 1, 0), "t", []uint64{4}, quant.F32, 4), 128), ErrInvalid, "not a multiple of the alignment 32"},
		{"bad block", withData(tensorInfo(header(3, 1, 0), "t", []uint64{33}, quant.Q8_0, 0), 128), ErrInvalid, "not a multiple of its block size 32"},
		{"data truncated", withData(tensorInfo(header(3, 1, 0), "t", []uint64{64}, quant.F32, 0), 100), ErrTruncated, `tensor "t" needs bytes`},
		{"overlap", withData(tensorInfo(tensorInfo(header(3, 2, 0), "t", []uint64{64}, quant.F32, 0), "u", []uint64{8}, quant.F32, 32), 256), ErrInvalid, `overlaps tensor "t"`},
		{"duplicate tensor", withData(tensorInfo(tensorInfo(header(3, 2, 0), "t", []uint64{8}, quant.F32, 0), "t", []uint64{8}, quant.F32, 32), 256), ErrInvalid, `duplicate tensor name "t"`},
		{"bad alignment", cat(header(3, 0, 1), appendStr(nil, "general.alignment"), binary.LittleEndian.AppendUint32(nil, uint32(TypeUint32)), binary.LittleEndian.AppendUint32(nil, 3)), ErrInvalid, "want a power of two"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.data)
			checkGGUFError(t, err)
			if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v (kind mismatch: %v), want %v containing %q", err, !errors.Is(err, c.kind), c.kind, c.want)
			}
		})
	}
}

// checkGGUFError asserts that err is a one-line *Error.
func checkGGUFError(t *testing.T, err error) {
	t.Helper()
	var ge *Error
	if !errors.As(err, &ge) {
		t.Fatalf("got %T %v, want *gguf.Error", err, err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "GGUFError: ") || strings.ContainsAny(msg, "\n\r") {
		t.Errorf("message is not one GGUFError line: %q", msg)
	}
}

func TestRandomBytes(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		b := make([]byte, r.IntN(4096))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if i%2 == 0 && len(b) >= 4 {
			copy(b, Magic) // get past the magic half the time
			if len(b) >= 8 {
				binary.LittleEndian.PutUint32(b[4:], 3)
			}
		}
		if _, err := Parse(b); err != nil {
			checkGGUFError(t, err)
		}
	}
}

// TestFixtureTruncations cuts each fixture model at every 1/16 of its
// length: each cut must be a one-line GGUFError, never a panic.
func TestFixtureTruncations(t *testing.T) {
	for _, m := range fixtures.Models {
		t.Run(m.Name, func(t *testing.T) {
			p := fixtures.ModelPath(t, m.Name)
			full, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse(full); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			for k := range 16 {
				cut := full[:len(full)*k/16]
				_, err := Parse(cut)
				checkGGUFError(t, err)
				if k > 0 && !errors.Is(err, ErrTruncated) {
					t.Errorf("%s cut at %d/16: %v, want a truncation error", filepath.Base(p), k, err)
				}
			}
		})
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	data, err := sampleBuilder(t).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "m.gguf")
	if err := os.WriteFile(good, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(good)
	if err != nil {
		t.Fatal(err)
	}
	ti, ok := f.Tensor("b.weight")
	if !ok || len(f.TensorData(ti)) != 68 {
		t.Errorf("Tensor(b.weight) = %v, %v", ti, ok)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.gguf")
	os.WriteFile(empty, nil, 0o644)
	for _, p := range []string{empty, filepath.Join(dir, "missing.gguf"), dir} {
		_, err := Open(p)
		checkGGUFError(t, err)
	}
}

func FuzzParse(f *testing.F) {
	data, err := sampleBuilder(f).Bytes()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Add(header(3, 0, 0))
	f.Add(header(2, 1, 1))
	f.Add([]byte("GGUF"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := ParseHeader(b); err != nil {
			checkGGUFError(t, err)
		} else {
			_ = h.ImpliedSize()
		}
		file, err := Parse(b)
		if err != nil {
			checkGGUFError(t, err)
			return
		}
		for i := range file.Tensors {
			_ = file.TensorData(&file.Tensors[i])
		}
		for _, kv := range file.KV {
			_ = kv.Value.String()
		}
	})
}

// TestParseHeaderOfTruncatedFile: a file cut inside its tensor data is
// refused by Parse but read by ParseHeader, which reports the size the
// table implies.
func TestParseHeaderOfTruncatedFile(t *testing.T) {
	data, err := sampleBuilder(t).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	full, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := (full.ImpliedSize() + 31) / 32 * 32; got != int64(len(data)) {
		t.Errorf("implied size %d (padded %d), file %d", full.ImpliedSize(), got, len(data))
	}
	cut := data[:full.DataOffset+40]
	if _, err := Parse(cut); !errors.Is(err, ErrTruncated) {
		t.Fatalf("Parse of a cut file: %v", err)
	}
	h, err := ParseHeader(cut)
	if err != nil {
		t.Fatal(err)
	}
	if h.ImpliedSize() != full.ImpliedSize() || len(h.Tensors) != len(full.Tensors) {
		t.Errorf("ParseHeader: implied %d, %d tensors; want %d, %d", h.ImpliedSize(), len(h.Tensors), full.ImpliedSize(), len(full.Tensors))
	}
	// A cut inside the tensor table is still an error.
	if _, err := ParseHeader(data[:full.DataOffset-20]); err == nil {
		t.Error("ParseHeader accepted a cut tensor table")
	}
}
