#include "textflag.h"

// F16 weights with F16 activations, as dotF16: four float32 lanes, lane k
// accumulating elements 4i+k in order, each product of two exactly converted
// halves (VCVTPH2PS is exact, like f16Table). GOAMD64=v3/v4 builds fuse
// the multiply-add as the Go compiler does there.

#ifdef GOAMD64_v3
#define FUSEDF16
#endif
#ifdef GOAMD64_v4
#define FUSEDF16
#endif

#ifdef FUSEDF16
#define MULADDF16(Xa, Xb) VFMADD231PS Xa, Xb, X0
#else
#define MULADDF16(Xa, Xb) VMULPS Xa, Xb, Xb; VADDPS Xb, X0, X0
#endif

// func dotF16Asm(a, b *byte, n4 int, s *[4]float32)
// s[k] = Σ_{i<n4} a[4i+k]*b[4i+k], summed in order of i.
TEXT ·dotF16Asm(SB), NOSPLIT, $0-32
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ n4+16(FP), CX
	MOVQ s+24(FP), DX
	VXORPS X0, X0, X0
	CMPQ CX, $2
	JLT tail
pair:
	VCVTPH2PS (SI), Y1
	VCVTPH2PS (DI), Y2
	VEXTRACTF128 $1, Y1, X3
	VEXTRACTF128 $1, Y2, X4
	MULADDF16(X1, X2)
	MULADDF16(X3, X4)
	ADDQ $16, SI
	ADDQ $16, DI
	SUBQ $2, CX
	CMPQ CX, $2
	JGE pair
tail:
	TESTQ CX, CX
	JZ done
	VCVTPH2PS (SI), X1
	VCVTPH2PS (DI), X2
	MULADDF16(X1, X2)
done:
	VMOVUPS X0, (DX)
	VZEROUPPER
	RET

// func hasF16C() bool: CPUID leaf 1, ECX bit 29.
TEXT ·hasF16C(SB), NOSPLIT, $0-1
	MOVL $1, AX
	XORL CX, CX
	CPUID
	SHRL $29, CX
	ANDL $1, CX
	MOVB CX, ret+0(FP)
	RET
