package cuda

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
)

// F16 copies of the quantized weights for prompt rows.
//
// Prompt rows go through cuBLAS on F16 matrices (gemmSegment): an F16
// file's weights in place, any other type dequantized into a workspace by
// every call, once a matrix. For a short chunk — a chat turn's new tokens
// after a cached prefix — those copies are most of the time (a 32-token
// prompt's first token: 12.1 ms on the Phi-3-mini shape in Q4_K_M, 6.4 ms in
// F16; docs/perf.md). With the copies every quantized matrix that prompt
// rows multiply is dequantized once at load into a resident F16 copy (2
// bytes a weight more device memory, counted as weights), and gemmWeights
// hands that copy out instead. The values are the ones each call made, so
// every result is bit for bit the same with or without them.
//
// WORKER_CUDA_F16_WEIGHTS chooses: unset (or "auto"), the copies are made
// when they take at most a quarter of the device memory free after the
// weights (f16WeightsFit), so that the KV cache keeps the rest; "1" makes
// them whenever they fit beside f16WeightsReserve; "0" never. Decode rows
// never read them.

// f16WeightsEnv chooses the copies.
const f16WeightsEnv = "WORKER_CUDA_F16_WEIGHTS"

// f16Mode is WORKER_CUDA_F16_WEIGHTS's choice.
type f16Mode int

const (
	f16Auto f16Mode = iota // unset or "auto": when they take at most a quarter of the free memory
	f16Off                 // "0"
	f16On                  // "1": whenever they fit beside f16WeightsReserve
)

// f16WeightsFit decides whether copies of need bytes are made with free
// bytes of device memory free, and says why not when they are not.
func f16WeightsFit(mode f16Mode, need, free int64) (bool, string) {
	switch {
	case mode == f16Off:
		return false, "turned off"
	case free-need < f16WeightsReserve:
		return false, "they do not fit"
	case mode == f16Auto && need > free/4:
		return false, "they would take more than a quarter of the free device memory (the KV cache's); WORKER_CUDA_F16_WEIGHTS=1 makes them anyway"
	}
	return true, ""
}

// f16WeightsReserve is the free device memory kept beside the copies (for
// the KV cache and workspace).
const f16WeightsReserve = 2 << 30

// f16WeightsWanted reads WORKER_CUDA_F16_WEIGHTS ("", "auto", "1" or "0";
// anything else is an error naming the setting).
func f16WeightsWanted() (f16Mode, error) {
	switch v := os.Getenv(f16WeightsEnv); v {
	case "", "auto":
		return f16Auto, nil
	case "0":
		return f16Off, nil
	case "1":
		return f16On, nil
	default:
		return f16Off, fmt.Errorf("%w: %s=%q: want auto (the default: F16 copies of the quantized weights for prompt rows when they take at most a quarter of the free device memory), 1 (whenever they fit) or 0 (never)", ErrBadInput, f16WeightsEnv, v)
	}
}

// promptMatrices are the matrices prompt rows multiply through cuBLAS: the
// layers' and the LM head.
func (b *Backend) promptMatrices() []*dmat {
	ms := []*dmat{&b.out}
	for i := range b.layers {
		l := &b.layers[i]
		ms = append(ms, &l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down)
	}
	return ms
}

// needsF16Copy reports whether gemmWeights dequantizes m (F16 weights are
// used in place).
func needsF16Copy(m *dmat) bool { return !(m.suffix == "f16" && m.rowBytes == int64(2*m.cols)) }

// f16WeightsBytes is the device memory the copies take.
func (b *Backend) f16WeightsBytes() int64 {
	var n int64
	for _, m := range b.promptMatrices() {
		if needsF16Copy(m) {
			n += int64(m.rows) * int64(m.cols) * 2
		}
	}
	return n
}

// makeF16Weights dequantizes every quantized prompt matrix into a resident
// F16 copy (b.f16w); call inside do, after the weights are on the device.
// Where they do not fit it makes none and logs why; a driver error other
// than a failed allocation is returned.
func (b *Backend) makeF16Weights() error {
	need := b.f16WeightsBytes()
	if need == 0 || b.blas == 0 {
		return nil // nothing to copy, or no cuBLAS path to use them
	}
	var f, t uint64 // on the device thread already: not MemInfo, which would wait for it
	if err := check("cuMemGetInfo", drv.cuMemGetInfo_v2(&f, &t)); err != nil {
		return err
	}
	if ok, why := f16WeightsFit(b.f16Weights, need, int64(f)); !ok {
		report := slog.Info
		if b.f16Weights == f16On {
			report = slog.Warn // asked for and not made
		}
		report("F16 copies of the quantized weights for prompt rows left out: "+why, "setting", f16WeightsEnv,
			"bytes", need, "free", int64(f))
		return nil
	}
	b.f16w = map[*dmat]*Buffer{}
	for _, m := range b.promptMatrices() {
		if !needsF16Copy(m) || b.f16w[m] != nil {
			continue
		}
		buf, err := b.dev.alloc(int64(m.rows)*int64(m.cols)*2, PurposeWeights)
		if err == nil {
			b.f16w[m] = buf
			_, err = b.dequantF16(m, &buf) // into buf: it has the room
		}
		if err != nil {
			b.freeF16Weights()
			var ae *AllocationError
			if errors.As(err, &ae) {
				slog.Warn("F16 copies of the quantized weights left out: an allocation failed", "setting", f16WeightsEnv, "err", err)
				return nil
			}
			return err
		}
	}
	slog.Info("F16 copies of the quantized weights for prompt rows", "setting", f16WeightsEnv, "bytes", need)
	return nil
}

// freeF16Weights frees the copies; call inside do.
func (b *Backend) freeF16Weights() error {
	var errs []error
	for m, buf := range b.f16w {
		errs = append(errs, b.dev.free(buf))
		delete(b.f16w, m)
	}
	b.f16w = nil
	return errors.Join(errs...)
}
