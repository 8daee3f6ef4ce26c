// Package gguf reads and writes GGUF files (versions 2 and 3), the
// single-file model format of the ggml ecosystem.
//
// A file is: a header (magic "GGUF", version, tensor count, metadata count),
// the metadata key/value pairs, the tensor infos (name, dimensions, type,
// offset), padding to the alignment (general.alignment, default 32), and the
// tensor data. Open maps the file read-only and validates every structure
// before it is used: counts and lengths are checked against the bytes that
// remain before anything is allocated, so no input makes the reader panic
// or allocate more than the file's own size. Tensor data is never copied:
// TensorData returns a slice of the mapping.
package gguf

import (
	"encoding/binary"
	"math"
	"slices"

	"worker-orcd/quant"
)

// Magic is the first four bytes of every GGUF file ("GGUF").
const Magic = "GGUF"

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// MaxDims is the most dimensions a tensor may have (ggml's GGML_MAX_DIMS).
const MaxDims = 4

// maxNesting bounds arrays of arrays.
const maxNesting = 8

// KV is one metadata pair.
type KV struct {
	Key   string
	Value Value
}

// TensorInfo describes one tensor. Dims are in GGUF order: Dims[0] (ne0) is
// the contiguous row length.
type TensorInfo struct {
	Name       string
	Type       quant.Type
	Dims       []uint64
	Offset     uint64 // relative to the start of the tensor data section
	Size       uint64 // bytes
	InfoOffset int64  // file offset of this tensor's info record
}

// Elements returns the number of elements (the product of the dims).
func (t *TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// File is a parsed GGUF file.
type File struct {
	Version    uint32
	KV         []KV         // metadata in file order
	Tensors    []TensorInfo // tensor infos in file order
	Alignment  uint64       // data alignment in bytes
	DataOffset int64        // file offset of the tensor data section
	Size       int64        // file size in bytes

	data       []byte
	headerOnly bool // ParseHeader: tensor data not checked against the file size
	kvIndex    map[string]int
	tIndex     map[string]int
	unmap      func() error
}

// Close releases the mapping. Slices returned by TensorData must not be used
// afterwards.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap = nil
	f.data = nil
	return err
}

// Tensor returns the info of the named tensor.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	i, ok := f.tIndex[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// TensorData returns the bytes of a tensor of this file, without copying.
func (f *File) TensorData(t *TensorInfo) []byte {
	start := uint64(f.DataOffset) + t.Offset
	return f.data[start : start+t.Size : start+t.Size]
}

// Bytes returns the whole file (the mapping).
func (f *File) Bytes() []byte { return f.data }

// Parse parses a GGUF file held in memory. The File refers to data; data
// must not change while the File is used.
func Parse(data []byte) (*File, error) {
	f := &File{data: data, Size: int64(len(data)), Alignment: DefaultAlignment}
	if err := f.parse(); err != nil {
		return nil, err
	}
	return f, nil
}

// ParseHeader parses and validates the header, metadata and tensor table
// like Parse, but does not require the tensor data to lie inside data: it
// is for diagnosing a truncated file (ImpliedSize says how large it should
// be). TensorData must not be called on the result.
func ParseHeader(data []byte) (*File, error) {
	f := &File{data: data, Size: int64(len(data)), Alignment: DefaultAlignment, headerOnly: true}
	if err := f.parse(); err != nil {
		return nil, err
	}
	return f, nil
}

// ImpliedSize is the file size the tensor table implies: the data offset
// plus the end of the last tensor (writers may pad the file further to the
// alignment).
func (f *File) ImpliedSize() int64 {
	if len(f.Tensors) == 0 {
		return f.DataOffset
	}
	var end uint64
	for i := range f.Tensors {
		end = max(end, f.Tensors[i].Offset+f.Tensors[i].Size)
	}
	return f.DataOffset + int64(end)
}

// reader is a bounds-checked cursor over the file.
type reader struct {
	b   []byte
	off int64
}

func (r *reader) remaining() int64 { return int64(len(r.b)) - r.off }

func (r *reader) need(n int64, what string) error {
	if n < 0 || r.remaining() < n {
		return errAt(ErrTruncated, r.off, "file ends inside %s: need %d bytes, %d remain (file size %d; incomplete download?)",
			what, n, r.remaining(), len(r.b))
	}
	return nil
}

func (r *reader) u8(what string) (uint8, error) {
	if err := r.need(1, what); err != nil {
		return 0, err
	}
	v := r.b[r.off]
	r.off++
	return v, nil
}

