// Package cuda runs the decoder on an NVIDIA GPU. The binary is built with
// CGO_ENABLED=0: libcuda (driver API) and libnvrtc (run-time compiler) are
// loaded at run time with purego, kernels are CUDA C embedded in the binary
// and compiled by NVRTC for the card's exact architecture on first use, and
// cached on disk.
//
// A CUDA context is bound to an OS thread, so every driver call of a Device
// runs on one goroutine locked to its thread (Device.do).
package cuda

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ebitengine/purego"
)

// LibraryAttempt records one place a library was looked for.
type LibraryAttempt struct {
	Name string `json:"name"`          // the library, e.g. "libcuda.so.1"
	Path string `json:"path"`          // what was passed to dlopen
	Err  string `json:"err,omitempty"` // why it failed; "" when it loaded
}

// ErrLibraryNotFound: a NVIDIA library could not be loaded from any place.
var ErrLibraryNotFound = errors.New("cuda: library not found")

// searchDirs returns the directories tried after the loader's default, in
// order: an explicit directory (flag or WORKER_CUDA_LIB_PATH) comes first,
// then the loader's default (""), then /usr/local/cuda/lib64 and
// $CUDA_HOME/lib64.
func searchDirs(explicit string) []string {
	var dirs []string
	if explicit != "" {
		dirs = append(dirs, explicit)
	} else if env := os.Getenv("WORKER_CUDA_LIB_PATH"); env != "" {
		dirs = append(dirs, env)
	}
	dirs = append(dirs, "", "/usr/local/cuda/lib64")
	if home := os.Getenv("CUDA_HOME"); home != "" {
		dirs = append(dirs, filepath.Join(home, "lib64"))
	}
	return dirs
}

// openLibrary dlopens the first of names found in dirs, recording attempts.
func openLibrary(names []string, dirs []string, attempts *[]LibraryAttempt) (uintptr, error) {
	var tried []string
	for _, dir := range dirs {
		for _, name := range names {
			path := name
			if dir != "" {
				path = filepath.Join(dir, name)
				if _, err := os.Stat(path); err != nil {
					continue // not there: not worth an attempt line
				}
			}
			h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
			a := LibraryAttempt{Name: name, Path: path}
			if err != nil {
				a.Err = err.Error()
				tried = append(tried, path+": "+a.Err)
				*attempts = append(*attempts, a)
				continue
			}
			*attempts = append(*attempts, a)
			return h, nil
		}
	}
	where := make([]string, 0, len(dirs))
	for _, d := range dirs {
		if d == "" {
			d = "the loader's default paths"
		}
		where = append(where, d)
	}
	failed := ""
	if len(tried) > 0 {
		failed = " (found but not loadable: " + strings.Join(tried, "; ") + ")"
	}
	return 0, fmt.Errorf("%w: none of %s could be loaded from %s%s (set WORKER_CUDA_LIB_PATH to the directory that holds it)",
		ErrLibraryNotFound, strings.Join(names, ", "), strings.Join(where, ", "), failed)
}

// bind sets each function pointer in fns to the symbol of the same name.
func bind(lib uintptr, libName string, fns map[string]any) error {
	for name, fptr := range fns {
		sym, err := purego.Dlsym(lib, name)
		if err != nil {
			return fmt.Errorf("cuda: %s has no symbol %s (library too old?): %v", libName, name, err)
		}
		purego.RegisterFunc(fptr, sym)
	}
	return nil
}
