package gguf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"

	"worker-orcd/quant"
)

// Builder assembles a GGUF v3 file: metadata in insertion order, then tensor
// infos, then the tensor data, each tensor aligned to general.alignment
// (default 32). Parse(Bytes()) gives back what was put in.
type Builder struct {
	kv      []KV
	kvIndex map[string]int
	tensors []builderTensor
	tIndex  map[string]bool
}

type builderTensor struct {
	name string
	typ  quant.Type
	dims []uint64
	data []byte
}

// NewBuilder returns an empty builder.
func NewBuilder() *Builder {
	return &Builder{kvIndex: map[string]int{}, tIndex: map[string]bool{}}
}

// Set stores a metadata key; the value is converted with ValueOf. Setting a
// key again replaces its value in place. A Go type that GGUF cannot hold is
// a programming error and panics.
func (b *Builder) Set(key string, x any) {
	v, err := ValueOf(x)
	if err != nil {
		panic(fmt.Sprintf("gguf: Set(%q): %v", key, err))
	}
	if i, ok := b.kvIndex[key]; ok {
		b.kv[i].Value = v
		return
	}
	b.kvIndex[key] = len(b.kv)
	b.kv = append(b.kv, KV{Key: key, Value: v})
}

// Delete removes a metadata key if present.
func (b *Builder) Delete(key string) {
	i, ok := b.kvIndex[key]
	if !ok {
		return
	}
	b.kv = append(b.kv[:i], b.kv[i+1:]...)
	delete(b.kvIndex, key)
	for j := i; j < len(b.kv); j++ {
		b.kvIndex[b.kv[j].Key] = j
	}
}

// AddTensor appends a tensor. dims are in GGUF order (row length first);
// data must hold exactly the bytes the type and dims imply.
func (b *Builder) AddTensor(name string, t quant.Type, dims []uint64, data []byte) error {
	if name == "" {
		return fmt.Errorf("gguf: tensor with an empty name")
	}
	if b.tIndex[name] {
		return fmt.Errorf("gguf: duplicate tensor %q", name)
	}
	if len(dims) == 0 || len(dims) > MaxDims {
		return fmt.Errorf("gguf: tensor %q has %d dims, want 1 to %d", name, len(dims), MaxDims)
	}
	rows := uint64(1)
	for _, d := range dims[1:] {
		rows *= d
	}
	rb, err := quant.RowBytes(t, int(dims[0]))
	if err != nil {
		return fmt.Errorf("gguf: tensor %q: %w", name, err)
	}
	if want := uint64(rb) * rows; uint64(len(data)) != want {
		return fmt.Errorf("gguf: tensor %q (%s %v) needs %d bytes, got %d", name, t, dims, want, len(data))
	}
	b.tIndex[name] = true
	b.tensors = append(b.tensors, builderTensor{name: name, typ: t, dims: append([]uint64(nil), dims...), data: data})
	return nil
}

func (b *Builder) alignment() (uint64, error) {
	i, ok := b.kvIndex["general.alignment"]
	if !ok {
		return DefaultAlignment, nil
	}
	a, isInt := b.kv[i].Value.asInt64()
	if !isInt || a <= 0 || a&(a-1) != 0 {
		return 0, fmt.Errorf("gguf: general.alignment must be a power of two, got %s", b.kv[i].Value)
	}
	return uint64(a), nil
}

// WriteTo writes the file.
func (b *Builder) WriteTo(w io.Writer) (int64, error) {
	align, err := b.alignment()
	if err != nil {
		return 0, err
	}
	cw := &countWriter{w: bufio.NewWriterSize(w, 1<<20)}
	e := &encoder{w: cw}
	e.bytes([]byte(Magic))
	e.u32(3)
	e.u64(uint64(len(b.tensors)))
	e.u64(uint64(len(b.kv)))
	for _, kv := range b.kv {
		e.str(kv.Key)
		e.u32(uint32(kv.Value.Type))
		e.value(kv.Value)
	}
	off := uint64(0)
	offsets := make([]uint64, len(b.tensors))
	for i, t := range b.tensors {
		e.str(t.name)
		e.u32(uint32(len(t.dims)))
		for _, d := range t.dims {
			e.u64(d)
		}
		e.u32(uint32(t.typ))
		e.u64(off)
		offsets[i] = off
		off = alignUp(off+uint64(len(t.data)), align)
	}
	e.pad(align)
	for i, t := range b.tensors {
		e.bytes(t.data)
		if i+1 < len(b.tensors) {
			e.pad(align)
		}
	}
	if e.err == nil {
		e.err = cw.w.(*bufio.Writer).Flush()
	}
	return cw.n, e.err
}

// Bytes returns the encoded file.
func (b *Builder) Bytes() ([]byte, error) {
	var buf bytes.Buffer
	if _, err := b.WriteTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteFile writes the file to path.
func (b *Builder) WriteFile(path string) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := b.WriteTo(fh); err != nil {
		fh.Close()
		return err
	}
	return fh.Close()
}

func alignUp(x, a uint64) uint64 { return (x + a - 1) / a * a }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// encoder writes little-endian values and keeps the first error.
type encoder struct {
	w   *countWriter
	err error
	buf [8]byte
}

func (e *encoder) bytes(p []byte) {
	if e.err == nil {
		_, e.err = e.w.Write(p)
	}
}

func (e *encoder) pad(align uint64) {
	n := alignUp(uint64(e.w.n), align) - uint64(e.w.n)
	var zero [256]byte
	for n > 0 {
		k := min(n, uint64(len(zero)))
		e.bytes(zero[:k])
		n -= k
	}
}

func (e *encoder) u8(x uint8)   { e.buf[0] = x; e.bytes(e.buf[:1]) }
func (e *encoder) u16(x uint16) { binary.LittleEndian.PutUint16(e.buf[:], x); e.bytes(e.buf[:2]) }
func (e *encoder) u32(x uint32) { binary.LittleEndian.PutUint32(e.buf[:], x); e.bytes(e.buf[:4]) }
func (e *encoder) u64(x uint64) { binary.LittleEndian.PutUint64(e.buf[:], x); e.bytes(e.buf[:8]) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.bytes([]byte(s)) }

func (e *encoder) value(v Value) {
	switch x := v.v.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	case bool:
		if x {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case string:
		e.str(x)
	default:
		// An array: element type, count, then each element's payload.
		e.u32(uint32(v.ArrayType))
		n := v.Len()
		e.u64(uint64(n))
		for i := range n {
			e.value(v.Index(i))
		}
	}
}
