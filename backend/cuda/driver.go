package cuda

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"

	"worker-orcd/backend"
)

// cuResult is a CUresult.
type cuResult int32

// Handle types of the driver API.
type (
	cuDevice    int32
	cuContext   uintptr
	cuModule    uintptr
	cuFunction  uintptr
	cuStream    uintptr
	cuEvent     uintptr
	cuGraph     uintptr
	cuGraphExec uintptr
	devicePtr   uint64
)

// The driver entry points this package uses, bound by loadDriver.
var drv struct {
	cuInit                       func(flags uint32) cuResult
	cuDriverGetVersion           func(v *int32) cuResult
	cuDeviceGetCount             func(n *int32) cuResult
	cuDeviceGet                  func(d *cuDevice, ordinal int32) cuResult
	cuDeviceGetName              func(name *byte, n int32, d cuDevice) cuResult
	cuDeviceGetAttribute         func(v *int32, attr int32, d cuDevice) cuResult
	cuDeviceTotalMem_v2          func(b *uint64, d cuDevice) cuResult
	cuDevicePrimaryCtxRetain     func(c *cuContext, d cuDevice) cuResult
	cuDevicePrimaryCtxRelease_v2 func(d cuDevice) cuResult
	cuCtxSetCurrent              func(c cuContext) cuResult
	cuCtxSynchronize             func() cuResult
	cuMemGetInfo_v2              func(free, total *uint64) cuResult
	cuMemAlloc_v2                func(p *devicePtr, n uint64) cuResult
	cuMemFree_v2                 func(p devicePtr) cuResult
	cuMemAllocHost_v2            func(p *unsafe.Pointer, n uint64) cuResult
	cuMemFreeHost                func(p unsafe.Pointer) cuResult
	cuMemcpyHtoD_v2              func(dst devicePtr, src unsafe.Pointer, n uint64) cuResult
	cuMemcpyDtoH_v2              func(dst unsafe.Pointer, src devicePtr, n uint64) cuResult
	cuMemcpyHtoDAsync_v2         func(dst devicePtr, src unsafe.Pointer, n uint64, s cuStream) cuResult
	cuMemcpyDtoHAsync_v2         func(dst unsafe.Pointer, src devicePtr, n uint64, s cuStream) cuResult
	cuMemcpyDtoDAsync_v2         func(dst, src devicePtr, n uint64, s cuStream) cuResult
	cuMemsetD32Async             func(dst devicePtr, v uint32, n uint64, s cuStream) cuResult
	cuModuleLoadData             func(m *cuModule, image unsafe.Pointer) cuResult
	cuModuleUnload               func(m cuModule) cuResult
	cuModuleGetFunction          func(f *cuFunction, m cuModule, name *byte) cuResult
	cuLaunchKernel               func(f cuFunction, gx, gy, gz, bx, by, bz, shared uint32, s cuStream, params unsafe.Pointer, extra unsafe.Pointer) cuResult
	cuStreamCreate               func(s *cuStream, flags uint32) cuResult
	cuStreamDestroy_v2           func(s cuStream) cuResult
	cuStreamSynchronize          func(s cuStream) cuResult
	cuEventCreate                func(e *cuEvent, flags uint32) cuResult
	cuEventRecord                func(e cuEvent, s cuStream) cuResult
	cuEventSynchronize           func(e cuEvent) cuResult
	cuEventDestroy_v2            func(e cuEvent) cuResult
	cuEventElapsedTime           func(ms *float32, start, end cuEvent) cuResult
	cuGetErrorName               func(r cuResult, s **byte) cuResult
	cuPointerGetAttribute        func(data unsafe.Pointer, attr int32, p devicePtr) cuResult
	cuFuncSetAttribute           func(f cuFunction, attr int32, v int32) cuResult
	cuFuncGetAttribute           func(v *int32, attr int32, f cuFunction) cuResult
	cuStreamBeginCapture_v2      func(s cuStream, mode int32) cuResult
	cuStreamEndCapture           func(s cuStream, g *cuGraph) cuResult
	cuGraphInstantiateWithFlags  func(e *cuGraphExec, g cuGraph, flags uint64) cuResult
	cuGraphLaunch                func(e cuGraphExec, s cuStream) cuResult
	cuGraphExecDestroy           func(e cuGraphExec) cuResult
	cuGraphDestroy               func(g cuGraph) cuResult

	// cuLaunchKernelEx is optional (CUDA 11.8+ drivers): nil when absent,
	// then launches never use programmatic dependent launch.
	cuLaunchKernelEx func(config *cuLaunchConfig, f cuFunction, params unsafe.Pointer, extra unsafe.Pointer) cuResult
}

