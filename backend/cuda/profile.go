package cuda

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// kernelProfile times every launch with a pair of CUDA events when
// WORKER_CUDA_PROFILE=1 (a measuring aid: each launch then waits for the
// device, and decode batches launch directly instead of from graphs). The
// totals per kernel and launch shape are printed to stderr when the device
// closes, most expensive first.
type kernelProfile struct {
	start, end cuEvent
	stats      map[string]*kernelStat
}

type kernelStat struct {
	calls int
	ms    float64
}

// profileEnabled says whether WORKER_CUDA_PROFILE asks for kernel timing.
func profileEnabled() bool { return os.Getenv("WORKER_CUDA_PROFILE") == "1" }

// newKernelProfile creates the events. Call on the device thread.
func newKernelProfile() (*kernelProfile, error) {
	p := &kernelProfile{stats: map[string]*kernelStat{}}
	if err := check("cuEventCreate", drv.cuEventCreate(&p.start, 0)); err != nil {
		return nil, err
	}
	if err := check("cuEventCreate", drv.cuEventCreate(&p.end, 0)); err != nil {
		return nil, err
	}
	return p, nil
}

// begin records the start event before a launch.
func (p *kernelProfile) begin(s cuStream) error {
	return check("cuEventRecord", drv.cuEventRecord(p.start, s))
}

// finish records the end event, waits for it and adds the elapsed time to
// the launch's key.
func (p *kernelProfile) finish(s cuStream, key string) error {
	if err := check("cuEventRecord", drv.cuEventRecord(p.end, s)); err != nil {
		return err
	}
	if err := check("cuEventSynchronize", drv.cuEventSynchronize(p.end)); err != nil {
		return err
	}
	var ms float32
	if err := check("cuEventElapsedTime", drv.cuEventElapsedTime(&ms, p.start, p.end)); err != nil {
		return err
	}
	st := p.stats[key]
	if st == nil {
		st = &kernelStat{}
		p.stats[key] = st
	}
	st.calls++
	st.ms += float64(ms)
	return nil
}

// report writes the table and frees the events. Call on the device thread.
func (p *kernelProfile) report(w io.Writer) {
	keys := make([]string, 0, len(p.stats))
	total := 0.0
	for k, st := range p.stats {
		keys = append(keys, k)
		total += st.ms
	}
	sort.Slice(keys, func(i, j int) bool { return p.stats[keys[i]].ms > p.stats[keys[j]].ms })
	fmt.Fprintf(w, "kernel profile (WORKER_CUDA_PROFILE=1): %.1f ms in %d kernel shapes\n", total, len(keys))
	fmt.Fprintf(w, "%10s %6s %9s %9s  %s\n", "ms", "%", "calls", "µs/call", "kernel grid block")
	for _, k := range keys {
		st := p.stats[k]
		fmt.Fprintf(w, "%10.2f %6.2f %9d %9.1f  %s\n", st.ms, 100*st.ms/total, st.calls, 1000*st.ms/float64(st.calls), k)
	}
	drv.cuEventDestroy_v2(p.start)
	drv.cuEventDestroy_v2(p.end)
}
