package quant

import "os"

// portable is set by WORKER_CPU_PORTABLE=1: the dot products stay the
// portable Go ones even where the CPU has the instructions of the assembly
// versions (CI runs the tests both ways; results are bit-identical).
var portable = os.Getenv("WORKER_CPU_PORTABLE") == "1"

// q8Level names the Q8_0-activation kernels in use: set by the architecture
// files.
var q8Level = "go"

// CPULevel names the instruction set of the dot products in use: "go" (the
// portable ones), "avx2" or "avx512vnni".
func CPULevel() string { return q8Level }
