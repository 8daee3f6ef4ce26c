package quant

import "golang.org/x/sys/cpu"

// Activation quantization in AVX-512 (quantact_amd64.s): bit-identical to
// quantActQ8_0 and quantQ8_K, which stay the reference and the fallback.
//
//go:noescape
func quantActQ8_0Asm(x *float32, dst *byte, nb int)

//go:noescape
func quantQ8_KAsm(x *float32, dst *byte, nb int)

// f16ConvertAsm is F32ToF16 by VCVTPS2PH (the Q8_0 kernel's conversion of
// d), for the tests.
func f16ConvertAsm(f float32) uint16

// hasQuantAsm: AVX-512 F, BW and VL (x/sys/cpu checks the OS saves the
// state) and TZCNT.
var hasQuantAsm = cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasBMI1

func init() { setQuantKernels(hasQuantAsm && !portable) }

// setQuantKernels installs the assembly quantizers (asm) or the Go ones.
func setQuantKernels(asm bool) {
	if asm {
		actQ8_0, actQ8_K = quantActQ8_0AVX512, quantQ8_KAVX512
	} else {
		actQ8_0, actQ8_K = quantActQ8_0, quantQ8_K
	}
}

func quantActQ8_0AVX512(src []float32, dst []byte) {
	nb := len(src) / QK
	if nb <= 0 {
		return
	}
	_ = dst[nb*34-1]
	quantActQ8_0Asm(&src[0], &dst[0], nb)
}

func quantQ8_KAVX512(src []float32, dst []byte) {
	nb := len(src) / QKK
	if nb <= 0 {
		return
	}
	_ = dst[nb*292-1]
	quantQ8_KAsm(&src[0], &dst[0], nb)
}
