package quant

import "testing"

// FuzzDequantize feeds arbitrary bytes to every supported type: whole blocks
// must convert without panicking; a length that is not whole blocks must
// give an error, never a panic. Finite-scale blocks of the quantized types
// must give finite values.
func FuzzDequantize(f *testing.F) {
	f.Add(uint8(Q4_K), make([]byte, 144))
	f.Add(uint8(Q6_K), make([]byte, 210))
	f.Add(uint8(Q8_0), []byte{0, 0x3c, 1, 2, 3})
	f.Add(uint8(F16), []byte{0x00, 0x7c, 0x01, 0x7c})
	f.Add(uint8(Q5_0), make([]byte, 44))
	f.Fuzz(func(t *testing.T, typ uint8, data []byte) {
		ty := Type(typ % 40)
		if !CanDequantize(ty) {
			if err := Dequantize(ty, data, make([]float32, 1)); err == nil {
				t.Fatalf("%s: no error for an unsupported type", ty)
			}
			return
		}
		ts, bs := ty.TypeSize(), ty.BlockSize()
		n := len(data) / ts * bs
		dst := make([]float32, n)
		err := Dequantize(ty, data, dst)
		if len(data)%ts != 0 {
			if err == nil {
				t.Fatalf("%s: %d bytes accepted for %d elements", ty, len(data), n)
			}
			data = data[:len(data)/ts*ts]
			if err := Dequantize(ty, data, dst); err != nil {
				t.Fatal(err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
		// VecDot must not panic either on whole-block rows.
		if CanVecDot(ty) && n > 0 && n%256 == 0 {
			xq := make([]byte, ActivationBytes(ty, n))
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(i%7) - 3
			}
			if err := QuantizeActivations(ty, x, xq); err != nil {
				t.Fatal(err)
			}
			_ = VecDot(ty, data, xq, n)
		}
	})
}
