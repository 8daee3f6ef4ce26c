package backend

import (
	"errors"
	"fmt"
	"strconv"
)

// DeviceKind says which backend a Device selects.
type DeviceKind int

// The device kinds.
const (
	DeviceAuto DeviceKind = iota // the GPU when one is usable, else the CPU
	DeviceCPU                    // the CPU backend
	DeviceCUDA                   // the CUDA backend on GPU Device.Index
)

// Device is where to run a model, as the --device flag names it: "auto",
// "cpu", "cuda" (GPU 0) or "cuda:N". ParseDevice is the one reader of that
// syntax; every command and the engine go through it.
type Device struct {
	Kind  DeviceKind
	Index int // the GPU index for DeviceCUDA, as nvidia-smi lists it
}

// ErrBadDevice is matched (errors.Is) by ParseDevice's errors.
var ErrBadDevice = errors.New("invalid device")

// DeviceError is a device name ParseDevice cannot read.
type DeviceError struct {
	Value    string
	BadIndex bool // "cuda:" followed by something that is not a GPU index
}

func (e *DeviceError) Error() string {
	if e.BadIndex {
		return fmt.Sprintf("unknown device %q: want auto, cpu, cuda or cuda:N with N a GPU index (0, 1, … as nvidia-smi lists them)", e.Value)
	}
	return fmt.Sprintf("unknown device %q: want auto, cpu, cuda or cuda:N", e.Value)
}

// Is matches ErrBadDevice.
func (e *DeviceError) Is(target error) bool { return target == ErrBadDevice }

// maxGPUIndex bounds N in "cuda:N" (far above any machine's GPU count).
const maxGPUIndex = 1 << 16

// ParseDevice reads a device name: "auto" (or ""), "cpu", "cuda" or
// "cuda:N" with N a GPU index in decimal digits. Names are exact: no
// spaces, signs or capitals.
func ParseDevice(s string) (Device, error) {
	switch s {
	case "", "auto":
		return Device{Kind: DeviceAuto}, nil
	case "cpu":
		return Device{Kind: DeviceCPU}, nil
	case "cuda":
		return Device{Kind: DeviceCUDA}, nil
	}
	if len(s) > len("cuda:") && s[:len("cuda:")] == "cuda:" {
		digits := s[len("cuda:"):]
		ok := len(digits) <= 6
		for i := 0; ok && i < len(digits); i++ {
			ok = digits[i] >= '0' && digits[i] <= '9'
		}
		if n, err := strconv.Atoi(digits); ok && err == nil && n <= maxGPUIndex {
			return Device{Kind: DeviceCUDA, Index: n}, nil
		}
		return Device{}, &DeviceError{Value: s, BadIndex: true}
	}
	return Device{}, &DeviceError{Value: s}
}

// String returns the name ParseDevice reads back: "auto", "cpu" or "cuda:N".
func (d Device) String() string {
	switch d.Kind {
	case DeviceCPU:
		return "cpu"
	case DeviceCUDA:
		return "cuda:" + strconv.Itoa(d.Index)
	}
	return "auto"
}