var (
	driverOnce     sync.Once
	driverErr      error
	driverAttempts []LibraryAttempt
)

// loadDriver loads libcuda once and calls cuInit.
func loadDriver(libDir string) ([]LibraryAttempt, error) {
	driverOnce.Do(func() {
		lib, err := openLibrary([]string{"libcuda.so.1", "libcuda.so"}, searchDirs(libDir), &driverAttempts)
		if err != nil {
			driverErr = err
			return
		}
		fns := map[string]any{}
		for name, p := range driverFuncs() {
			fns[name] = p
		}
		if driverErr = bind(lib, "libcuda", fns); driverErr != nil {
			return
		}
		if sym, err := purego.Dlsym(lib, "cuLaunchKernelEx"); err == nil {
			purego.RegisterFunc(&drv.cuLaunchKernelEx, sym)
		}
		if r := drv.cuInit(0); r != 0 {
			driverErr = &Error{API: "cuInit", Code: int(r), Name: errName(r),
				Hint: "the driver loaded but found no usable GPU (is the NVIDIA driver running and the device visible to this process?)"}
		}
	})
	return driverAttempts, driverErr
}

func driverFuncs() map[string]any {
	return map[string]any{
		"cuInit": &drv.cuInit, "cuDriverGetVersion": &drv.cuDriverGetVersion, "cuDeviceGetCount": &drv.cuDeviceGetCount,
		"cuDeviceGet": &drv.cuDeviceGet, "cuDeviceGetName": &drv.cuDeviceGetName, "cuDeviceGetAttribute": &drv.cuDeviceGetAttribute,
		"cuDeviceTotalMem_v2": &drv.cuDeviceTotalMem_v2, "cuDevicePrimaryCtxRetain": &drv.cuDevicePrimaryCtxRetain,
		"cuDevicePrimaryCtxRelease_v2": &drv.cuDevicePrimaryCtxRelease_v2, "cuCtxSetCurrent": &drv.cuCtxSetCurrent,
		"cuCtxSynchronize": &drv.cuCtxSynchronize, "cuMemGetInfo_v2": &drv.cuMemGetInfo_v2, "cuMemAlloc_v2": &drv.cuMemAlloc_v2,
		"cuMemFree_v2": &drv.cuMemFree_v2, "cuMemAllocHost_v2": &drv.cuMemAllocHost_v2, "cuMemFreeHost": &drv.cuMemFreeHost,
		"cuMemcpyHtoD_v2": &drv.cuMemcpyHtoD_v2, "cuMemcpyDtoH_v2": &drv.cuMemcpyDtoH_v2,
		"cuMemcpyHtoDAsync_v2": &drv.cuMemcpyHtoDAsync_v2, "cuMemcpyDtoHAsync_v2": &drv.cuMemcpyDtoHAsync_v2,
		"cuMemcpyDtoDAsync_v2": &drv.cuMemcpyDtoDAsync_v2, "cuMemsetD32Async": &drv.cuMemsetD32Async,
		"cuModuleLoadData": &drv.cuModuleLoadData, "cuModuleUnload": &drv.cuModuleUnload,
		"cuModuleGetFunction": &drv.cuModuleGetFunction, "cuLaunchKernel": &drv.cuLaunchKernel,
		"cuStreamCreate": &drv.cuStreamCreate, "cuStreamDestroy_v2": &drv.cuStreamDestroy_v2,
		"cuStreamSynchronize": &drv.cuStreamSynchronize, "cuEventCreate": &drv.cuEventCreate, "cuEventRecord": &drv.cuEventRecord,
		"cuEventSynchronize": &drv.cuEventSynchronize, "cuEventDestroy_v2": &drv.cuEventDestroy_v2, "cuEventElapsedTime": &drv.cuEventElapsedTime,
		"cuGetErrorName": &drv.cuGetErrorName, "cuPointerGetAttribute": &drv.cuPointerGetAttribute,
		"cuFuncSetAttribute": &drv.cuFuncSetAttribute, "cuFuncGetAttribute": &drv.cuFuncGetAttribute,
		"cuStreamBeginCapture_v2": &drv.cuStreamBeginCapture_v2, "cuStreamEndCapture": &drv.cuStreamEndCapture,
		"cuGraphInstantiateWithFlags": &drv.cuGraphInstantiateWithFlags, "cuGraphLaunch": &drv.cuGraphLaunch,
		"cuGraphExecDestroy": &drv.cuGraphExecDestroy, "cuGraphDestroy": &drv.cuGraphDestroy,
	}
}

