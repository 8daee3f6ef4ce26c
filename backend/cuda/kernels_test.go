package cuda

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"worker-orcd/backend/cuda/kernels"
)

// sourceKernels lists the extern "C" kernels the sources define, with the
// INSTANTIATE macros expanded.
func sourceKernels(t *testing.T, src string) []string {
	var names []string
	macros := regexp.MustCompile(`(?s)#define (\w+)\(NAME\)(.*?)\n\n`)
	plain := macros.ReplaceAllString(src, "")
	for _, m := range regexp.MustCompile(`extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(`).FindAllStringSubmatch(plain, -1) {
		names = append(names, m[1])
	}
	// #define MACRO(NAME) … void prefix##NAME( … ; then MACRO(t) lines.
	for _, m := range macros.FindAllStringSubmatch(src, -1) {
		macro, body := m[1], m[2]
		var prefixes []string
		for _, p := range regexp.MustCompile(`void (?:__launch_bounds__\(\d+\) )?(\w+)##NAME\(`).FindAllStringSubmatch(body, -1) {
			prefixes = append(prefixes, p[1])
		}
		for _, u := range regexp.MustCompile(`(?m)^`+macro+`\((\w+)\)$`).FindAllStringSubmatch(src, -1) {
			for _, p := range prefixes {
				names = append(names, p+u[1])
			}
		}
	}
	if len(names) == 0 {
		t.Fatal("no kernels found in the sources")
	}
	slices.Sort(names)
	return names
}

// TestKernelNamesMatchSources: the kernels Go loads are exactly those the
// sources define (names such as mmu_/mme_ consistent on both sides).
func TestKernelNamesMatchSources(t *testing.T) {
	src := sourceKernels(t, kernels.Source())
	goNames := kernelNames()
	slices.Sort(goNames)
	if !slices.Equal(src, goNames) {
		t.Errorf("kernels in the sources %v\nkernels Go loads %v", src, goNames)
	}
}

// TestLaunchConstantsDefinedOnce: every constant Go passes with -D is
// used by the sources, never defined there, and guarded by an #error.
func TestLaunchConstantsDefinedOnce(t *testing.T) {
	src := kernels.Source()
	for _, d := range kernelDefines() {
		m := regexp.MustCompile(`^--define-macro=(\w+)=\d+$`).FindStringSubmatch(d)
		if m == nil {
			t.Fatalf("define %q", d)
		}
		name := m[1]
		if regexp.MustCompile(`#define\s+` + name + `\b`).MatchString(src) {
			t.Errorf("%s is defined in the sources too: it would shadow Go's value", name)
		}
		if !strings.Contains(src, "#ifndef "+name+"\n#error") {
			t.Errorf("%s has no #error guard", name)
		}
		if strings.Count(src, name) < 4 { // guard (3) + a use
			t.Errorf("%s is not used by the sources", name)
		}
	}
	if maxSplits > maxMergeSplits {
		t.Errorf("maxSplits %d > the merge kernel's %d", maxSplits, maxMergeSplits)
	}
}

// TestCacheKeyCoversAllSources: changing any kernel file, or any -D
// constant, changes the compiled kernels' cache key.
func TestCacheKeyCoversAllSources(t *testing.T) {
	files := kernels.Files()
	opts := append([]string{"--gpu-architecture=sm_90"}, kernelDefines()...)
	base := cacheKey(kernels.Join(files), opts, "13.0")
	if base != cacheKey(kernels.Source(), opts, "13.0") {
		t.Fatal("Source is not Join(Files())")
	}
	for i := range files {
		changed := slices.Clone(files)
		changed[i].Text += "\n// edited\n"
		if cacheKey(kernels.Join(changed), opts, "13.0") == base {
			t.Errorf("editing %s leaves the cache key unchanged", files[i].Name)
		}
	}
	for i := range opts {
		o := slices.Clone(opts)
		o[i] += "0"
		if cacheKey(kernels.Source(), o, "13.0") == base {
			t.Errorf("changing option %s leaves the cache key unchanged", opts[i])
		}
	}
	if cacheKey(kernels.Source(), opts, "13.1") == base {
		t.Error("another NVRTC version, the same key")
	}
}

