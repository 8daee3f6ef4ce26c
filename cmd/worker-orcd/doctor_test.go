package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"worker-orcd/backend/cpu"
	"worker-orcd/gguf"
	"worker-orcd/internal/fixtures"
	"worker-orcd/internal/testmodel"
	"worker-orcd/model"
)

// writeSpec writes a micro model, after edit (if any) changes its builder.
func writeSpec(t *testing.T, preset string, omit []string, edit func(b *gguf.Builder)) string {
	t.Helper()
	s := testmodel.MustPreset(preset)
	s.Type = testmodel.Q8_0
	s.Seed = 3
	s.Omit = omit
	b, err := s.Builder()
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(b)
	}
	p := filepath.Join(t.TempDir(), preset+".gguf")
	if err := b.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func runDoctorJSON(t *testing.T, args ...string) (int, doctorReport) {
	t.Helper()
	code, out, errOut := runCLI(append([]string{"doctor", "--json"}, args...)...)
	var rep doctorReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("doctor --json output is not JSON: %v\n%s\nstderr: %s", err, out, errOut)
	}
	if rep.OK != (code == 0) {
		t.Errorf("ok=%v but exit status %d", rep.OK, code)
	}
	return code, rep
}

func findCheck(rep doctorReport, name string) (doctorCheck, bool) {
	for _, c := range rep.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return doctorCheck{}, false
}

func TestDoctorGoodModels(t *testing.T) {
	for _, preset := range []string{"qwen2-micro", "phi3-micro", "llama-micro"} {
		t.Run(preset, func(t *testing.T) {
			p := writeSpec(t, preset, nil, nil)
			code, rep := runDoctorJSON(t, "--model", p)
			if code != 0 {
				t.Fatalf("exit %d on a good model: %+v", code, rep.Checks)
			}
			for _, name := range []string{"file.exists", "file.magic", "file.version", "file.size", "file.gguf",
				"model.architecture", "model.config", "model.tensors", "tokenizer.metadata", "tokenizer.vocab",
				"model.context", "model.memory", "smoke.generate"} {
				c, ok := findCheck(rep, name)
				if !ok {
					t.Errorf("no %s check", name)
					continue
				}
				if c.Status != statusOK {
					t.Errorf("%s: %s %s (fix %s)", name, c.Status, c.Message, c.Fix)
				}
			}
			if c, _ := findCheck(rep, "smoke.generate"); !strings.Contains(c.Message, "identical twice") || !strings.Contains(c.Message, "tok/s") {
				t.Errorf("smoke line: %s", c.Message)
			}
		})
	}
}