func (r *reader) u16(what string) (uint16, error) {
	if err := r.need(2, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v, nil
}

func (r *reader) u32(what string) (uint32, error) {
	if err := r.need(4, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v, nil
}

func (r *reader) u64(what string) (uint64, error) {
	if err := r.need(8, what); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v, nil
}

func (r *reader) str(what string) (string, error) {
	start := r.off
	n, err := r.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(r.remaining()) {
		return "", errAt(ErrTruncated, start, "%s claims %d bytes but only %d remain in the file (corrupt or truncated)",
			what, n, r.remaining())
	}
	s := string(r.b[r.off : r.off+int64(n)])
	r.off += int64(n)
	return s, nil
}

func (f *File) parse() error {
	r := &reader{b: f.data}
	if len(f.data) < 4 {
		found := f.data
		return errNoOffset(ErrBadMagic, "file is %d bytes, too short for the magic (found [% x], want \"GGUF\" 47 47 55 46): not a GGUF file, or an empty or truncated download",
			len(found), found)
	}
	if string(f.data[:4]) != Magic {
		return errNoOffset(ErrBadMagic, "bad magic 0x%08x (bytes % x) at offset 0 (want \"GGUF\" 47 47 55 46): the file is not a GGUF model",
			binary.BigEndian.Uint32(f.data[:4]), f.data[:4])
	}
	r.off = 4
	ver, err := r.u32("the header (version)")
	if err != nil {
		return err
	}
	switch ClassifyVersion(ver) {
	case VersionSupported:
	case VersionTooOld:
		return errAt(ErrVersion, 4, "GGUF version %d is not supported (want 2 or 3): re-convert the model with a current converter", ver)
	case VersionByteSwapped:
		return errAt(ErrVersion, 4, "version field 0x%08x looks byte-swapped: big-endian GGUF files are not supported (want a little-endian v2 or v3 file)", ver)
	default:
		return errAt(ErrVersion, 4, "unsupported GGUF version %d (want 2 or 3)", ver)
	}
	f.Version = ver
	nTensors, err := r.u64("the header (tensor count)")
	if err != nil {
		return err
	}
	nKV, err := r.u64("the header (metadata count)")
	if err != nil {
		return err
	}
	// Every metadata pair takes at least 8 (key length) + 4 (type) + 1
	// bytes, every tensor info at least 8 + 4 + 8 + 4 + 8.
	const minKV, minTensor = 13, 32
	if nKV > uint64(r.remaining())/minKV {
		return errAt(ErrInvalid, 16, "header claims %d metadata pairs but the %d remaining bytes hold at most %d: corrupt header",
			nKV, r.remaining(), r.remaining()/minKV)
	}
	if nTensors > uint64(r.remaining())/minTensor {
		return errAt(ErrInvalid, 8, "header claims %d tensors but the %d remaining bytes hold at most %d: corrupt header",
			nTensors, r.remaining(), r.remaining()/minTensor)
	}

	f.KV = make([]KV, 0, nKV)
	f.kvIndex = make(map[string]int, nKV)
	for i := range nKV {
		at := r.off
		key, err := r.str("metadata key")
		if err != nil {
			return err
		}
		if key == "" {
			return errAt(ErrInvalid, at, "metadata pair %d has an empty key", i)
		}
		if _, dup := f.kvIndex[key]; dup {
			return errAt(ErrInvalid, at, "duplicate metadata key %q", key)
		}
		vt, err := r.u32("metadata type of " + quoteKey(key))
		if err != nil {
			return err
		}
		v, err := r.value(ValueType(vt), quoteKey(key), 0)
		if err != nil {
			return err
		}
		f.kvIndex[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}

	if v, ok := f.Get("general.alignment"); ok {
		a, isInt := v.asInt64()
		if !isInt || a <= 0 || a&(a-1) != 0 || a > 1<<30 {
			return errNoOffset(ErrInvalid, "general.alignment is %s %s, want a power of two such as 32", v.TypeName(), v.String())
		}
		f.Alignment = uint64(a)
	}

	f.Tensors = make([]TensorInfo, 0, nTensors)
	f.tIndex = make(map[string]int, nTensors)
	for range nTensors {
		t, err := r.tensorInfo(f.Alignment)
		if err != nil {
			return err
		}
		if _, dup := f.tIndex[t.Name]; dup {
			return errAt(ErrInvalid, t.InfoOffset, "duplicate tensor name %q", t.Name)
		}
		f.tIndex[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
	}

	// The data section starts at the next multiple of the alignment.
	end := uint64(r.off)
	f.DataOffset = int64((end + f.Alignment - 1) / f.Alignment * f.Alignment)
	if len(f.Tensors) > 0 && f.DataOffset > f.Size && !f.headerOnly {
		return errAt(ErrTruncated, r.off, "file ends before the tensor data section (which starts at %d; file size %d): truncated download?",
			f.DataOffset, f.Size)
	}
	return f.checkTensorData()
}

// checkTensorData verifies that every tensor lies inside the file and that
// no two overlap.
func (f *File) checkTensorData() error {
	avail := uint64(f.Size - min(f.DataOffset, f.Size))
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		ta, tb := &f.Tensors[a], &f.Tensors[b]
		if ta.Offset != tb.Offset {
			if ta.Offset < tb.Offset {
				return -1
			}
			return 1
		}
		return a - b
	})
	var prevEnd uint64
	prev := -1
	for _, i := range order {
		t := &f.Tensors[i]
		if !f.headerOnly && (t.Offset > avail || t.Size > avail-t.Offset) {
			return errAt(ErrTruncated, t.InfoOffset, "tensor %q needs bytes %d..%d of the file but the file has %d bytes: truncated or incomplete download (re-download the model)",
				t.Name, uint64(f.DataOffset)+t.Offset, uint64(f.DataOffset)+t.Offset+t.Size, f.Size)
		}
		if prev >= 0 && t.Offset < prevEnd {
			return errAt(ErrInvalid, t.InfoOffset, "tensor %q data (offset %d) overlaps tensor %q (offset %d, %d bytes): corrupt tensor table",
				t.Name, t.Offset, f.Tensors[prev].Name, f.Tensors[prev].Offset, f.Tensors[prev].Size)
		}
		prevEnd = t.Offset + t.Size
		prev = i
	}
	return nil
}

func (r *reader) tensorInfo(align uint64) (TensorInfo, error) {
	at := r.off
	name, err := r.str("tensor name")
	if err != nil {
		return TensorInfo{}, err
	}
	if name == "" {
		return TensorInfo{}, errAt(ErrInvalid, at, "tensor with an empty name")
	}
	what := "tensor " + quoteKey(name)
	nd, err := r.u32(what + " dimension count")
	if err != nil {
		return TensorInfo{}, err
	}
	if nd == 0 || nd > MaxDims {
		return TensorInfo{}, errAt(ErrInvalid, at, "%s has %d dimensions, want 1 to %d", what, nd, MaxDims)
	}
	dims := make([]uint64, nd)
	elems := uint64(1)
	for i := range dims {
		d, err := r.u64(what + " dimensions")
		if err != nil {
			return TensorInfo{}, err
		}
		if d == 0 {
			return TensorInfo{}, errAt(ErrInvalid, at, "%s has dimension %d equal to 0, want ≥ 1", what, i)
		}
		if d > math.MaxInt64/elems {
			return TensorInfo{}, errAt(ErrInvalid, at, "%s dimensions %v overflow: the element count exceeds 2^63", what, dims[:i+1])
		}
		dims[i] = d
		elems *= d
	}
	typ, err := r.u32(what + " type")
	if err != nil {
		return TensorInfo{}, err
	}
	qt := quant.Type(typ)
	if !qt.Known() {
		return TensorInfo{}, errAt(ErrInvalid, at, "%s has unknown ggml type %d: the file is corrupt or needs a newer worker", what, typ)
	}
	off, err := r.u64(what + " offset")
	if err != nil {
		return TensorInfo{}, err
	}
	if off%align != 0 {
		return TensorInfo{}, errAt(ErrInvalid, at, "%s data offset %d is not a multiple of the alignment %d", what, off, align)
	}
	bs := uint64(qt.BlockSize())
	if dims[0]%bs != 0 {
		return TensorInfo{}, errAt(ErrInvalid, at, "%s of type %s has rows of %d elements, not a multiple of its block size %d", what, qt, dims[0], bs)
	}
	blocks := elems / bs
	ts := uint64(qt.TypeSize())
	if blocks > math.MaxInt64/ts {
		return TensorInfo{}, errAt(ErrInvalid, at, "%s byte size overflows (%d blocks of %d bytes)", what, blocks, ts)
	}
	return TensorInfo{Name: name, Type: qt, Dims: dims, Offset: off, Size: blocks * ts, InfoOffset: at}, nil
}

func (r *reader) value(t ValueType, what string, depth int) (Value, error) {
	switch t {
	case TypeUint8:
		x, err := r.u8(what)
		return Value{Type: t, v: x}, err
	case TypeInt8:
		x, err := r.u8(what)
		return Value{Type: t, v: int8(x)}, err
	case TypeUint16:
		x, err := r.u16(what)
		return Value{Type: t, v: x}, err
	case TypeInt16:
		x, err := r.u16(what)
		return Value{Type: t, v: int16(x)}, err
	case TypeUint32:
		x, err := r.u32(what)
		return Value{Type: t, v: x}, err
	case TypeInt32:
		x, err := r.u32(what)
		return Value{Type: t, v: int32(x)}, err
	case TypeFloat32:
		x, err := r.u32(what)
		return Value{Type: t, v: math.Float32frombits(x)}, err
	case TypeUint64:
		x, err := r.u64(what)
		return Value{Type: t, v: x}, err
	case TypeInt64:
		x, err := r.u64(what)
		return Value{Type: t, v: int64(x)}, err
	case TypeFloat64:
		x, err := r.u64(what)
		return Value{Type: t, v: math.Float64frombits(x)}, err
	case TypeBool:
		at := r.off
		x, err := r.u8(what)
		if err != nil {
			return Value{}, err
		}
		if x > 1 {
			return Value{}, errAt(ErrInvalid, at, "%s: bool byte is %d, want 0 or 1", what, x)
		}
		return Value{Type: t, v: x == 1}, nil
	case TypeString:
		s, err := r.str(what)
		return Value{Type: t, v: s}, err
	case TypeArray:
		return r.array(what, depth)
	}
	return Value{}, errAt(ErrInvalid, r.off-4, "%s has unknown metadata value type %d (want 0 to 12)", what, uint32(t))
}

func (r *reader) array(what string, depth int) (Value, error) {
	if depth >= maxNesting {
		return Value{}, errAt(ErrInvalid, r.off, "%s nests arrays more than %d deep", what, maxNesting)
	}
	at := r.off
	et32, err := r.u32(what + " array element type")
	if err != nil {
		return Value{}, err
	}
	et := ValueType(et32)
	if !et.valid() {
		return Value{}, errAt(ErrInvalid, at, "%s is an array of unknown element type %d (want 0 to 12)", what, et32)
	}
	n, err := r.u64(what + " array length")
	if err != nil {
		return Value{}, err
	}
	if n > uint64(r.remaining())/uint64(et.minSize()) {
		return Value{}, errAt(ErrTruncated, at, "%s claims %d elements of %s but only %d bytes remain (corrupt or truncated)",
			what, n, et, r.remaining())
	}
	out := Value{Type: TypeArray, ArrayType: et}
	b := r.b[r.off:]
	sz := int64(et.fixedSize())
	switch et {
	case TypeUint8:
		a := make([]uint8, n)
		copy(a, b)
		out.v = a
	case TypeInt8:
		a := make([]int8, n)
		for i := range a {
			a[i] = int8(b[i])
		}
		out.v = a
	case TypeBool:
		a := make([]bool, n)
		for i := range a {
			if b[i] > 1 {
				return Value{}, errAt(ErrInvalid, r.off+int64(i), "%s element %d: bool byte is %d, want 0 or 1", what, i, b[i])
			}
			a[i] = b[i] == 1
		}
		out.v = a
	case TypeUint16:
		a := make([]uint16, n)
		for i := range a {
			a[i] = binary.LittleEndian.Uint16(b[2*i:])
		}
		out.v = a
	case TypeInt16:
		a := make([]int16, n)
		for i := range a {
			a[i] = int16(binary.LittleEndian.Uint16(b[2*i:]))
		}
		out.v = a
	case TypeUint32:
		a := make([]uint32, n)
		for i := range a {
			a[i] = binary.LittleEndian.Uint32(b[4*i:])
		}
		out.v = a
	case TypeInt32:
		a := make([]int32, n)
		for i := range a {
			a[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
		}
		out.v = a
	case TypeFloat32:
		a := make([]float32, n)
		for i := range a {
			a[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		out.v = a
	case TypeUint64:
		a := make([]uint64, n)
		for i := range a {
			a[i] = binary.LittleEndian.Uint64(b[8*i:])
		}
		out.v = a
	case TypeInt64:
		a := make([]int64, n)
		for i := range a {
			a[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
		}
		out.v = a
	case TypeFloat64:
		a := make([]float64, n)
		for i := range a {
			a[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
		out.v = a
	case TypeString:
		a := make([]string, n)
		for i := range a {
			s, err := r.str(what + " array element")
			if err != nil {
				return Value{}, err
			}
			a[i] = s
		}
		out.v = a
		return out, nil
	case TypeArray:
		a := make([]Value, n)
		// Elements of an array of arrays carry no type tag of their own:
		// each is (element type, count, payload).
		for i := range a {
			a[i], err = r.array(what, depth+1)
			if err != nil {
				return Value{}, err
			}
		}
		out.v = a
		return out, nil
	}
	r.off += int64(n) * sz
	return out, nil
}

func quoteKey(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return `"` + sanitize(s) + `"`
}

// sanitize keeps error messages on one line whatever bytes a name holds.
func sanitize(s string) string {
	b := []byte(nil)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
			if b == nil {
				b = []byte(s[:i])
			}
			b = append(b, '\\', 'x', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
			continue
		}
		if b != nil {
			b = append(b, c)
		}
	}
	if b == nil {
		return s
	}
	return string(b)
}