// TestKernelFilesHaveHeaders: each file opens with a comment naming it and,
// for kernel files, giving launch shapes; #line directives name each file.
func TestKernelFilesHaveHeaders(t *testing.T) {
	src := kernels.Source()
	for _, f := range kernels.Files() {
		if !strings.HasPrefix(f.Text, "// "+f.Name+" — ") {
			t.Errorf("%s does not begin with its header comment", f.Name)
		}
		if strings.HasSuffix(f.Name, ".cu") && (!strings.Contains(f.Text, "grid") || !strings.Contains(f.Text, "block")) {
			t.Errorf("%s: the header gives no launch shape", f.Name)
		}
		if !strings.Contains(src, "#line 1 \""+f.Name+"\"\n") {
			t.Errorf("%s has no #line directive in the translation unit", f.Name)
		}
	}
}

// launchRecord is one launch seen by the stubbed driver.
type launchRecord struct {
	kernel      cuFunction
	grid, block [3]uint32
	shared      uint32
}

// recordLaunches stubs cuLaunchKernel and returns the launches it saw
// (kernel i+1 is names[i]).
func recordLaunches(t *testing.T) (*Device, *[]launchRecord, []string) {
	d := &Device{funcs: map[string]cuFunction{}, Major: 9} // an H100/H200
	names := kernelNames()
	for i, n := range names {
		d.funcs[n] = cuFunction(i + 1)
	}
	var got []launchRecord
	stubLaunch(t, func(fn cuFunction, grid, block [3]uint32, shared uint32, params unsafe.Pointer) cuResult {
		got = append(got, launchRecord{fn, grid, block, shared})
		return 0
	})
	return d, &got, names
}

