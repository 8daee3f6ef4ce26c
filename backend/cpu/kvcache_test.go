package cpu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/internal/testmodel"
	"worker-orcd/model"
)

// openMicro opens the qwen2-micro synthetic model (2 layers, KV width 32:
// 512 bytes of cache per position).
func openMicro(t *testing.T) *model.Model {
	t.Helper()
	return openSpec(t, testmodel.MustPreset("qwen2-micro"))
}

// openSpec writes spec's synthetic model into the test's temporary folder
// and opens it; it is closed when the test ends.
func openSpec(t *testing.T, spec testmodel.Spec) *model.Model {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := spec.Write(path); err != nil {
		t.Fatal(err)
	}
	m, err := model.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestKVBudgetFromEnvironment: WORKER_CPU_KV_BUDGET caps the KV caches; a
// cache beyond it is an AllocationFailed error, not an allocation.
func TestKVBudgetFromEnvironment(t *testing.T) {
	m := openMicro(t)
	t.Setenv("WORKER_CPU_KV_BUDGET", "1MiB")
	b := New(m, 1)
	defer b.Close()
	kv, err := b.NewKVCache(1 << 20) // 512 MiB
	if err == nil {
		kv.Free()
		t.Fatal("a 512 MiB KV cache was allocated under a 1 MiB budget, want an AllocationFailed error")
	}
	if !strings.Contains(err.Error(), "AllocationFailed: 536870912 bytes") {
		t.Errorf("error %q, want AllocationFailed naming the 536870912 bytes asked", err)
	}
}

// TestKVBudget: the caches of one backend together stay within its budget;
// a cache or a Reserve beyond it fails with an *AllocationError that
// matches backend.ErrOutOfMemory and leaves what exists unchanged; Free
// gives the bytes back.
func TestKVBudget(t *testing.T) {
	m := openMicro(t)
	const perPos = 2 * 2 * 32 * 4 // layers × (K, V) × kv width × float32
	if got := kvBytes(m.Config.NLayer, m.Config.KVDim(), 1); got != perPos {
		t.Fatalf("qwen2-micro KV bytes per position %d, want %d", got, perPos)
	}
	b := New(m, 1)
	defer b.Close()
	b.SetKVBudget(100 * perPos)

	a, err := b.NewKVCache(60)
	if err != nil {
		t.Fatalf("60 positions under a 100-position budget: %v", err)
	}
	checkUsed := func(want int64) {
		t.Helper()
		if _, used, _ := b.KVBudget(); used != want {
			t.Errorf("budget used %d bytes, want %d", used, want)
		}
	}
	checkUsed(60 * perPos)

	steps := []struct {
		name    string
		do      func() error
		wantErr *AllocationError // nil: success
		used    int64
	}{
		{"second cache beyond what is left", func() error { _, err := b.NewKVCache(41); return err },
			&AllocationError{Bytes: 41 * perPos, Positions: 41, InUse: 60 * perPos, Budget: 100 * perPos}, 60 * perPos},
		{"second cache that fits exactly", func() error {
			kv, err := b.NewKVCache(40)
			if err == nil {
				kv.Free()
			}
			return err
		}, nil, 60 * perPos},
		{"reserve beyond the budget", func() error { return a.Reserve(101) },
			&AllocationError{Bytes: 101 * perPos, Positions: 101, InUse: 0, Budget: 100 * perPos}, 60 * perPos},
		{"reserve within it counts only the growth", func() error { return a.Reserve(100) }, nil, 100 * perPos},
		{"a cache larger than the whole budget", func() error { _, err := b.NewKVCache(1 << 40); return err },
			&AllocationError{Bytes: (1 << 40) * perPos, Positions: 1 << 40, InUse: 100 * perPos, Budget: 100 * perPos}, 100 * perPos},
		{"free gives the bytes back", func() error { a.Free(); return nil }, nil, 0},
		{"free twice gives nothing more", func() error { a.Free(); return nil }, nil, 0},
	}
	for _, s := range steps {
		err := s.do()
		switch {
		case s.wantErr == nil && err != nil:
			t.Errorf("%s: %v, want success", s.name, err)
		case s.wantErr != nil:
			var ae *AllocationError
			if !errors.As(err, &ae) || !errors.Is(err, backend.ErrOutOfMemory) {
				t.Errorf("%s: %v, want an *AllocationError matching backend.ErrOutOfMemory", s.name, err)
				break
			}
			got := *ae
			got.Source = ""
			if got != *s.wantErr {
				t.Errorf("%s: %+v, want %+v", s.name, got, *s.wantErr)
			}
			for _, part := range []string{"AllocationFailed: ", fmt.Sprint(s.wantErr.Bytes, " bytes"), fmt.Sprint("budget ", s.wantErr.Budget), "set by the program", EnvKVBudget, "max_tokens"} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("%s: message %q lacks %q", s.name, err, part)
				}
			}
		}
		checkUsed(s.used)
	}
	if a.Cap() != 0 || a.Len() != 0 {
		t.Errorf("freed cache: cap %d len %d, want 0 0", a.Cap(), a.Len())
	}
	b.SetKVBudget(0)
	if kv, err := b.NewKVCache(1000); err != nil {
		t.Errorf("no budget: %v", err)
	} else {
		kv.Free()
	}
}