// cuLaunchAttr is CUlaunchAttribute: an id, padding, a 64-byte value.
type cuLaunchAttr struct {
	id    uint32
	_     uint32
	value [64]byte
}

// attrProgrammaticStreamSerialization is
// CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION: with value 1 the
// kernel may start while the previous kernel in the stream runs (it waits
// for it itself: pdl_entry in common.cuh).
const attrProgrammaticStreamSerialization = 6

// cuLaunchConfig is CUlaunchConfig (the layout of cuda.h on 64-bit hosts).
type cuLaunchConfig struct {
	gridX, gridY, gridZ    uint32
	blockX, blockY, blockZ uint32
	shared                 uint32
	_                      uint32
	stream                 cuStream
	attrs                  *cuLaunchAttr
	numAttrs               uint32
	_                      uint32
}

// Error is a failed CUDA call: the API, the CUDA error name and code.
type Error struct {
	API  string
	Code int
	Name string
	Hint string // what to do, when known
}

// Is makes an Error match backend.ErrDevice.
func (e *Error) Is(target error) bool { return target == backend.ErrDevice }

func (e *Error) Error() string {
	s := fmt.Sprintf("CUDA_ERROR: %s failed: %s (%d)", e.API, e.Name, e.Code)
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	return s
}

// cudaErrorOutOfMemory is CUDA_ERROR_OUT_OF_MEMORY.
const cudaErrorOutOfMemory = 2

func errName(r cuResult) string {
	if drv.cuGetErrorName != nil {
		var p *byte
		if drv.cuGetErrorName(r, &p) == 0 && p != nil {
			return goString(p)
		}
	}
	return fmt.Sprintf("CUDA error %d", int(r))
}

func check(api string, r cuResult) error {
	if r == 0 {
		return nil
	}
	e := &Error{API: api, Code: int(r), Name: errName(r)}
	if r == 201 {
		e.Hint = "invalid context: a driver call came from a thread without the device's context (a bug: report it)"
	}
	return e
}

// goString copies a NUL-terminated C string.
func goString(p *byte) string {
	if p == nil {
		return ""
	}
	var b []byte
	for ptr := unsafe.Pointer(p); *(*byte)(ptr) != 0; ptr = unsafe.Add(ptr, 1) {
		b = append(b, *(*byte)(ptr))
	}
	return string(b)
}

// Device attributes (CUdevice_attribute).
const (
	attrMultiprocessorCount    = 16
	attrComputeMajor           = 75
	attrComputeMinor           = 76
	attrMaxSharedPerBlockOptin = 97
)
