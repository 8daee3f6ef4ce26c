package cuda

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"worker-orcd/backend"
)

// Device is one GPU with its primary context. Every driver call runs on the
// device's own goroutine, locked to one OS thread with the context current
// (a context is bound to a thread; a call from another thread fails with
// CUDA_ERROR_INVALID_CONTEXT).
type Device struct {
	Index    int
	Name     string
	Major    int
	Minor    int
	SMs      int
	Total    int64
	dev      cuDevice
	ctx      cuContext
	stream   cuStream
	calls    chan func()
	quit     chan struct{}  // closed by Close: the device goroutine releases the context and exits
	done     chan struct{}  // closed when the device goroutine has exited
	syncEach bool           // WORKER_CUDA_SYNC=1: synchronize and check after every launch
	prof     *kernelProfile // WORKER_CUDA_PROFILE=1: every launch timed (profile.go)
	// pdl: kernels are launched with programmatic stream serialization
	// (sm_90+, cuLaunchKernelEx present, WORKER_CUDA_PDL not 0): each is
	// scheduled while the one before it runs and waits for it in
	// pdl_entry, which hides the launch latency between dependent kernels.
	pdl bool
	// failAlloc (tests) is asked before each allocation; an error it
	// returns is the allocation's, the driver is not called.
	failAlloc func(n int64, purpose string) error
	retained  bool // the primary context is retained (released on Close)

	closeOnce sync.Once
	closeErr  error

	mu    sync.Mutex
	used  map[string]int64 // bytes allocated, by purpose
	funcs map[string]cuFunction
}

// Purposes for allocations (VRAM is reported by purpose).
const (
	PurposeWeights     = "weights"
	PurposeKVCache     = "kv_cache"
	PurposeActivations = "activations"
	PurposeWorkspace   = "workspace"
)

// ErrDeviceClosed is returned by every call on a Device (and on a Backend
// and its KV caches) after Close.
var ErrDeviceClosed = errors.New("cuda: device closed")

// OpenDevice loads the driver and NVRTC and opens GPU index.
func OpenDevice(index int, libDir string) (*Device, error) {
	if _, err := loadDriver(libDir); err != nil {
		return nil, err
	}
	if _, err := loadNVRTC(libDir); err != nil {
		return nil, err
	}
	d := newDevice(index)
	started := make(chan error)
	go d.run(started)
	if err := <-started; err != nil {
		return nil, err
	}
	return d, nil
}

// newDevice returns a Device whose goroutine is not started yet.
func newDevice(index int) *Device {
	return &Device{Index: index, calls: make(chan func()), quit: make(chan struct{}), done: make(chan struct{}),
		used: map[string]int64{}, funcs: map[string]cuFunction{}, syncEach: os.Getenv("WORKER_CUDA_SYNC") == "1"}
}

func (d *Device) run(started chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := d.init(); err != nil {
		started <- errors.Join(err, d.release())
		close(d.done)
		return
	}
	started <- nil
	d.serve()
}

// serve runs calls until Close, then releases the context.
func (d *Device) serve() {
	defer close(d.done)
	for {
		select {
		case f := <-d.calls:
			f()
		case <-d.quit:
			d.closeErr = d.release()
			return
		}
	}
}

// release destroys the stream and releases the primary context, as far as
// they were created; the memory of the context goes with it.
func (d *Device) release() error {
	var errs []error
	if d.prof != nil {
		d.prof.report(os.Stderr)
		d.prof = nil
	}
	if d.stream != 0 {
		errs = append(errs, check("cuStreamDestroy", drv.cuStreamDestroy_v2(d.stream)))
		d.stream = 0
	}
	if d.retained {
		errs = append(errs, check("cuDevicePrimaryCtxRelease", drv.cuDevicePrimaryCtxRelease_v2(d.dev)))
		d.retained = false
	}
	d.mu.Lock()
	clear(d.used)
	d.mu.Unlock()
	return errors.Join(errs...)
}