// TestKVBudgetReserveKeepsData: a Reserve refused by the budget leaves the
// cache's contents and capacity as they were.
func TestKVBudgetReserveKeepsData(t *testing.T) {
	m := openMicro(t)
	b := New(m, 1)
	defer b.Close()
	b.SetKVBudget(kvBytes(m.Config.NLayer, m.Config.KVDim(), 8))
	kv, err := b.NewKVCache(8)
	if err != nil {
		t.Fatal(err)
	}
	s := &backend.Seq{Tokens: []int32{1, 2, 3}, KV: kv}
	if err := b.Forward([]*backend.Seq{s}); err != nil {
		t.Fatal(err)
	}
	c := kv.(*KVCache)
	before, _ := contiguous(&c.kvStore, 1, 8)
	if err := kv.Reserve(9); !errors.Is(err, backend.ErrOutOfMemory) {
		t.Fatalf("Reserve(9) under an 8-position budget: %v, want backend.ErrOutOfMemory", err)
	}
	after, _ := contiguous(&c.kvStore, 1, 8)
	if kv.Cap() != 8 || kv.Len() != 3 || !slices.Equal(after, before) {
		t.Errorf("after a refused Reserve: cap %d len %d (want 8 3), keys changed %v", kv.Cap(), kv.Len(), !slices.Equal(after, before))
	}
}

func TestKVBudgetEnvironment(t *testing.T) {
	m := openMicro(t)
	cases := []struct {
		env     string
		limit   int64
		wantErr string // from NewKVCache
	}{
		{"1MiB", 1 << 20, ""},
		{"2GB", 2e9, ""},
		{" 1073741824 ", 1 << 30, ""},
		{"none", 0, ""},
		{"0", 0, ""},
		{"lots", 0, `WORKER_CPU_KV_BUDGET="lots": unknown unit "lots": want a byte count such as 16GiB`},
		{"12 parsecs", 0, `WORKER_CPU_KV_BUDGET="12 parsecs": unknown unit "parsecs"`},
	}
	for _, c := range cases {
		t.Run(c.env, func(t *testing.T) {
			t.Setenv(EnvKVBudget, c.env)
			b := New(m, 1)
			defer b.Close()
			limit, _, source := b.KVBudget()
			kv, err := b.NewKVCache(4)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("NewKVCache: %v, want an error containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewKVCache: %v", err)
			}
			kv.Free()
			if limit != c.limit || source != "set by "+EnvKVBudget {
				t.Errorf("budget %d (%s), want %d set by %s", limit, source, c.limit, EnvKVBudget)
			}
		})
	}
}

func TestParseBytes(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  bool
	}{
		{"0", 0, false}, {"512", 512, false}, {"512B", 512, false}, {"4k", 4000, false}, {"4KiB", 4096, false},
		{"1.5GiB", 3 << 29, false}, {"16gib", 16 << 30, false}, {"3 MB", 3e6, false}, {"2T", 2e12, false}, {"1TiB", 1 << 40, false},
		{"NONE", 0, false}, {"", 0, true}, {"GiB", 0, true}, {"-5", 0, true}, {"5 XB", 0, true}, {"1e30", 0, true}, {"99999999999TiB", 0, true},
	}
	for _, c := range cases {
		got, err := ParseBytes(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d, error %v", c.in, got, err, c.want, c.err)
		}
	}
}