// TestTypedLaunchShapes: each typed launcher launches its kernel with the
// grid and block its header comment gives (the shapes tuned in
// docs/perf.md, unchanged by the typed launchers).
func TestTypedLaunchShapes(t *testing.T) {
	d, got, names := recordLaunches(t)
	const X, W, O = devicePtr(0x10000), devicePtr(0x20000), devicePtr(0x30000)
	job := func(rows int) mmJob { return mmJob{W: W, RowBytes: 64, Out: O, Rows: int32(rows)} }
	name := func(fn cuFunction) string { return names[fn-1] }
	for _, c := range []struct {
		launch      func() error
		kernel      string
		grid, block [3]uint32
		shared      uint32
	}{
		{func() error {
			return d.mmu("q4_k", &mmArgs{Job: [3]mmJob{job(37)}, NJobs: 1, X: X, Cols: 256, T: 9}, 37)
		}, "mmu_q4_k", [3]uint32{3, 3, 1}, [3]uint32{256, 1, 1}, 0},
		{func() error {
			return d.mmu("f32", &mmArgs{Job: [3]mmJob{job(37), job(37)}, NJobs: 2, GLU: 1, X: X, Cols: 256, T: 4}, 37)
		}, "mmu_f32", [3]uint32{5, 1, 1}, [3]uint32{256, 1, 1}, 0},
		{func() error {
			return d.mme("q8_0", &mmArgs{Job: [3]mmJob{job(37)}, NJobs: 1, X: X, Cols: 100, T: 17}, 37)
		}, "mme_q8_0", [3]uint32{5, 3, 1}, [3]uint32{256, 1, 1}, 0},
		{func() error {
			return d.mmt("q6_k", &mmArgs{Job: [3]mmJob{job(70)}, NJobs: 1, X: X, X16: X, Cols: 256, T: 70, Parts: 2, Tok: 64}, 2)
		}, "mmt_q6_k", [3]uint32{2, 2, 1}, [3]uint32{256, 1, 1}, uint32(mmtShared(2, 64))},
		{func() error {
			return d.mmt("q6_k", &mmArgs{Job: [3]mmJob{job(70)}, NJobs: 1, X: X, X16: X, Cols: 256, T: 5, Parts: 2, Tok: 8}, 2)
		}, "mmt1_q6_k", [3]uint32{2, 1, 1}, [3]uint32{256, 1, 1}, uint32(mmtShared(2, 8))},
		{func() error {
			return d.mmq("q4_k", &mmArgs{Job: [3]mmJob{job(37)}, NJobs: 1, X: X, Cols: 3072, T: 9}, 37, W, O)
		}, "mmq_q4_k", [3]uint32{3, 2, 1}, [3]uint32{256, 1, 1}, 0},
		{func() error {
			return d.mmq1("q6_k", &mmArgs{Job: [3]mmJob{job(37), job(37)}, NJobs: 2, GLU: 1, X: X, Cols: 3072, T: 1}, 37)
		}, "mmq1_q6_k", [3]uint32{5, 1, 1}, [3]uint32{256, 1, 1}, uint32(mmqShared(3072))},
		{func() error {
			return d.mmqt("q5_0", &mmArgs{Job: [3]mmJob{job(37)}, NJobs: 1, X: X, Cols: 896, T: 70}, 37, W, O)
		}, "mmqt_q5_0", [3]uint32{3, 3, 1}, [3]uint32{256, 1, 1}, 0},
		{func() error { return d.q8Rows(X, 70, 896, W, O) }, "q8_rows", [3]uint32{8, 1, 1}, [3]uint32{256, 1, 1}, 0},
		{func() error {
			return d.gemmq(&dmat{ptr: W, rows: 130, cols: 896, rowBytes: 504, suffix: "q4_k"}, X, 100, O)
		}, "gemmq_q4_k", [3]uint32{3, 2, 1}, [3]uint32{128, 1, 1}, 0},
		{func() error { return d.rmsNorm(X, W, O, 0, 5, 896, 1e-6) }, "rms_norm_f32", [3]uint32{5, 1, 1}, [3]uint32{1024, 1, 1}, 0},
		{func() error { return d.swiglu(X, W, 0, 1000) }, "swiglu_f32", [3]uint32{4, 1, 1}, [3]uint32{256, 1, 1}, 0},
		{func() error {
			return d.ropeStore("f16", X, X, X, W, O, O, 5, 3, headShape{14, 2, 64}, 64, true)
		}, "rope_store_f16", [3]uint32{3, 1, 1}, [3]uint32{1024, 1, 1}, 0},
		{func() error {
			return d.attentionSplit("f32", X, O, W, X, 5, 3, headShape{14, 2, 64}, 0, 0.125, 16)
		}, "attention_split_f32", [3]uint32{3, 14, 16}, [3]uint32{128, 1, 1}, 0},
		{func() error { return d.attentionMerge(X, O, 0, 3, 14, 64, 16) }, "attention_merge_f32", [3]uint32{3, 14, 1}, [3]uint32{128, 1, 1}, 0},
		{func() error {
			return d.attentionPrompt(X, O, W, X, 5, 130, headShape{32, 32, 96}, 2047, 0.1, 16)
		}, "attention_prompt_hd96", [3]uint32{3, 32, 16}, [3]uint32{128, 1, 1}, 0},
		{func() error { return d.toF16Rows(X, O, 4096) }, "to_f16_rows", [3]uint32{4, 1, 1}, [3]uint32{256, 1, 1}, 0},
		{func() error { return d.embed(&dmat{ptr: W, rows: 10, cols: 64, rowBytes: 128, suffix: "f16"}, X, O, 7) }, "embed_f16", [3]uint32{7, 1, 1}, [3]uint32{256, 1, 1}, 0},
	} {
		*got = (*got)[:0]
		if err := c.launch(); err != nil {
			t.Errorf("%s: %v", c.kernel, err)
			continue
		}
		if len(*got) != 1 {
			t.Errorf("%s: %d launches", c.kernel, len(*got))
			continue
		}
		g := (*got)[0]
		if name(g.kernel) != c.kernel || g.grid != c.grid || g.block != c.block || g.shared != c.shared {
			t.Errorf("launched %s grid %v block %v shared %d; want %s grid %v block %v shared %d",
				name(g.kernel), g.grid, g.block, g.shared, c.kernel, c.grid, c.block, c.shared)
		}
	}
	// Top-k: two stages, the chunks of every row (Qwen's 151 936 logits in
	// 38 chunks of 4 096), then a block a row.
	*got = (*got)[:0]
	if err := d.topK(X, 2, 151936, 40, O, O+4, O+8, 151936, 1040, W, 0, 0); err != nil {
		t.Fatalf("topK: %v", err)
	}
	want := []launchRecord{{0, [3]uint32{38, 2, 1}, [3]uint32{256, 1, 1}, 0}, {0, [3]uint32{2, 1, 1}, [3]uint32{1024, 1, 1}, 0}}
	if len(*got) != len(want) {
		t.Fatalf("topK: %d launches, want %d", len(*got), len(want))
	}
	for i, k := range []string{"topk_chunk_f32", "topk_merge_f32"} {
		g := (*got)[i]
		if name(g.kernel) != k || g.grid != want[i].grid || g.block != want[i].block || g.shared != 0 {
			t.Errorf("launched %s grid %v block %v shared %d; want %s grid %v block %v", name(g.kernel), g.grid, g.block, g.shared, k, want[i].grid, want[i].block)
		}
	}
}