// TestDoctorBroken is the acceptance table of issue 6: each broken file gives
// the right failing line and fix, and exit status 1.
func TestDoctorBroken(t *testing.T) {
	good := writeSpec(t, "qwen2-micro", nil, nil)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrongMagic := append([]byte("GGML"), data[4:]...)
	badVersion := append([]byte(nil), data...)
	badVersion[4] = 1
	tests := []struct {
		name      string
		path      string
		args      []string
		check     string
		msg, fix  string
		stillRuns []string // checks that must still be reported
	}{
		{name: "truncated", path: write("trunc.gguf", data[:len(data)*2/3]), check: "file.size",
			msg: "incomplete download: the file is", fix: "re-download",
			stillRuns: []string{"file.gguf", "gpu"}},
		{name: "truncated-gguf-line", path: write("trunc2.gguf", data[:len(data)-100]), check: "file.gguf",
			msg: "GGUFError: tensor", fix: "re-download"},
		{name: "truncated-in-header", path: write("trunc3.gguf", data[:200]), check: "file.size",
			msg: "header cannot be read", fix: "re-download"},
		{name: "wrong-magic", path: write("magic.gguf", wrongMagic), check: "file.magic",
			msg: "magic bytes [47 47 4d 4c]", fix: "point --model at a .gguf file"},
		{name: "zero-filled", path: write("zero.gguf", make([]byte, 4096)), check: "file.magic",
			msg: "preallocated", fix: "re-download"},
		{name: "lfs-pointer", path: write("lfs.gguf", []byte("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")),
			check: "file.magic", msg: "Git LFS pointer", fix: "point --model"},
		{name: "empty", path: write("empty.gguf", nil), check: "file.magic", msg: "empty", fix: "re-download"},
		{name: "version-1", path: write("v1.gguf", badVersion), check: "file.version", msg: "GGUF version 1", fix: "re-convert"},
		{name: "missing", path: filepath.Join(dir, "nope.gguf"), check: "file.exists", msg: "does not exist", fix: "--model path"},
		{name: "directory", path: dir, check: "file.exists", msg: "is a directory", fix: "convert_hf_to_gguf"},
		{name: "no-tokenizer", path: writeSpec(t, "qwen2-micro", nil, func(b *gguf.Builder) {
			b.Delete("tokenizer.ggml.tokens")
			b.Delete("tokenizer.ggml.merges")
		}), check: "tokenizer.metadata", msg: `Metadata key not found: "tokenizer.ggml.tokens", "tokenizer.ggml.merges"`, fix: "tokenizer files",
			stillRuns: []string{"model.tensors", "model.memory"}},
		{name: "no-scores", path: writeSpec(t, "llama-micro", nil, func(b *gguf.Builder) { b.Delete("tokenizer.ggml.scores") }),
			check: "tokenizer.metadata", msg: "tokenizer.ggml.scores", fix: "tokenizer files"},
		{name: "tensor-removed", path: writeSpec(t, "qwen2-micro", []string{"blk.1.attn_k.weight"}, nil),
			check: "model.tensors", msg: `WeightMappingError`, fix: "re-convert",
			stillRuns: []string{"tokenizer.metadata", "model.memory"}},
		{name: "wrong-shape", path: writeSpec(t, "qwen2-micro", nil, func(b *gguf.Builder) {
			b.Set("qwen2.feed_forward_length", uint32(96))
		}), check: "model.tensors", msg: "blk.0.ffn", fix: "re-convert"},
		{name: "unsupported-arch", path: writeSpec(t, "qwen2-micro", nil, func(b *gguf.Builder) {
			b.Set("general.architecture", "gpt2")
		}), check: "model.architecture", msg: `InvalidModelType: architecture "gpt2" is not supported`, fix: "llama, phi3, qwen2",
			stillRuns: []string{"tokenizer.metadata", "gpu"}},
		{name: "vocab-mismatch", path: writeSpec(t, "qwen2-micro", nil, func(b *gguf.Builder) {
			s := testmodel.MustPreset("llama-micro")
			kvs, _, err := s.TokenizerKV()
			if err != nil {
				t.Fatal(err)
			}
			for _, kv := range kvs {
				b.Set(kv.Key, kv.Value)
			}
			b.Delete("tokenizer.ggml.merges")
			b.Delete("tokenizer.ggml.pre")
		}), check: "tokenizer.vocab", msg: "does not belong to these weights", fix: "publisher"},
		{name: "ctx-too-long", path: good, args: []string{"--ctx", "100000"}, check: "model.context",
			msg: "more than the model's context length 512", fix: "--ctx 512"},
		{name: "sha-mismatch", path: good, args: []string{"--sha256", strings.Repeat("ab", 32)}, check: "file.sha256",
			msg: "want abab", fix: "re-download"},
		{name: "bad-device", path: good, args: []string{"--device", "tpu"}, check: "gpu", msg: `"tpu"`, fix: "cuda[:N]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, rep := runDoctorJSON(t, append([]string{"--model", tc.path, "--no-smoke"}, tc.args...)...)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			c, ok := findCheck(rep, tc.check)
			if !ok {
				t.Fatalf("no %s check in %+v", tc.check, rep.Checks)
			}
			if c.Status != statusFail || !strings.Contains(c.Message, tc.msg) || !strings.Contains(c.Fix, tc.fix) {
				t.Errorf("%s: got %s %q fix %q; want fail containing %q, fix containing %q", tc.check, c.Status, c.Message, c.Fix, tc.msg, tc.fix)
			}
			for _, n := range tc.stillRuns {
				if _, ok := findCheck(rep, n); !ok {
					t.Errorf("check %s was not reported after the failure", n)
				}
			}
		})
	}
}