// TestAvailableMemory: MemAvailable, lowered to a cgroup's limit less its
// usage where one is set (v2 and v1 layouts), from files written here.
func TestAvailableMemory(t *testing.T) {
	const meminfo = "MemTotal:       24684096 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n"
	cases := []struct {
		name    string
		files   map[string]string
		want    int64
		wantSrc string
	}{
		{"meminfo only", map[string]string{"meminfo": meminfo}, 20000000 * 1024, "MemAvailable"},
		{"cgroup v2 without a limit", map[string]string{"meminfo": meminfo, "self": "0::/app\n",
			"root/app/memory.max": "max\n", "root/app/memory.current": "1000\n"}, 20000000 * 1024, "MemAvailable"},
		{"cgroup v2 limit", map[string]string{"meminfo": meminfo, "self": "0::/app\n",
			"root/app/memory.max": "4294967296\n", "root/app/memory.current": "1073741824\n"}, 3 << 30, "cgroup"},
		{"cgroup v2 limit above MemAvailable", map[string]string{"meminfo": meminfo, "self": "0::/\n",
			"root/memory.max": "99999999999999\n", "root/memory.current": "0\n"}, 20000000 * 1024, "MemAvailable"},
		{"cgroup v1 limit", map[string]string{"meminfo": meminfo, "self": "12:cpu,cpuacct:/x\n5:memory:/pod\n",
			"root/memory/pod/memory.limit_in_bytes": "2147483648\n", "root/memory/pod/memory.usage_in_bytes": "1073741824\n"}, 1 << 30, "cgroup"},
		{"cgroup v1 unlimited", map[string]string{"meminfo": meminfo, "self": "5:memory:/\n",
			"root/memory/memory.limit_in_bytes": "9223372036854771712\n", "root/memory/memory.usage_in_bytes": "1\n"}, 20000000 * 1024, "MemAvailable"},
		{"cgroup over its limit", map[string]string{"meminfo": meminfo, "self": "0::/\n",
			"root/memory.max": "1000\n", "root/memory.current": "2000\n"}, 0, "cgroup"},
		{"nothing readable", map[string]string{}, 0, "no such file"},
		{"meminfo without MemAvailable", map[string]string{"meminfo": "MemTotal: 5 kB\n"}, 0, "has no MemAvailable line"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range c.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, src := availableMemory(filepath.Join(dir, "meminfo"), filepath.Join(dir, "self"), filepath.Join(dir, "root"))
			if got != c.want || !strings.Contains(src, c.wantSrc) {
				t.Errorf("available %d (%s), want %d (%s)", got, src, c.want, c.wantSrc)
			}
		})
	}
}

// TestDefaultKVBudget: on this machine the default is the share of what
// was available when it was read (the figure its source names; other
// tests running beside this one move MemAvailable between two reads, so
// that figure is checked against a second read within 10 %).
func TestDefaultKVBudget(t *testing.T) {
	n, src := DefaultKVBudget()
	avail, _ := availableMemory("/proc/meminfo", "/proc/self/cgroup", "/sys/fs/cgroup")
	if avail <= 0 {
		if n != 0 {
			t.Errorf("DefaultKVBudget %d (%s) with the available memory unknown", n, src)
		}
		return
	}
	head, ok := strings.CutSuffix(src, " bytes at start")
	fields := strings.Fields(head)
	read, err := strconv.ParseInt(fields[len(fields)-1], 10, 64)
	if !ok || err != nil || read <= 0 {
		t.Fatalf("source %q does not name the bytes it read", src)
	}
	if want := int64(float64(read) * DefaultKVBudgetShare); n != want || !strings.Contains(src, "75% of") {
		t.Errorf("DefaultKVBudget %d (%s), want %d (%v of %d, said as the share)", n, src, want, DefaultKVBudgetShare, read)
	}
	if d := read - avail; d > avail/10 || -d > avail/10 {
		t.Errorf("DefaultKVBudget read %d bytes available, a second read %d", read, avail)
	}
}

// TestCloseTwice: closing the backend twice is harmless (it panicked on a
// closed channel, e.g. when two engines shared a backend in a test).
func TestCloseTwice(t *testing.T) {
	m := openMicro(t)
	b := New(m, 2)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}
