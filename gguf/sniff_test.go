package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func TestSniff(t *testing.T) {
	le := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	gg := func(ver []byte, rest ...byte) []byte { return append(append([]byte(Magic), ver...), rest...) }
	safetensors := binary.LittleEndian.AppendUint64(nil, 20)
	safetensors = append(safetensors, []byte(`{"w":{"dtype":"F16"}}`)...)
	cases := []struct {
		name    string
		data    []byte
		kind    FileKind
		head    []byte
		version uint32 // when the head holds it
		hint    string
	}{
		{"GGUF v3", gg(le(3), 1, 2, 3, 4), KindGGUF, gg(le(3)), 3, "a GGUF file"},
		{"GGUF v2 header only", gg(le(2)), KindGGUF, gg(le(2)), 2, "a GGUF file"},
		{"GGUF cut in the version", gg([]byte{3, 0}), KindGGUF, gg([]byte{3, 0}), 0, "a GGUF file"},
		{"empty", nil, KindEmpty, []byte{}, 0, "the file is empty"},
		{"short", []byte("GG"), KindShort, []byte("GG"), 0, "the file is only 2 bytes: an interrupted download"},
		{"Git LFS pointer", []byte("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"), KindGitLFSPointer,
			[]byte("version "), 0, "Git LFS pointer file, not the model"},
		{"HTML", []byte("\n<!DOCTYPE html><html><body>403 Forbidden</body></html>"), KindHTML, []byte("\n<!DOCTY"), 0, "HTML page"},
		{"HTML without doctype", []byte("  <HTML>gone</HTML>"), KindHTML, []byte("  <HTML>"), 0, "HTML page"},
		{"JSON", []byte(` {"error":"not found"}`), KindJSON, []byte(` {"error`), 0, "JSON document"},
		{"zeros", make([]byte, 4096), KindZeros, make([]byte, 8), 0, "zero bytes: space preallocated"},
		{"safetensors", safetensors, KindSafetensors, safetensors[:8], 0, "safetensors file"},
		{"GGML magic", []byte("GGMLxxxxxxxxxxxx"), KindUnknown, []byte("GGMLxxxx"), 0, "not GGUF, or its beginning is corrupt"},
		{"text", []byte("hello world, not a model"), KindUnknown, []byte("hello wo"), 0, "not GGUF"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Sniff(bytes.NewReader(c.data), int64(len(c.data)))
			if err != nil {
				t.Fatal(err)
			}
			if s.Kind != c.kind || !bytes.Equal(s.Head, c.head) || s.Size != int64(len(c.data)) || !strings.Contains(s.Hint(), c.hint) {
				t.Errorf("Sniff = kind %d head %q size %d hint %q; want kind %d head %q size %d hint containing %q",
					s.Kind, s.Head, s.Size, s.Hint(), c.kind, c.head, len(c.data), c.hint)
			}
			if wantVersion := c.kind == KindGGUF && len(c.head) == 8; s.HasVersion() != wantVersion || s.Version != c.version {
				t.Errorf("HasVersion %v version %d, want %v %d", s.HasVersion(), s.Version, wantVersion, c.version)
			}
		})
	}
}

// failingReader fails every read.
type failingReader struct{}

func (failingReader) ReadAt([]byte, int64) (int, error) { return 0, errors.New("input/output error") }

func TestSniffReadError(t *testing.T) {
	if _, err := Sniff(failingReader{}, 100); err == nil || !strings.Contains(err.Error(), "reading the first bytes of the file: input/output error") {
		t.Errorf("Sniff on a failing reader: %v, want the read error", err)
	}
}

func TestClassifyVersion(t *testing.T) {
	cases := []struct {
		v    uint32
		want VersionStatus
	}{
		{2, VersionSupported}, {3, VersionSupported}, {1, VersionTooOld}, {0, VersionUnknown}, {4, VersionUnknown},
		{0x03000000, VersionByteSwapped}, {0x00030000, VersionByteSwapped}, {0xdeadbeef, VersionUnknown},
	}
	for _, c := range cases {
		if got := ClassifyVersion(c.v); got != c.want {
			t.Errorf("ClassifyVersion(%#x) = %d, want %d", c.v, got, c.want)
		}
		// Parse refuses exactly what ClassifyVersion does not support.
		_, err := Parse(append([]byte(Magic), binary.LittleEndian.AppendUint32(nil, c.v)...))
		if refused := errors.Is(err, ErrVersion); refused != (c.want != VersionSupported) {
			t.Errorf("Parse with version %#x: %v; ClassifyVersion says %d", c.v, err, c.want)
		}
	}
}
