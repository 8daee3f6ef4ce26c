package cuda

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"unsafe"
)

// ErrLaunch reports a kernel launch refused before it reached the driver:
// an argument out of its C type's range, a missing pointer, a grid the card
// cannot run. It is a bug in a launcher or a model shape the kernels do not
// handle; the message names the kernel and the argument.
var ErrLaunch = errors.New("cuda: bad kernel launch")

// maxKernelArgs is the most parameters a kernel of kernels/*.cu takes.
const maxKernelArgs = 12

// kernelArgs is the parameter block of one launch. cuLaunchKernel reads an
// array of pointers, one to each parameter's value; both the array (ptrs)
// and the scalar values (vals, one 8-byte slot each) live in this one Go
// object, which launch pins (runtime.Pinner) for the duration of the call,
// together with the by-value struct of the matrix kernels (mm). Values are
// converted with a range check: an int that does not fit a C int is an
// error, never silently narrowed.
type kernelArgs struct {
	vals [maxKernelArgs]uint64
	ptrs [maxKernelArgs]unsafe.Pointer
	mm   *mmArgs // the MMArgs parameter of the mm*_ kernels, when it is one
	n    int
	err  error
}

func newArgs() *kernelArgs { return new(kernelArgs) }

// slot returns the next parameter's value slot, pointed to by ptrs.
func (a *kernelArgs) slot(name string) *uint64 {
	if a.n == maxKernelArgs {
		a.fail(fmt.Errorf("%w: parameter %s: more than %d parameters", ErrLaunch, name, maxKernelArgs))
		return new(uint64)
	}
	s := &a.vals[a.n]
	a.ptrs[a.n] = unsafe.Pointer(s)
	a.n++
	return s
}

func (a *kernelArgs) fail(err error) {
	if a.err == nil {
		a.err = err
	}
}

// ptr adds a device pointer parameter that may be null.
func (a *kernelArgs) ptr(name string, v devicePtr) *kernelArgs {
	*a.slot(name) = uint64(v)
	return a
}

// dev adds a device pointer parameter that must not be null.
func (a *kernelArgs) dev(name string, v devicePtr) *kernelArgs {
	if v == 0 {
		a.fail(fmt.Errorf("%w: parameter %s is a null device pointer", ErrLaunch, name))
	}
	return a.ptr(name, v)
}

// i32 adds a C int parameter; v must fit in 32 bits.
func (a *kernelArgs) i32(name string, v int) *kernelArgs {
	x, err := cInt(name, v)
	a.fail(err)
	*(*int32)(unsafe.Pointer(a.slot(name))) = x
	return a
}

// i64 adds a C long parameter.
func (a *kernelArgs) i64(name string, v int64) *kernelArgs {
	*(*int64)(unsafe.Pointer(a.slot(name))) = v
	return a
}

// f32 adds a C float parameter.
func (a *kernelArgs) f32(name string, v float32) *kernelArgs {
	*(*float32)(unsafe.Pointer(a.slot(name))) = v
	return a
}

// mmArg adds the MMArgs struct parameter (passed by value: the driver
// copies sizeof(MMArgs) bytes from the pointer).
func (a *kernelArgs) mmArg(m *mmArgs) *kernelArgs {
	if a.n == maxKernelArgs {
		a.fail(fmt.Errorf("%w: more than %d parameters", ErrLaunch, maxKernelArgs))
		return a
	}
	a.mm = m
	a.ptrs[a.n] = unsafe.Pointer(m)
	a.n++
	return a
}

// cInt converts v to a C int, or says which value did not fit.
func cInt(name string, v int) (int32, error) {
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, fmt.Errorf("%w: parameter %s = %d does not fit in a C int", ErrLaunch, name, v)
	}
	return int32(v), nil
}

// dim3 is a grid or block shape (x, y, z).
type dim3 [3]int

func dims(x, y, z int) dim3 { return dim3{x, y, z} }

// blocks is ceil(n / per): the blocks that cover n items, per a block.
func blocks(n, per int) int { return (n + per - 1) / per }