func TestDoctorSHA256OK(t *testing.T) {
	p := writeSpec(t, "qwen2-micro", nil, nil)
	data, _ := os.ReadFile(p)
	sum := sha256.Sum256(data)
	code, rep := runDoctorJSON(t, "--model", p, "--no-smoke", "--sha256", strings.ToUpper(hex.EncodeToString(sum[:])))
	c, _ := findCheck(rep, "file.sha256")
	if code != 0 || c.Status != statusOK {
		t.Errorf("exit %d, sha line %+v", code, c)
	}
}

func TestDoctorTextOutput(t *testing.T) {
	p := writeSpec(t, "qwen2-micro", nil, func(b *gguf.Builder) { b.Set("general.architecture", "gpt2") })
	code, out, _ := runCLI("doctor", "--model", p, "--no-smoke")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	want := `fail  model.architecture  InvalidModelType: architecture "gpt2" is not supported`
	if !strings.Contains(out, want) || !strings.Contains(out, "-- fix: this worker runs llama, phi3, qwen2") {
		t.Errorf("text output lacks %q and its fix:\n%s", want, out)
	}
	if !strings.Contains(out, "failed") {
		t.Errorf("no summary line:\n%s", out)
	}
}

func TestDoctorFixtures(t *testing.T) {
	for _, name := range []string{"qwen2-tiny-Q4_K_M.gguf", "phi3-small-Q4_K_M.gguf"} {
		t.Run(name, func(t *testing.T) {
			p := fixtures.Path(t, "models", name)
			code, rep := runDoctorJSON(t, "--model", p)
			if code != 0 {
				t.Errorf("exit %d: %+v", code, rep.Checks)
			}
			if c, _ := findCheck(rep, "smoke.generate"); c.Status != statusOK {
				t.Errorf("smoke: %+v", c)
			}
		})
	}
	t.Run("vocab-only", func(t *testing.T) {
		p := fixtures.VocabPath(t, "qwen2")
		code, rep := runDoctorJSON(t, "--model", p)
		c, _ := findCheck(rep, "model.config")
		if code != 1 || c.Status != statusFail || !strings.Contains(c.Fix, "vocab-only") {
			t.Errorf("exit %d, model.config %+v", code, c)
		}
		if c, _ := findCheck(rep, "tokenizer.metadata"); c.Status != statusOK {
			t.Errorf("tokenizer of a vocab-only file: %+v", c)
		}
	})
}

// fakeGPU installs a probe for the duration of a test.
func fakeGPU(t *testing.T, rep *gpuReport, err error) {
	t.Helper()
	old := gpuProbe
	gpuProbe = func(string) (*gpuReport, error) { return rep, err }
	t.Cleanup(func() { gpuProbe = old })
}

