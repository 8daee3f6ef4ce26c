package cuda

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

type nvrtcProgram uintptr

var nvrtc struct {
	nvrtcVersion           func(major, minor *int32) int32
	nvrtcCreateProgram     func(p *nvrtcProgram, src *byte, name *byte, nHeaders int32, headers, includeNames unsafe.Pointer) int32
	nvrtcDestroyProgram    func(p *nvrtcProgram) int32
	nvrtcCompileProgram    func(p nvrtcProgram, nOpts int32, opts unsafe.Pointer) int32
	nvrtcGetCUBINSize      func(p nvrtcProgram, n *uint64) int32
	nvrtcGetCUBIN          func(p nvrtcProgram, out *byte) int32
	nvrtcGetProgramLogSize func(p nvrtcProgram, n *uint64) int32
	nvrtcGetProgramLog     func(p nvrtcProgram, out *byte) int32
	nvrtcGetErrorString    func(r int32) *byte
}

var (
	nvrtcOnce     sync.Once
	nvrtcErr      error
	nvrtcAttempts []LibraryAttempt
)

func loadNVRTC(libDir string) ([]LibraryAttempt, error) {
	nvrtcOnce.Do(func() {
		lib, err := openLibrary([]string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}, searchDirs(libDir), &nvrtcAttempts)
		if err != nil {
			nvrtcErr = err
			return
		}
		nvrtcErr = bind(lib, "libnvrtc", map[string]any{
			"nvrtcVersion": &nvrtc.nvrtcVersion, "nvrtcCreateProgram": &nvrtc.nvrtcCreateProgram,
			"nvrtcDestroyProgram": &nvrtc.nvrtcDestroyProgram, "nvrtcCompileProgram": &nvrtc.nvrtcCompileProgram,
			"nvrtcGetCUBINSize": &nvrtc.nvrtcGetCUBINSize, "nvrtcGetCUBIN": &nvrtc.nvrtcGetCUBIN,
			"nvrtcGetProgramLogSize": &nvrtc.nvrtcGetProgramLogSize, "nvrtcGetProgramLog": &nvrtc.nvrtcGetProgramLog,
			"nvrtcGetErrorString": &nvrtc.nvrtcGetErrorString,
		})
	})
	return nvrtcAttempts, nvrtcErr
}

func nvrtcVersion() string {
	var maj, min int32
	if nvrtc.nvrtcVersion == nil || nvrtc.nvrtcVersion(&maj, &min) != 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d.%d", maj, min)
}

// cacheKey names a compiled cubin: a hash of the whole translation unit
// (every kernel file), the compiler options (arch and -D defines) and the
// NVRTC version.
func cacheKey(src string, opts []string, version string) string {
	sum := sha256.Sum256([]byte(src + "\x00" + strings.Join(opts, " ") + "\x00" + version))
	return hex.EncodeToString(sum[:16])
}

// nvrtcError is a failed NVRTC call as an Error (CUDA_ERROR, matching
// backend.ErrDevice); hint carries the compiler's log.
func nvrtcError(api string, r int32, hint string) error {
	return &Error{API: api, Code: int(r), Name: goString(nvrtc.nvrtcGetErrorString(r)), Hint: hint}
}

func cstr(s string) *byte {
	b := append([]byte(s), 0)
	return &b[0]
}

// kernelCacheDir is where compiled kernels are kept:
// $WORKER_KERNEL_CACHE, else $XDG_CACHE_HOME/worker-orcd/kernels, else
// ~/.cache/worker-orcd/kernels.
func kernelCacheDir() string {
	if d := os.Getenv("WORKER_KERNEL_CACHE"); d != "" {
		return d
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "worker-orcd", "kernels")
}

// compile turns CUDA C source into a cubin for sm_<arch> (defines are -D
// options), from the disk cache when the same source, options and NVRTC
// version were compiled before.
func compile(name, src string, defines []string, arch int) ([]byte, error) {
	opts := append([]string{fmt.Sprintf("--gpu-architecture=sm_%d", arch), "--std=c++17", "-default-device"}, defines...)
	key := cacheKey(src, opts, nvrtcVersion())
	dir := kernelCacheDir()
	path := ""
	if dir != "" {
		path = filepath.Join(dir, fmt.Sprintf("%s-sm%d-%s.cubin", name, arch, key))
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return b, nil
		}
	}
	var prog nvrtcProgram
	if r := nvrtc.nvrtcCreateProgram(&prog, cstr(src), cstr(name+".cu"), 0, nil, nil); r != 0 {
		return nil, nvrtcError("nvrtcCreateProgram("+name+")", r, "")
	}
	defer nvrtc.nvrtcDestroyProgram(&prog)
	// An array of C strings: the array and each string pinned while NVRTC
	// reads them.
	cOpts := make([]*byte, len(opts))
	var pin runtime.Pinner
	defer pin.Unpin()
	pin.Pin(&cOpts[0])
	for i, o := range opts {
		cOpts[i] = cstr(o)
		pin.Pin(cOpts[i])
	}
	r := nvrtc.nvrtcCompileProgram(prog, int32(len(cOpts)), unsafe.Pointer(&cOpts[0]))
	pin.Unpin()
	if r != 0 {
		var n uint64
		nvrtc.nvrtcGetProgramLogSize(prog, &n)
		log := make([]byte, n+1)
		nvrtc.nvrtcGetProgramLog(prog, &log[0])
		return nil, nvrtcError(fmt.Sprintf("NVRTC compiling kernels %s for sm_%d", name, arch), r, strings.TrimSpace(goString(&log[0])))
	}
	var n uint64
	if r := nvrtc.nvrtcGetCUBINSize(prog, &n); r != 0 || n == 0 {
		return nil, nvrtcError("nvrtcGetCUBINSize("+name+")", r, fmt.Sprintf("%d bytes", n))
	}
	cubin := make([]byte, n)
	if r := nvrtc.nvrtcGetCUBIN(prog, &cubin[0]); r != 0 {
		return nil, nvrtcError("nvrtcGetCUBIN("+name+")", r, "")
	}
	if path != "" {
		if err := os.MkdirAll(dir, 0o755); err == nil {
			tmp := path + ".tmp"
			if os.WriteFile(tmp, cubin, 0o644) == nil {
				os.Rename(tmp, path)
			}
		}
	}
	return cubin, nil
}