// checkShape refuses what cuLaunchKernel would refuse (or, past 32 bits,
// silently wrap): an empty grid, grid.x ≥ 2³¹, grid.y or grid.z > 65535, a
// block of more than 1024 threads.
func checkShape(grid, block dim3) error {
	for i, v := range grid {
		lim := 65535
		if i == 0 {
			lim = math.MaxInt32
		}
		if v < 1 || v > lim {
			return fmt.Errorf("%w: grid %v: dimension %d is %d (want 1 … %d)", ErrLaunch, grid, i, v, lim)
		}
	}
	if block[0] < 1 || block[1] < 1 || block[2] < 1 || block[0]*block[1]*block[2] > 1024 {
		return fmt.Errorf("%w: block %v: want 1 … 1024 threads", ErrLaunch, block)
	}
	return nil
}

// pdlKernel reports whether kernel name is launched to overlap the kernel
// before it when programmatic dependent launch is on (Device.pdl): every
// kernel but mmt1_*, the tensor-core kernel for fewer than 8 decode rows,
// which measured slower with it (F16 batch-1 decode on an H200: Qwen
// 767 → 729 tok/s, Phi-3 260 → 231; docs/perf.md step 25) while the
// others gained (Qwen Q8_0 batch-1 decode 891 → 939, 64 streams
// 11 369 → 12 224).
func pdlKernel(name string) bool { return !strings.HasPrefix(name, "mmt1_") }

// launch runs a kernel on the device stream with the parameters in a
// (through cuLaunchKernelEx with programmatic stream serialization when
// d.pdl and pdlKernel allow, else cuLaunchKernel). Call inside do. The
// parameter block is pinned while the driver reads it.
func (d *Device) launch(name string, grid, block dim3, shared int, a *kernelArgs) error {
	if a.err != nil {
		return fmt.Errorf("kernel %s: %w", name, a.err)
	}
	if err := checkShape(grid, block); err != nil {
		return fmt.Errorf("kernel %s: %w", name, err)
	}
	if shared < 0 || shared > mmtMaxShared {
		return fmt.Errorf("kernel %s: %w: %d bytes of dynamic shared memory (want 0 … %d)", name, ErrLaunch, shared, mmtMaxShared)
	}
	f, ok := d.funcs[name]
	if !ok {
		return fmt.Errorf("%w: kernel %s not loaded (a bug)", ErrLaunch, name)
	}
	var pin runtime.Pinner
	defer pin.Unpin()
	pin.Pin(a)
	if a.mm != nil {
		pin.Pin(a.mm)
	}
	var params unsafe.Pointer
	if a.n > 0 {
		params = unsafe.Pointer(&a.ptrs[0])
	}
	if d.prof != nil {
		if err := d.prof.begin(d.stream); err != nil {
			return err
		}
	}
	if d.pdl && d.prof == nil && pdlKernel(name) {
		attr := &cuLaunchAttr{id: attrProgrammaticStreamSerialization}
		attr.value[0] = 1 // programmaticStreamSerializationAllowed, a C int
		cfg := &cuLaunchConfig{gridX: uint32(grid[0]), gridY: uint32(grid[1]), gridZ: uint32(grid[2]),
			blockX: uint32(block[0]), blockY: uint32(block[1]), blockZ: uint32(block[2]), shared: uint32(shared),
			stream: d.stream, attrs: attr, numAttrs: 1}
		pin.Pin(attr)
		pin.Pin(cfg)
		if err := check("cuLaunchKernelEx("+name+")", drv.cuLaunchKernelEx(cfg, f, params, nil)); err != nil {
			return err
		}
	} else if err := check("cuLaunchKernel("+name+")", drv.cuLaunchKernel(f, uint32(grid[0]), uint32(grid[1]), uint32(grid[2]),
		uint32(block[0]), uint32(block[1]), uint32(block[2]), uint32(shared), d.stream, params, nil)); err != nil {
		return err
	}
	if d.prof != nil {
		if err := d.prof.finish(d.stream, fmt.Sprintf("%s %v %v", name, grid, block)); err != nil {
			return err
		}
	}
	if d.syncEach {
		if err := check("kernel "+name+" (WORKER_CUDA_SYNC=1)", drv.cuStreamSynchronize(d.stream)); err != nil {
			return err
		}
	}
	return nil
}