func TestDoctorGPU(t *testing.T) {
	p := writeSpec(t, "qwen2-micro", nil, nil)
	libs := []gpuLibrary{{Name: "libcuda.so.1", Path: "/usr/lib/x86_64-linux-gnu/libcuda.so.1"},
		{Name: "libnvrtc.so.12", Path: "/usr/local/cuda/lib64/libnvrtc.so.12"}}
	dev := func(free int64) *gpuReport {
		return &gpuReport{Libraries: libs, DriverVersion: 12040, NVRTCVersion: "12.4",
			Devices: []gpuDevice{{Index: 0, Name: "NVIDIA H100 80GB HBM3", Major: 9, Minor: 0, TotalBytes: 80 << 30, FreeBytes: free}}}
	}
	tests := []struct {
		name       string
		rep        *gpuReport
		err        error
		args       []string
		check      string
		status     string
		msg, fix   string
		exitStatus int
	}{
		{name: "fits", rep: dev(70 << 30), check: "gpu", status: statusOK, msg: `driver 12.4, NVRTC 12.4, loaded /usr/lib/x86_64-linux-gnu/libcuda.so.1, /usr/local/cuda/lib64/libnvrtc.so.12`},
		{name: "fits-memory", rep: dev(70 << 30), check: "model.memory", status: statusOK, msg: "fits, largest context that fits 512"},
		{name: "gpu-kv-f16", rep: dev(70 << 30), check: "model.memory", status: statusOK, msg: "F16 weight copies of its prompt path"},
		{name: "cpu-on-gpu", rep: dev(70 << 30), args: []string{"--device", "cpu"}, check: "smoke.backend", status: statusWarn, msg: "CPU backend is in use", fix: "--device cuda"},
		{name: "device-cpu-with-gpu", rep: dev(70 << 30), args: []string{"--device", "cpu"}, check: "gpu", status: statusWarn, msg: `--device cpu on a machine with GPU 0 "NVIDIA H100 80GB HBM3"`, fix: "drop --device cpu"},
		{name: "too-small", rep: dev(5100 << 10), check: "model.memory", status: statusFail, msg: "the largest context that fits is", fix: "run with --ctx", exitStatus: 1},
		{name: "weights-dont-fit", rep: dev(50 << 10), check: "model.memory", status: statusFail, msg: "weights and workspace alone do not fit", fix: "smaller quantization", exitStatus: 1},
		{name: "no-driver", err: errors.New("libcuda.so.1: tried /usr/lib/x86_64-linux-gnu/libcuda.so.1, /usr/local/cuda/lib64/libcuda.so.1: not found"),
			check: "gpu", status: statusWarn, msg: "no NVIDIA GPU/driver found (libcuda.so.1: tried", fix: "NVIDIA container toolkit"},
		{name: "no-driver-demanded", err: errors.New("libcuda.so.1: not found"), args: []string{"--device", "cuda"},
			check: "gpu", status: statusFail, msg: "no NVIDIA GPU/driver found", fix: "--device cuda was demanded", exitStatus: 1},
		{name: "no-such-index", rep: dev(70 << 30), args: []string{"--device", "cuda:3"}, check: "gpu", status: statusFail, msg: "there is no GPU 3", fix: "CUDA_VISIBLE_DEVICES", exitStatus: 1},
		{name: "missing-nvrtc", rep: &gpuReport{DriverVersion: 12040, Libraries: append(libs[:1:1], gpuLibrary{Name: "libnvrtc.so", Path: "libnvrtc.so", Err: "not found"}),
			Devices: dev(1 << 30).Devices}, err: errors.New("cuda: library not found: none of libnvrtc.so could be loaded from the loader's default paths"),
			check: "gpu", status: statusWarn, msg: "but cuda: library not found: none of libnvrtc.so", fix: "libnvrtc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fakeGPU(t, tc.rep, tc.err)
			args := append([]string{"--model", p}, tc.args...)
			if tc.check != "smoke.backend" {
				args = append(args, "--no-smoke")
			}
			code, rep := runDoctorJSON(t, args...)
			if code != tc.exitStatus {
				t.Errorf("exit %d, want %d: %+v", code, tc.exitStatus, rep.Checks)
			}
			c, ok := findCheck(rep, tc.check)
			if !ok {
				t.Fatalf("no %s check in %+v", tc.check, rep.Checks)
			}
			if c.Status != tc.status || !strings.Contains(c.Message, tc.msg) || !strings.Contains(c.Fix, tc.fix) {
				t.Errorf("%s: got %s %q fix %q; want %s containing %q, fix containing %q", tc.check, c.Status, c.Message, c.Fix, tc.status, tc.msg, tc.fix)
			}
		})
	}
}

func TestDoctorNoModel(t *testing.T) {
	fakeGPU(t, nil, errors.New("libcuda.so.1: not found"))
	code, rep := runDoctorJSON(t)
	if code != 0 || len(rep.Checks) != 1 || rep.Checks[0].Name != "gpu" {
		t.Errorf("exit %d, checks %+v; want only the gpu check", code, rep.Checks)
	}
}