// TestTypedLaunchersRefuse: arguments a kernel would compute garbage from
// are refused before the driver is called.
func TestTypedLaunchersRefuse(t *testing.T) {
	d, got, _ := recordLaunches(t)
	const X, W, O = devicePtr(0x10000), devicePtr(0x20000), devicePtr(0x30000)
	job := func(rows int) mmJob { return mmJob{W: W, RowBytes: 64, Out: O, Rows: int32(rows)} }
	for _, c := range []struct {
		name   string
		launch func() error
	}{
		{"mmu with cols not a multiple of 32", func() error {
			return d.mmu("f16", &mmArgs{Job: [3]mmJob{job(8)}, NJobs: 1, X: X, Cols: 100, T: 1}, 8)
		}},
		{"glu with rows that differ", func() error {
			return d.mmu("f16", &mmArgs{Job: [3]mmJob{job(8), job(9)}, NJobs: 2, GLU: 1, X: X, Cols: 64, T: 1}, 8)
		}},
		{"four jobs", func() error { return d.mme("f16", &mmArgs{Job: [3]mmJob{job(8)}, NJobs: 4, X: X, Cols: 64, T: 1}, 8) }},
		{"a job without weights", func() error {
			return d.mme("f16", &mmArgs{Job: [3]mmJob{{Out: O, Rows: 8, RowBytes: 64}}, NJobs: 1, X: X, Cols: 64, T: 1}, 8)
		}},
		{"mmt with 3 parts", func() error {
			return d.mmt("f16", &mmArgs{Job: [3]mmJob{job(8)}, NJobs: 1, X: X, X16: X, Cols: 64, T: 1, Parts: 3, Tok: 8}, 1)
		}},
		{"mmt with too many tokens", func() error {
			return d.mmt("f16", &mmArgs{Job: [3]mmJob{job(8)}, NJobs: 1, X: X, X16: X, Cols: 64, T: 1, Parts: 8, Tok: 64}, 1)
		}},
		{"mmt without F16 activations", func() error {
			return d.mmt("f16", &mmArgs{Job: [3]mmJob{job(8)}, NJobs: 1, X: X, Cols: 64, T: 1, Parts: 1, Tok: 8}, 1)
		}},
		{"mmq of F16 weights", func() error {
			return d.mmq("f16", &mmArgs{Job: [3]mmJob{job(8)}, NJobs: 1, X: X, Cols: 64, T: 2}, 8, W, O)
		}},
		{"mmq without quantized activations", func() error {
			return d.mmq("q8_0", &mmArgs{Job: [3]mmJob{job(8)}, NJobs: 1, X: X, Cols: 64, T: 2}, 8, 0, 0)
		}},
		{"mmq1 of two rows", func() error {
			return d.mmq1("q8_0", &mmArgs{Job: [3]mmJob{job(8)}, NJobs: 1, X: X, Cols: 64, T: 2}, 8)
		}},
		{"mmq1 rows too wide for shared memory", func() error {
			return d.mmq1("q8_0", &mmArgs{Job: [3]mmJob{job(8)}, NJobs: 1, X: X, Cols: 1 << 20, T: 1}, 8)
		}},
		{"mmqt without quantized activations", func() error {
			return d.mmqt("q4_k", &mmArgs{Job: [3]mmJob{job(8)}, NJobs: 1, X: X, Cols: 256, T: 32}, 8, 0, 0)
		}},
		{"mmqt below sm_80", func() error {
			d.Major = 7
			defer func() { d.Major = 9 }()
			return d.mmqt("q4_k", &mmArgs{Job: [3]mmJob{job(8)}, NJobs: 1, X: X, Cols: 256, T: 32}, 8, W, O)
		}},
		{"q8_rows of 100 columns", func() error { return d.q8Rows(X, 1, 100, W, O) }},
		{"gemmq of F16 weights", func() error {
			return d.gemmq(&dmat{ptr: W, rows: 8, cols: 64, rowBytes: 128, suffix: "f16"}, X, 4, O)
		}},
		{"gemmq without rows", func() error {
			return d.gemmq(&dmat{ptr: W, rows: 8, cols: 256, rowBytes: 144, suffix: "q4_k"}, X, 0, O)
		}},
		{"gemmq below sm_80", func() error {
			d.Major = 7
			defer func() { d.Major = 9 }()
			return d.gemmq(&dmat{ptr: W, rows: 8, cols: 256, rowBytes: 144, suffix: "q4_k"}, X, 4, O)
		}},
		{"rms norm width 90", func() error { return d.rmsNorm(X, W, O, 0, 1, 90, 1e-6) }},
		{"rms norm without weights", func() error { return d.rmsNorm(X, 0, O, 0, 1, 64, 1e-6) }},
		{"rope over more than a head", func() error { return d.ropeStore("f32", X, X, X, W, O, O, 0, 1, headShape{4, 2, 64}, 96, true) }},
		{"attention head of 256", func() error { return d.attentionSplit("f32", X, O, W, X, 0, 1, headShape{4, 2, 256}, 0, 1, 16) }},
		{"attention KV heads not dividing", func() error { return d.attentionSplit("f32", X, O, W, X, 0, 1, headShape{6, 4, 64}, 0, 1, 16) }},
		{"merge of 65 splits", func() error { return d.attentionMerge(X, O, 0, 1, 4, 64, 65) }},
		{"prompt attention, head dimension 80", func() error { return d.attentionPrompt(X, O, W, X, 0, 4, headShape{4, 2, 80}, 0, 1, 16) }},
		{"prompt attention, no rows", func() error { return d.attentionPrompt(X, O, W, X, 0, 0, headShape{4, 2, 64}, 0, 1, 16) }},
		{"prompt attention, window -1", func() error { return d.attentionPrompt(X, O, W, X, 0, 4, headShape{4, 2, 64}, -1, 1, 16) }},
		{"prompt attention, 65 splits", func() error { return d.attentionPrompt(X, O, W, X, 0, 4, headShape{4, 2, 64}, 0, 1, 65) }},
		{"prompt attention below sm_80", func() error {
			d.Major = 7
			defer func() { d.Major = 9 }()
			return d.attentionPrompt(X, O, W, X, 0, 4, headShape{4, 2, 64}, 0, 1, 16)
		}},
		{"top 50 of 40", func() error { return d.topK(X, 1, 40, 50, O, O, O, 40, 0, W, 0, 0) }},
		{"top 257", func() error { return d.topK(X, 1, 1000, 257, O, O, O, 1000, 0, W, 0, 0) }},
		{"top-k without scratch", func() error { return d.topK(X, 1, 1000, 5, O, O, O, 1000, 0, 0, 0, 0) }},
		{"top-k rows overlapping", func() error { return d.topK(X, 2, 1000, 5, O, O, O, 999, 64, W, 0, 0) }},
		{"top-k results overlapping", func() error { return d.topK(X, 2, 1000, 5, O, O, O, 1000, 0, W, 0, 0) }},
		{"top-k masks overlapping", func() error { return d.topK(X, 2, 1000, 5, O, O, O, 1000, 64, W, W, 15) }},
		{"to_f16_rows of 6", func() error { return d.toF16Rows(X, O, 6) }},
		{"embed of 2^31 columns", func() error {
			return d.embed(&dmat{ptr: W, rows: 1, cols: 1 << 31, rowBytes: 1 << 32, suffix: "f16"}, X, O, 1)
		}},
		{"swiglu over 2^31 elements", func() error { return d.swiglu(X, W, 0, 1<<31) }},
	} {
		if err := c.launch(); !errors.Is(err, ErrLaunch) {
			t.Errorf("%s: error %v, want ErrLaunch", c.name, err)
		}
	}
	if len(*got) != 0 {
		t.Errorf("%d refused launches reached the driver", len(*got))
	}
}