func (d *Device) init() error {
	var n int32
	if err := check("cuDeviceGetCount", drv.cuDeviceGetCount(&n)); err != nil {
		return err
	}
	if d.Index < 0 || d.Index >= int(n) {
		return fmt.Errorf("cuda: GPU %d requested but %d present (use --device cuda:0 … cuda:%d)", d.Index, n, max(n-1, 0))
	}
	if err := check("cuDeviceGet", drv.cuDeviceGet(&d.dev, int32(d.Index))); err != nil {
		return err
	}
	name := make([]byte, 256)
	if err := check("cuDeviceGetName", drv.cuDeviceGetName(&name[0], int32(len(name)), d.dev)); err != nil {
		return err
	}
	d.Name = goString(&name[0])
	for _, a := range []struct {
		attr int32
		dst  *int
	}{{attrComputeMajor, &d.Major}, {attrComputeMinor, &d.Minor}, {attrMultiprocessorCount, &d.SMs}} {
		var v int32
		if err := check("cuDeviceGetAttribute", drv.cuDeviceGetAttribute(&v, a.attr, d.dev)); err != nil {
			return err
		}
		*a.dst = int(v)
	}
	var total uint64
	if err := check("cuDeviceTotalMem", drv.cuDeviceTotalMem_v2(&total, d.dev)); err != nil {
		return err
	}
	d.Total = int64(total)
	d.pdl = pdlWanted(d.Arch(), drv.cuLaunchKernelEx != nil, os.Getenv("WORKER_CUDA_PDL"))
	if err := check("cuDevicePrimaryCtxRetain", drv.cuDevicePrimaryCtxRetain(&d.ctx, d.dev)); err != nil {
		return err
	}
	d.retained = true
	if err := check("cuCtxSetCurrent", drv.cuCtxSetCurrent(d.ctx)); err != nil {
		return err
	}
	if err := check("cuStreamCreate", drv.cuStreamCreate(&d.stream, 1 /* non-blocking */)); err != nil {
		return err
	}
	if profileEnabled() {
		p, err := newKernelProfile()
		if err != nil {
			return err
		}
		d.prof = p
	}
	return nil
}

// do runs f on the device's thread and waits for it; after Close it
// returns ErrDeviceClosed without running f.
func (d *Device) do(f func() error) error {
	var err error
	done := make(chan struct{})
	call := func() {
		defer close(done)
		err = f()
	}
	select {
	case d.calls <- call:
	case <-d.quit:
		return ErrDeviceClosed
	}
	<-done
	return err
}

// Close destroys the stream, releases the context and stops the device
// goroutine, and waits for that; later calls return ErrDeviceClosed. It
// may be called more than once.
func (d *Device) Close() error {
	d.closeOnce.Do(func() {
		close(d.quit)
		<-d.done
	})
	return d.closeErr
}

// pdlWanted reports whether launches use programmatic dependent launch:
// on sm_90 and later, when the driver has cuLaunchKernelEx, unless env
// (WORKER_CUDA_PDL) is "0".
func pdlWanted(arch int, haveEx bool, env string) bool {
	return arch >= 90 && haveEx && env != "0"
}

// Arch is the compute capability as an NVRTC arch number (90 for sm_90).
func (d *Device) Arch() int { return d.Major*10 + d.Minor }

// MemInfo returns free and total device memory.
func (d *Device) MemInfo() (free, total int64, err error) {
	err = d.do(func() error {
		var f, t uint64
		if err := check("cuMemGetInfo", drv.cuMemGetInfo_v2(&f, &t)); err != nil {
			return err
		}
		free, total = int64(f), int64(t)
		return nil
	})
	return
}

// Used returns the bytes allocated, by purpose.
func (d *Device) Used() map[string]int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]int64, len(d.used))
	for k, v := range d.used {
		out[k] = v
	}
	return out
}

// AllocationError is `AllocationFailed: N bytes (free F of T on GPU i)`.
type AllocationError struct {
	Bytes, Free, Total int64
	GPU                int
	Purpose            string
}

func (e *AllocationError) Error() string {
	free := fmt.Sprintf("free %d of %d", e.Free, e.Total)
	if e.Total <= 0 {
		free = "free memory unknown"
	}
	return fmt.Sprintf("AllocationFailed: %d bytes (%s on GPU %d) for %s: use a smaller model or quantization, a smaller --ctx or --parallel, or a GPU with more memory",
		e.Bytes, free, e.GPU, e.Purpose)
}

// Is makes an AllocationError match backend.ErrOutOfMemory.
func (e *AllocationError) Is(target error) bool { return target == backend.ErrOutOfMemory }

// Buffer is a device allocation.
type Buffer struct {
	Ptr     devicePtr
	Bytes   int64
	purpose string
}

// alloc allocates device memory on the device thread; call only inside do.
func (d *Device) alloc(n int64, purpose string) (*Buffer, error) {
	if n <= 0 {
		n = 4
	}
	if d.failAlloc != nil {
		if err := d.failAlloc(n, purpose); err != nil {
			return nil, err
		}
	}
	var p devicePtr
	if r := drv.cuMemAlloc_v2(&p, uint64(n)); r != 0 {
		if r == cudaErrorOutOfMemory {
			var f, t uint64
			if drv.cuMemGetInfo_v2(&f, &t) != 0 {
				f, t = 0, 0 // the message then says the free memory is unknown
			}
			return nil, &AllocationError{Bytes: n, Free: int64(f), Total: int64(t), GPU: d.Index, Purpose: purpose}
		}
		return nil, check("cuMemAlloc", r)
	}
	d.mu.Lock()
	d.used[purpose] += n
	d.mu.Unlock()
	return &Buffer{Ptr: p, Bytes: n, purpose: purpose}, nil
}

