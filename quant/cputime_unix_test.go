//go:build unix

package quant

import (
	"syscall"
	"time"
)

// cpuTime is the process's user + system CPU time so far: on a machine
// shared with other work it counts what a benchmark ran, not what it waited.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
