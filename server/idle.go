package server

import (
	"context"
	"runtime/debug"
	"time"
)

// ReturnMemoryWhenIdle gives the memory the Go runtime holds but no longer
// uses back to the operating system once no generation request has been
// in flight for idle, once per busy period, until ctx ends. After a burst
// of clients the heap shrinks back at the next collection, but the runtime
// keeps the freed pages and returns them only slowly: without this, the
// resident set stays near its peak long after the load has gone. Run it in
// its own goroutine.
func (s *Server) ReturnMemoryWhenIdle(ctx context.Context, idle time.Duration) {
	tick := max(idle/4, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	seen := s.admitted.Load()
	lastBusy := time.Now()
	dirty := false // requests ran since the last return
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n := s.admitted.Load(); n != seen || s.inflight.Load() > 0 {
			seen, lastBusy, dirty = n, time.Now(), true
			continue
		}
		if dirty && time.Since(lastBusy) >= idle {
			start := time.Now()
			debug.FreeOSMemory()
			dirty = false
			s.log.Debug("idle: returned unused memory to the OS", "took_ms", time.Since(start).Milliseconds())
		}
	}
}
