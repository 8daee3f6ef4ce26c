//go:build unix

package gguf

import (
	"os"
	"syscall"
)

// mapFile maps a file read-only.
func mapFile(fh *os.File, size int64) ([]byte, func() error, error) {
	b, err := syscall.Mmap(int(fh.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return b, func() error { return syscall.Munmap(b) }, nil
}
