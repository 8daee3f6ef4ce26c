package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	fakeGPU(t, &gpuReport{DriverVersion: 12040, NVRTCVersion: "12.4",
		Libraries: []gpuLibrary{{Name: "libcuda.so.1", Path: "/usr/lib/libcuda.so.1"}, {Name: "libnvrtc.so.12", Err: "not found"}},
		Devices:   []gpuDevice{{Index: 0, Name: "Fake GPU", Major: 9, Minor: 0, TotalBytes: 80 << 30}}}, nil)
	code, out, errOut := runCLI("--version")
	if code != 0 || !strings.HasPrefix(out, "worker-orcd "+version+"\n") || !strings.Contains(out, "module worker-orcd") ||
		!strings.Contains(out, "revision ") || !strings.Contains(out, runtime.Version()) || strings.Contains(out, "gpu") {
		t.Fatalf("--version: exit %d:\n%s%s", code, out, errOut)
	}
	for _, args := range [][]string{{"--version", "-v"}, {"-v", "--version"}, {"--version", "--verbose"}} {
		code, out, _ := runCLI(args...)
		if code != 0 || !strings.Contains(out, "gpu library libcuda.so.1: /usr/lib/libcuda.so.1") ||
			!strings.Contains(out, "gpu library libnvrtc.so.12: not loaded: not found") || !strings.Contains(out, "cuda driver 12.4") ||
			!strings.Contains(out, "gpu 0: Fake GPU (sm_90, 80.0 GiB)") {
			t.Fatalf("%v:\n%s", args, out)
		}
	}
}

// TestVerboseEverywhere: -v is the same flag at the top level and in every
// subcommand (it used to be --version at the top and --verbose below).
func TestVerboseEverywhere(t *testing.T) {
	p := writeSpec(t, "qwen2-micro", nil, nil)
	for _, args := range [][]string{
		{"-v", "inspect", p}, {"inspect", "-v", p}, {"inspect", "--model", p, "-v"},
		{"tokenize", "-v", "--model", p, "hi"},
		{"-v", "generate", "--model", p, "--prompt", "hi", "-n", "2", "--device", "cpu"},
	} {
		if code, _, errOut := runCLI(args...); code != 0 {
			t.Errorf("%v: exit %d: %s", args, code, errOut)
		}
	}
	// generate -v: the seed and a timing line on stderr.
	_, _, errOut := runCLI("generate", "-v", "--model", p, "--prompt", "hi", "-n", "3", "--device", "cpu", "--seed", "77")
	if !strings.Contains(errOut, "seed 77;") || !strings.Contains(errOut, "tokens/s") {
		t.Fatalf("generate -v stderr:\n%s", errOut)
	}
	if _, _, errOut := runCLI("generate", "--model", p, "--prompt", "hi", "-n", "3", "--device", "cpu"); strings.Contains(errOut, "tokens/s") {
		t.Fatalf("generate without -v printed timings:\n%s", errOut)
	}
	if code, _, errOut := runCLI("bogus"); code == 0 || !strings.Contains(errOut, `unknown command "bogus"`) {
		t.Fatalf("unknown command: exit %d: %s", code, errOut)
	}
}

func TestGenerateStdinPrompt(t *testing.T) {
	p := writeSpec(t, "qwen2-micro", nil, nil)
	pf := filepath.Join(t.TempDir(), "prompt.txt")
	os.WriteFile(pf, []byte("Once upon"), 0o644)
	var a, b strings.Builder
	if code := runIO([]string{"generate", "--model", p, "-n", "4", "--device", "cpu", "--seed", "1", "--prompt-file", pf}, strings.NewReader(""), &a, &b); code != 0 {
		t.Fatalf("prompt file: %s", b.String())
	}
	var c, d strings.Builder
	if code := runIO([]string{"generate", "--model", p, "-n", "4", "--device", "cpu", "--seed", "1"}, strings.NewReader("Once upon"), &c, &d); code != 0 {
		t.Fatalf("stdin prompt: exit %d: %s", code, d.String())
	}
	if c.String() != a.String() {
		t.Fatalf("stdin prompt gave %q, --prompt-file gave %q", c.String(), a.String())
	}
	if code, _, errOut := runCLI("generate", "--model", p, "--device", "cpu"); code == 0 || !strings.Contains(errOut, "the prompt is empty") {
		t.Fatalf("empty stdin: exit %d: %s", code, errOut)
	}
}

// TestFileErrorsAgree: a file that is not GGUF gives the same reason
// (gguf.Sniff's) from every command that opens a model and from doctor, and
// a bad magic never says "truncated".
func TestFileErrorsAgree(t *testing.T) {
	dir := t.TempDir()
	files := map[string]struct{ content, reason string }{
		"lfs.gguf":  {"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n", "Git LFS pointer"},
		"html.gguf": {"<!DOCTYPE html><html><body>Sign in</body></html>", "HTML page"},
		"zero.gguf": {strings.Repeat("\x00", 4096), "zero bytes"},
		"st.gguf":   {"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":{\"dtype\":1}}" + strings.Repeat(" ", 64), "safetensors"},
	}
	for name, f := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(f.content), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"inspect", p},
			{"generate", "--model", p, "--prompt", "x", "--device", "cpu"},
			{"tokenize", "--model", p, "x"},
			{"score", "--model", p, "--ids", "1,2", "--device", "cpu"},
			{"chat", "--model", p, "--device", "cpu"},
			{"doctor", "--model", p, "--device", "cpu", "--no-smoke"},
		} {
			code, out, errOut := runCLI(args...)
			all := out + errOut
			if code == 0 || !strings.Contains(all, f.reason) || strings.Contains(all, "truncated") {
				t.Errorf("%s %s: exit %d, output %q; want the reason %q and no \"truncated\"", args[0], name, code, all, f.reason)
			}
		}
	}
}
