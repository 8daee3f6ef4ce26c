package cpu

// withPortable runs f with the portable Go loops in place of the assembly
// when portable is set (as WORKER_CPU_PORTABLE=1 does), restoring the
// choice after.
func withPortable(portable bool, f func()) {
	avx, avx2 := useAVX, useAVX2
	defer func() { useAVX, useAVX2 = avx, avx2 }()
	if portable {
		useAVX, useAVX2 = false, false
	}
	f()
}
