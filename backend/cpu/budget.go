package cpu

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"worker-orcd/backend"
)

// EnvKVBudget names the environment variable that sets the bytes all KV
// caches of a CPU backend may hold together: a byte count with an optional
// unit ("8GiB", "512MB", "1073741824"), or "none" (or 0) for no budget.
const EnvKVBudget = "WORKER_CPU_KV_BUDGET"

// DefaultKVBudgetShare is the share of the available memory that the default
// budget gives the KV caches; the rest is headroom for the activations, the
// Go heap's garbage and whatever else runs on the machine.
const DefaultKVBudgetShare = 0.75

// AllocationError is a KV cache that does not fit in the CPU backend's
// budget. It matches backend.ErrOutOfMemory.
type AllocationError struct {
	Bytes     int64  // bytes the cache needs (for Reserve: in all)
	Positions int    // positions asked for
	InUse     int64  // bytes the other caches hold
	Budget    int64  // bytes all caches may hold
	Source    string // where the budget comes from
	Blocks    int    // for a block pool: the blocks a table used first (Bytes, Positions: theirs); 0 for a cache
}

func (e *AllocationError) Error() string {
	if e.Blocks > 0 {
		return fmt.Sprintf("AllocationFailed: %d bytes for %d more KV blocks (%d positions) of a block pool (CPU KV budget %d bytes, %d held already; %s): "+
			"let sequences end or evict cached blocks before taking new ones, start the worker with a smaller --ctx or --parallel, or set %s (e.g. %s=16GiB) if the machine has the memory",
			e.Bytes, e.Blocks, e.Positions, e.Budget, e.InUse, e.Source, EnvKVBudget, EnvKVBudget)
	}
	return fmt.Sprintf("AllocationFailed: %d bytes for a KV cache of %d positions (CPU KV budget %d bytes, %d held by other sequences; %s): "+
		"lower max_tokens or shorten the prompt, start the worker with a smaller --ctx or --parallel, or set %s (e.g. %s=16GiB) if the machine has the memory",
		e.Bytes, e.Positions, e.Budget, e.InUse, e.Source, EnvKVBudget, EnvKVBudget)
}

// Is reports that the error is an out-of-memory error (backend.ErrOutOfMemory).
func (e *AllocationError) Is(target error) bool { return target == backend.ErrOutOfMemory }

// kvBudget counts the bytes the KV caches of one backend hold against a
// limit (0 = none).
type kvBudget struct {
	mu     sync.Mutex
	limit  int64
	used   int64
	source string
	err    error // an unusable WORKER_CPU_KV_BUDGET: every allocation reports it
}

// take counts n more bytes (a cache of positions positions) if they fit.
// old is what the cache being grown holds already (0 for a new one).
func (k *kvBudget) take(n, old int64, positions int) error {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.err != nil {
		return k.err
	}
	others := k.used - old
	if k.limit > 0 && (n > k.limit || others > k.limit-n) {
		return &AllocationError{Bytes: n, Positions: positions, InUse: others, Budget: k.limit, Source: k.source}
	}
	k.used = others + n
	return nil
}

// give returns n bytes.
func (k *kvBudget) give(n int64) {
	if k == nil {
		return
	}
	k.mu.Lock()
	k.used -= n
	k.mu.Unlock()
}

// KVBudgetFromEnvironment returns the KV budget a new backend starts with
// (0 = none) and where it comes from: WORKER_CPU_KV_BUDGET when it is set,
// else DefaultKVBudget. The error reports a WORKER_CPU_KV_BUDGET that is
// not a byte count.
func KVBudgetFromEnvironment() (int64, string, error) {
	if v, ok := os.LookupEnv(EnvKVBudget); ok {
		n, err := ParseBytes(v)
		if err != nil {
			return 0, "", fmt.Errorf("%s=%q: %w: want a byte count such as 16GiB, 512MB or 1073741824, or none", EnvKVBudget, v, err)
		}
		return n, "set by " + EnvKVBudget, nil
	}
	n, source := DefaultKVBudget()
	return n, source, nil
}

// newKVBudget is the budget a new backend starts with.
func newKVBudget() *kvBudget {
	n, source, err := KVBudgetFromEnvironment()
	return &kvBudget{limit: n, source: source, err: err}
}

// SetKVBudget sets the bytes all KV caches of the backend may hold together
// (0 = no budget), replacing the default or WORKER_CPU_KV_BUDGET. Caches
// already allocated stay and count against it.
func (b *Backend) SetKVBudget(bytes int64) {
	b.kv.mu.Lock()
	defer b.kv.mu.Unlock()
	b.kv.limit, b.kv.source, b.kv.err = max(bytes, 0), "set by the program", nil
}

// KVBudget returns the budget (0 = none), the bytes the live caches hold,
// and where the budget comes from.
func (b *Backend) KVBudget() (limit, used int64, source string) {
	b.kv.mu.Lock()
	defer b.kv.mu.Unlock()
	return b.kv.limit, b.kv.used, b.kv.source
}

