package sample

import (
	"math"
	"math/big"
)

// This file holds a portable exponential. The standard library's math.Exp has
// assembly versions on amd64 (which switches on FMA support at run time) and
// arm64, so its last bit may differ between machines. Sampling draws compare
// cumulative sums against a random threshold, so a one-ulp difference can,
// rarely, change the chosen token. exp below is pure Go, uses only IEEE
// operations that each round once (every product is wrapped in an explicit
// float64 conversion, which forbids the compiler from fusing it into an FMA),
// and therefore gives bit-identical results on every platform.

const (
	expTableBits = 6
	expTableSize = 1 << expTableBits // 64 entries: 2^(j/64)
	// invLn2N is 64/ln 2; t = x*invLn2N splits x into k*ln2/64 + r.
	invLn2N = expTableSize / math.Ln2
	// ln2/64 split into a high part with trailing zero bits (so k*ln2HiN is
	// exact for |k| < 2^17) and a low correction (fdlibm's constants / 64).
	ln2HiN = 6.93147180369123816490e-01 / expTableSize
	ln2LoN = 1.90821492927058770002e-10 / expTableSize
	// roundShift = 1.5*2^52: adding it rounds to an integer (ties to even) and
	// leaves that integer in the low mantissa bits.
	roundShift = 0x1.8p52
)

// expTable[j] = 2^(j/64), correctly rounded. It is computed at start-up with
// math/big (pure integer arithmetic, identical everywhere).
var expTable = func() (t [expTableSize]float64) {
	const prec = 256
	base := new(big.Float).SetPrec(prec).SetInt64(2)
	for range expTableBits { // 2^(1/64) by six square roots
		base.Sqrt(base)
	}
	acc := new(big.Float).SetPrec(prec).SetInt64(1)
	for j := range t {
		t[j], _ = acc.Float64()
		acc.Mul(acc, base)
	}
	return t
}()

// exp returns e^x with a relative error below about 2e-16, bit-identical on
// every platform. exp(NaN) = NaN; x < -708 gives 0 (the subnormal range is
// flushed, which is harmless for probability weights); x > 709.7 gives +Inf.
func exp(x float64) float64 {
	if !(x > -708) {
		if x != x {
			return x
		}
		return 0
	}
	if x > 709.78 {
		return math.Inf(1)
	}
	y := float64(x*invLn2N) + roundShift
	k := int64(int32(uint32(math.Float64bits(y)))) // round(x*64/ln2)
	kd := y - roundShift
	r := float64(x-float64(kd*ln2HiN)) - float64(kd*ln2LoN) // |r| <= ln2/128
	// e^r by its Taylor series to degree 5: |r|^6/720 < 4e-17.
	p := float64(r*(1.0/120)) + 1.0/24
	p = float64(p*r) + 1.0/6
	p = float64(p*r) + 0.5
	p = float64(p*r) + 1
	p = float64(p*r) + 1
	scale := math.Float64frombits(uint64(k>>expTableBits+1023) << 52)
	return float64(expTable[k&(expTableSize-1)]*p) * scale
}

// weightCutoff is the exponent below which a softmax weight is taken as 0:
// e^-64 < 1.7e-28, so even 10^6 such tokens change a total of at least 1 (the
// largest logit's weight) by less than 2e-22, far below float64 resolution.
// Skipping them saves the exponential for tokens far below the maximum.
const weightCutoff = -64

// expSum stores exp((src[i]-m)*invT) in dst[i] (when dst is not nil) and
// returns the sum of those weights, accumulated in index order. Entries with
// an exponent below weightCutoff or NaN weigh 0. The body is exp's, written out so the
// loop has no call (exp is too large to inline); it must stay bit-identical
// to exp (TestExpSumMatchesExp).
func expSum(dst []float64, src []float32, m, invT float64) float64 {
	z := 0.0
	if dst != nil {
		dst = dst[:len(src)]
	}
	for i, v := range src {
		x := (float64(v) - m) * invT
		e := 0.0
		if x > weightCutoff {
			y := float64(x*invLn2N) + roundShift
			k := int64(int32(uint32(math.Float64bits(y))))
			kd := y - roundShift
			r := float64(x-float64(kd*ln2HiN)) - float64(kd*ln2LoN)
			p := float64(r*(1.0/120)) + 1.0/24
			p = float64(p*r) + 1.0/6
			p = float64(p*r) + 0.5
			p = float64(p*r) + 1
			p = float64(p*r) + 1
			scale := math.Float64frombits(uint64(k>>expTableBits+1023) << 52)
			e = float64(expTable[k&(expTableSize-1)]*p) * scale
		}
		if dst != nil {
			dst[i] = e
		}
		z += e
	}
	return z
}

// expSumSet is expSum over the logits held in candidates' Logprob fields.
func expSumSet(dst []float64, set []Candidate, m, invT float64) float64 {
	z := 0.0
	dst = dst[:len(set)]
	for i, c := range set {
		x := (float64(c.Logprob) - m) * invT
		e := 0.0
		if x > weightCutoff {
			y := float64(x*invLn2N) + roundShift
			k := int64(int32(uint32(math.Float64bits(y))))
			kd := y - roundShift
			r := float64(x-float64(kd*ln2HiN)) - float64(kd*ln2LoN)
			p := float64(r*(1.0/120)) + 1.0/24
			p = float64(p*r) + 1.0/6
			p = float64(p*r) + 0.5
			p = float64(p*r) + 1
			p = float64(p*r) + 1
			scale := math.Float64frombits(uint64(k>>expTableBits+1023) << 52)
			e = float64(expTable[k&(expTableSize-1)]*p) * scale
		}
		dst[i] = e
		z += e
	}
	return z
}
