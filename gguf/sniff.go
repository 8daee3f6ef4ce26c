package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// VersionStatus classifies the version field of a GGUF header.
type VersionStatus int

// The version classes.
const (
	VersionSupported   VersionStatus = iota // 2 or 3: what this reader reads
	VersionTooOld                           // 1: an early format, re-convert the model
	VersionByteSwapped                      // the low 16 bits are zero: a big-endian file
	VersionUnknown                          // anything else: a newer format or a corrupt header
)

// ClassifyVersion says whether this reader supports a header's version
// field, and if not, why. Parse and the doctor command both go by it.
func ClassifyVersion(v uint32) VersionStatus {
	switch {
	case v == 2 || v == 3:
		return VersionSupported
	case v == 1:
		return VersionTooOld
	case v&0xFFFF == 0 && v != 0:
		return VersionByteSwapped
	}
	return VersionUnknown
}

// FileKind is what a file that should be a GGUF model most likely is,
// judged from its first bytes (see Sniff).
type FileKind int

// The file kinds Sniff tells apart.
const (
	KindGGUF          FileKind = iota // starts with the magic "GGUF"
	KindEmpty                         // 0 bytes
	KindShort                         // 1 to 3 bytes: less than the magic
	KindGitLFSPointer                 // a Git LFS pointer file instead of the object
	KindHTML                          // an HTML page (an error or login page saved as the model)
	KindJSON                          // a JSON document
	KindZeros                         // zero bytes: preallocated space a download never wrote
	KindSafetensors                   // a safetensors file (8-byte header length, then JSON)
	KindUnknown                       // none of these
)

// Sniffed is what the first bytes of a file say about it.
type Sniffed struct {
	Size int64    // the file's size
	Head []byte   // its first bytes, at most 8: the magic and the version field
	Kind FileKind // what it most likely is
	// Version is the header's version field; valid when Kind is KindGGUF
	// and Head holds all 8 bytes.
	Version uint32
}

// HasVersion reports whether the file is long enough to hold the version
// field after the magic.
func (s Sniffed) HasVersion() bool { return s.Kind == KindGGUF && len(s.Head) == 8 }

// sniffLen is how much of a file that is not GGUF is read to tell what it is.
const sniffLen = 512

// Sniff reads the first bytes of a file of size bytes and says what it is:
// a GGUF file (with its version field), or what else it most likely is. It
// fails only when r cannot be read.
func Sniff(r io.ReaderAt, size int64) (Sniffed, error) {
	s := Sniffed{Size: size}
	var buf [sniffLen]byte
	n, err := r.ReadAt(buf[:min(int64(len(buf)), max(size, 0))], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return s, fmt.Errorf("reading the first bytes of the file: %w", err)
	}
	b := buf[:n]
	s.Head = append([]byte(nil), b[:min(n, 8)]...)
	switch {
	case n >= 4 && string(b[:4]) == Magic:
		s.Kind = KindGGUF
		if n >= 8 {
			s.Version = binary.LittleEndian.Uint32(b[4:8])
		}
	case size == 0:
		s.Kind = KindEmpty
	case size < 4:
		s.Kind = KindShort
	default:
		s.Kind = kindOf(b, size)
	}
	return s, nil
}

// kindOf tells what a file that is not GGUF is from its first bytes.
func kindOf(b []byte, size int64) FileKind {
	text := strings.ToLower(string(b))
	switch {
	case strings.HasPrefix(string(b), "version https://git-lfs"):
		return KindGitLFSPointer
	case strings.Contains(text, "<html") || strings.Contains(text, "<!doctype"):
		return KindHTML
	case strings.HasPrefix(strings.TrimSpace(string(b)), "{"):
		return KindJSON
	case allZero(b):
		return KindZeros
	case len(b) > 8 && binary.LittleEndian.Uint64(b[:8]) < uint64(size) && b[8] == '{':
		return KindSafetensors
	}
	return KindUnknown
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return len(b) > 0
}

// Hint says in a sentence what the file is and, where it is not a GGUF
// file, how it most likely came to be.
func (s Sniffed) Hint() string {
	switch s.Kind {
	case KindGGUF:
		return "a GGUF file"
	case KindEmpty:
		return "the file is empty: the download failed before writing anything"
	case KindShort:
		return fmt.Sprintf("the file is only %d bytes: an interrupted download", s.Size)
	case KindGitLFSPointer:
		return "this is a Git LFS pointer file, not the model: the repository was cloned without git-lfs"
	case KindHTML:
		return "this is an HTML page (an error or login page saved instead of the model)"
	case KindJSON:
		return "this is a JSON document, not a GGUF model (an error response, or a safetensors header?)"
	case KindZeros:
		return "the file starts with zero bytes: space preallocated by a download that never wrote the data"
	case KindSafetensors:
		return "this looks like a safetensors file: convert it to GGUF with llama.cpp's convert_hf_to_gguf.py"
	}
	return "the file is not GGUF, or its beginning is corrupt"
}