// Alloc allocates n bytes of device memory tagged with a purpose.
func (d *Device) Alloc(n int64, purpose string) (*Buffer, error) {
	var b *Buffer
	err := d.do(func() (err error) { b, err = d.alloc(n, purpose); return })
	return b, err
}

// free releases a buffer on the device thread; call only inside do. The
// buffer is forgotten (and no longer counted) even when the driver reports
// an error, which is returned.
func (d *Device) free(b *Buffer) error {
	if b == nil || b.Ptr == 0 {
		return nil
	}
	err := check("cuMemFree", drv.cuMemFree_v2(b.Ptr))
	d.mu.Lock()
	d.used[b.purpose] -= b.Bytes
	d.mu.Unlock()
	b.Ptr = 0
	return err
}

// Free releases a buffer. After Close it returns ErrDeviceClosed (the
// memory went with the context).
func (d *Device) Free(b *Buffer) error { return d.do(func() error { return d.free(b) }) }

// upload copies host bytes to a device buffer in chunks through two pinned
// staging buffers, so that reading the (mapped) source overlaps the copies.
func (d *Device) upload(dst devicePtr, src []byte, stage [2]unsafe.Pointer, stageSize int) (err error) {
	var events [2]cuEvent
	for i := range events {
		if err := check("cuEventCreate", drv.cuEventCreate(&events[i], 2 /* disable timing */)); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, check("cuEventDestroy", drv.cuEventDestroy_v2(events[i]))) }()
	}
	pending := [2]bool{}
	for off, i := 0, 0; off < len(src); off, i = off+stageSize, i^1 {
		n := min(stageSize, len(src)-off)
		if pending[i] {
			if err := check("cuEventSynchronize", drv.cuEventSynchronize(events[i])); err != nil {
				return err
			}
		}
		copy(unsafe.Slice((*byte)(stage[i]), n), src[off:off+n])
		if err := check("cuMemcpyHtoDAsync", drv.cuMemcpyHtoDAsync_v2(dst+devicePtr(off), stage[i], uint64(n), d.stream)); err != nil {
			return err
		}
		if err := check("cuEventRecord", drv.cuEventRecord(events[i], d.stream)); err != nil {
			return err
		}
		pending[i] = true
	}
	return check("cuStreamSynchronize", drv.cuStreamSynchronize(d.stream))
}

// copyToHost copies device memory into dst (synchronously with the stream).
func (d *Device) copyToHost(dst unsafe.Pointer, src devicePtr, n int64) error {
	if err := check("cuMemcpyDtoHAsync", drv.cuMemcpyDtoHAsync_v2(dst, src, uint64(n), d.stream)); err != nil {
		return err
	}
	return check("cuStreamSynchronize", drv.cuStreamSynchronize(d.stream))
}

// copyToDevice copies host memory to the device (synchronously).
func (d *Device) copyToDevice(dst devicePtr, src unsafe.Pointer, n int64) error {
	if n == 0 {
		return nil
	}
	if err := check("cuMemcpyHtoDAsync", drv.cuMemcpyHtoDAsync_v2(dst, src, uint64(n), d.stream)); err != nil {
		return err
	}
	return check("cuStreamSynchronize", drv.cuStreamSynchronize(d.stream))
}

// loadModule compiles (or fetches from the cache) a kernel source and loads
// its functions; call inside do.
func (d *Device) loadModule(name, src string, defines, kernels []string) error {
	cubin, err := compile(name, src, defines, d.Arch())
	if err != nil {
		return err
	}
	var m cuModule
	if err := check("cuModuleLoadData", drv.cuModuleLoadData(&m, unsafe.Pointer(&cubin[0]))); err != nil {
		return err
	}
	for _, k := range kernels {
		var f cuFunction
		if err := check("cuModuleGetFunction("+k+")", drv.cuModuleGetFunction(&f, m, cstr(k))); err != nil {
			return err
		}
		d.funcs[k] = f
	}
	return nil
}

// kernelResources reports a loaded kernel's registers per thread, local
// (spill and stack) bytes per thread and static shared bytes per block;
// call inside do.
func (d *Device) kernelResources(name string) (regs, local, shared int, err error) {
	const attrShared, attrLocal, attrRegs = 1, 3, 4
	f, ok := d.funcs[name]
	if !ok {
		return 0, 0, 0, fmt.Errorf("cuda: kernel %s not loaded", name)
	}
	var v [3]int32
	for i, a := range []int32{attrRegs, attrLocal, attrShared} {
		if err := check("cuFuncGetAttribute("+name+")", drv.cuFuncGetAttribute(&v[i], a, f)); err != nil {
			return 0, 0, 0, err
		}
	}
	return int(v[0]), int(v[1]), int(v[2]), nil
}