// TestDoctorCPUKVBudget: on the CPU, model.memory reports the KV memory
// budget serve would start with (WORKER_KV_MEMORY, else
// WORKER_CPU_KV_BUDGET, else the default) in blocks of 16 positions
// against the KV caches of --ctx × --parallel: requests wait for blocks
// beyond it, so a small budget warns, and one without a block fails.
func TestDoctorCPUKVBudget(t *testing.T) {
	p := writeSpec(t, "qwen2-micro", nil, nil) // 512 positions of 512 bytes: 32 blocks of 8 KiB a sequence
	cases := []struct {
		name, budget string
		args         []string
		status       string
		msg, fix     string
		exitStatus   int
	}{
		{"fits", "1MiB", []string{"--parallel", "1"}, statusOK, "KV memory budget of 1.0 MiB (set by WORKER_CPU_KV_BUDGET): 128 blocks of 16 positions (8.0 KiB a block), room for 512 positions x 1 sequence(s)", "", 0},
		{"two sequences fit", "1MiB", []string{"--parallel", "2"}, statusOK, "room for 512 positions x 2 sequence(s)", "", 0},
		{"exceeds", "200KiB", []string{"--parallel", "1"}, statusWarn, "25 blocks of 16 positions (8.0 KiB a block), fewer than the 32 that 512 positions x 1 sequence(s) take",
			"--ctx 400", 0},
		{"exceeds, as a sentence", "200KiB", []string{"--parallel", "1"}, statusWarn, "requests wait for blocks while others hold them", "WORKER_KV_MEMORY", 0},
		{"exceeds with parallel", "300KiB", []string{"--parallel", "2"}, statusWarn, "a prompt longer than 592 positions is refused", "--ctx 288", 0},
		{"serve's default of 4 sequences", "900KiB", nil, statusWarn, "fewer than the 128 that 512 positions x 4 sequence(s) take", "--ctx 448", 0},
		{"not one block", "4KiB", []string{"--parallel", "1"}, statusFail, "not one block fits", "raise --kv-memory", 1},
		{"no budget", "none", []string{"--parallel", "1"}, statusOK, "no KV memory budget", "", 0},
		{"bad budget", "lots", []string{"--parallel", "1"}, statusFail, `WORKER_CPU_KV_BUDGET="lots"`, "WORKER_KV_MEMORY", 1},
		{"--kv-memory wins", "100KiB", []string{"--parallel", "1", "--kv-memory", "1MiB"}, statusOK, "1.0 MiB (set by --kv-memory): 128 blocks", "", 0},
		{"a bad --kv-memory", "1MiB", []string{"--parallel", "1", "--kv-memory", "lots"}, statusFail, `--kv-memory "lots"`, "16GiB", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fakeGPU(t, nil, errors.New("libcuda.so.1: not found"))
			t.Setenv("WORKER_CPU_KV_BUDGET", tc.budget)
			code, rep := runDoctorJSON(t, append([]string{"--model", p, "--no-smoke", "--device", "cpu"}, tc.args...)...)
			c, ok := findCheck(rep, "model.memory")
			if !ok {
				t.Fatalf("no model.memory check in %+v", rep.Checks)
			}
			if code != tc.exitStatus || c.Status != tc.status || !strings.Contains(c.Message, tc.msg) || !strings.Contains(c.Fix, tc.fix) {
				t.Errorf("exit %d, model.memory %s %q fix %q; want exit %d, %s containing %q, fix containing %q",
					code, c.Status, c.Message, c.Fix, tc.exitStatus, tc.status, tc.msg, tc.fix)
			}
		})
	}
}

// TestDoctorCPUEstimateFromBackend: on the CPU, model.memory's total is the
// CPU backend's own estimate (cpu.EstimateMemory) for --ctx and --parallel.
func TestDoctorCPUEstimateFromBackend(t *testing.T) {
	p := writeSpec(t, "qwen2-micro", nil, nil)
	m, err := model.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	fakeGPU(t, nil, errors.New("libcuda.so.1: not found"))
	t.Setenv("WORKER_CPU_KV_BUDGET", "none")
	for _, parallel := range []int{1, 3} {
		_, rep := runDoctorJSON(t, "--model", p, "--no-smoke", "--device", "cpu", "--ctx", "256", "--parallel", fmt.Sprint(parallel))
		c, ok := findCheck(rep, "model.memory")
		if !ok {
			t.Fatalf("no model.memory check in %+v", rep.Checks)
		}
		mem := cpu.EstimateMemory(&m.Config, m.Weights, 256, parallel, workspaceBatch)
		want := "needs about " + humanBytes(mem.Weights+mem.KVCache+mem.Activations+mem.Workspace)
		if !strings.Contains(c.Message, want) || !strings.Contains(c.Message, "CPU backend's scratch") {
			t.Errorf("--parallel %d: model.memory %q, want %q (cpu.EstimateMemory)", parallel, c.Message, want)
		}
	}
}