// KVBytesPerPosition is the bytes one position of a KV cache takes: every
// layer's key and value rows in float32 (backend.KVSizer).
func (b *Backend) KVBytesPerPosition() int64 { return kvBytes(b.c.NLayer, b.c.KVDim(), 1) }

// DefaultKVMemory is the backend's KV budget as it stands
// (backend.KVMemoryAdvisor): WORKER_CPU_KV_BUDGET where it is set (the
// older name of the engine's --kv-memory, WORKER_KV_MEMORY, which wins
// over it), else DefaultKVBudget, or what SetKVBudget set. The error names
// an unusable WORKER_CPU_KV_BUDGET and the setting that replaces it.
func (b *Backend) DefaultKVMemory(parallel, batchTokens int) (int64, string, error) {
	b.kv.mu.Lock()
	defer b.kv.mu.Unlock()
	if b.kv.err != nil {
		return 0, "", fmt.Errorf("%w (or set the KV memory budget with --kv-memory or WORKER_KV_MEMORY, which replace %s)", b.kv.err, EnvKVBudget)
	}
	return b.kv.limit, b.kv.source, nil
}

var (
	_ backend.KVSizer         = (*Backend)(nil)
	_ backend.KVMemoryAdvisor = (*Backend)(nil)
	_ backend.KVLimiter       = (*Backend)(nil)
)

// DefaultKVBudget returns DefaultKVBudgetShare of the memory available now
// — the kernel's MemAvailable, or what the process's cgroup still allows
// if that is less — and a description of it; 0 and "no budget: …" when
// neither can be read (not Linux).
func DefaultKVBudget() (int64, string) {
	avail, what := availableMemory("/proc/meminfo", "/proc/self/cgroup", "/sys/fs/cgroup")
	if avail <= 0 {
		return 0, "no budget: the available memory is unknown (" + what + ")"
	}
	n := int64(float64(avail) * DefaultKVBudgetShare)
	return n, fmt.Sprintf("%.0f%% of %s %d bytes at start", DefaultKVBudgetShare*100, what, avail)
}

// availableMemory returns the bytes the process may still use and what
// they are: MemAvailable from meminfo, lowered to the cgroup's limit minus
// its usage where a cgroup (v2 or v1) limits memory.
func availableMemory(meminfo, selfCgroup, cgroupRoot string) (int64, string) {
	avail, err := memAvailable(meminfo)
	what := "MemAvailable"
	if err != nil {
		avail, what = 0, err.Error()
	}
	if limit, used, ok := cgroupMemory(selfCgroup, cgroupRoot); ok {
		if free := max(limit-used, 0); avail <= 0 || free < avail {
			avail, what = free, "the cgroup's memory limit less its usage"
		}
	}
	return avail, what
}

// memAvailable reads MemAvailable (in kB) from a meminfo file.
func memAvailable(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil || kb < 0 || kb > math.MaxInt64/1024 {
			return 0, fmt.Errorf("%s: unreadable MemAvailable line %q", path, sc.Text())
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s has no MemAvailable line", path)
}

// cgroupMemory returns the memory limit and usage of the process's cgroup,
// ok false when there is no limit or it cannot be read. selfCgroup is
// /proc/self/cgroup; cgroupRoot where the hierarchy is mounted.
func cgroupMemory(selfCgroup, cgroupRoot string) (limit, used int64, ok bool) {
	data, err := os.ReadFile(selfCgroup)
	if err != nil {
		return 0, 0, false
	}
	for line := range strings.Lines(string(data)) {
		// "0::/path" (v2) or "N:memory:/path" (v1).
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		var limitFile, usageFile string
		switch {
		case parts[0] == "0" && parts[1] == "":
			dir := filepath.Join(cgroupRoot, parts[2])
			limitFile, usageFile = filepath.Join(dir, "memory.max"), filepath.Join(dir, "memory.current")
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			dir := filepath.Join(cgroupRoot, "memory", parts[2])
			limitFile, usageFile = filepath.Join(dir, "memory.limit_in_bytes"), filepath.Join(dir, "memory.usage_in_bytes")
		default:
			continue
		}
		l, err1 := readInt(limitFile)
		u, err2 := readInt(usageFile)
		// v1 writes a huge number (about 2^63) for "no limit"; v2 writes "max".
		if err1 != nil || err2 != nil || l <= 0 || l >= 1<<62 {
			continue
		}
		return l, u, true
	}
	return 0, 0, false
}

func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

// ParseBytes reads a byte count: digits with an optional unit, B, K/KB,
// M/MB, G/GB, T/TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024),
// case-insensitive; "none" is 0 (no budget).
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if strings.EqualFold(t, "none") {
		return 0, nil
	}
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult := map[string]float64{"": 1, "b": 1,
		"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("unknown unit %q", strings.TrimSpace(t[i:]))
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, errors.New("no number")
	}
	if n := v * mult; n < math.MaxInt64 {
		return int64(n), nil
	}
	return 0, errors.New("too large")
}
