package cuda

import "errors"

// MeasureBandwidth times a 1 GiB device-to-device copy (best of 5, after a
// warm-up) and returns bytes read plus bytes written per second.
func (b *Backend) MeasureBandwidth() (rate float64, err error) {
	const n = 1 << 30
	err = b.dev.do(func() (err error) {
		src, err := b.dev.alloc(n, PurposeWorkspace)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, b.dev.free(src)) }()
		dst, err := b.dev.alloc(n, PurposeWorkspace)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, b.dev.free(dst)) }()
		var start, end cuEvent
		if err := check("cuEventCreate", drv.cuEventCreate(&start, 0)); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, check("cuEventDestroy", drv.cuEventDestroy_v2(start))) }()
		if err := check("cuEventCreate", drv.cuEventCreate(&end, 0)); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, check("cuEventDestroy", drv.cuEventDestroy_v2(end))) }()
		if err := check("cuMemsetD32Async", drv.cuMemsetD32Async(src.Ptr, 0x3f800001, n/4, b.dev.stream)); err != nil {
			return err
		}
		best := float32(1e30)
		for i := range 6 {
			if err := check("cuEventRecord", drv.cuEventRecord(start, b.dev.stream)); err != nil {
				return err
			}
			if err := check("cuMemcpyDtoDAsync", drv.cuMemcpyDtoDAsync_v2(dst.Ptr, src.Ptr, n, b.dev.stream)); err != nil {
				return err
			}
			if err := check("cuEventRecord", drv.cuEventRecord(end, b.dev.stream)); err != nil {
				return err
			}
			if err := check("cuEventSynchronize", drv.cuEventSynchronize(end)); err != nil {
				return err
			}
			var ms float32
			if err := check("cuEventElapsedTime", drv.cuEventElapsedTime(&ms, start, end)); err != nil {
				return err
			}
			if i > 0 {
				best = min(best, ms)
			}
		}
		rate = 2 * n / (float64(best) / 1000)
		return nil
	})
	return rate, err
}
