package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// npyDumper writes each intermediate tensor a backend reports as a NumPy
// .npy file (float32, shape [rows, cols]) named step<k>-<name>.npy, where k
// counts forward steps (step 0 is the prompt).
type npyDumper struct {
	dir  string
	step int
	seen map[string]bool
	err  error
}

func (d *npyDumper) dump(name string, rows, cols int, data []float32) {
	if d.err != nil {
		return
	}
	if d.seen == nil {
		d.seen = map[string]bool{}
		d.err = os.MkdirAll(d.dir, 0o755)
	}
	if d.seen[name] { // the same name again: a new step began
		d.step++
		clear(d.seen)
	}
	d.seen[name] = true
	if d.err == nil {
		d.err = writeNPY(filepath.Join(d.dir, fmt.Sprintf("step%03d-%s.npy", d.step, name)), rows, cols, data)
	}
	if d.err != nil {
		fmt.Fprintln(os.Stderr, "worker-orcd: --dump-tensors:", d.err)
	}
}

// writeNPY writes a 2-D little-endian float32 array in NumPy's format 1.0.
func writeNPY(path string, rows, cols int, data []float32) error {
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", rows, cols)
	// magic(6) + version(2) + header length(2) + header + padding, a multiple of 64.
	total := 10 + len(header) + 1
	pad := (64 - total%64) % 64
	buf := make([]byte, 0, total+pad+4*len(data))
	buf = append(buf, "\x93NUMPY\x01\x00"...)
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(header)+pad+1))
	buf = append(buf, header...)
	for range pad {
		buf = append(buf, ' ')
	}
	buf = append(buf, '\n')
	for _, v := range data {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
	}
	return os.WriteFile(path, buf, 0o644)
}
