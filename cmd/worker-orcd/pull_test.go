package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"worker-orcd/gguf"
	"worker-orcd/hub/hubtest"
	"worker-orcd/internal/testmodel"
)

// tinyModel writes a small synthetic model and returns its bytes.
func tinyModel(t *testing.T) []byte {
	t.Helper()
	s := testmodel.MustPreset("qwen2-micro")
	s.Type, s.Seed = testmodel.Q8_0, 5
	p := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := s.Write(p); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// splitModel cuts a GGUF file in two parts the way llama.cpp's gguf-split
// does: the first has the metadata, each has split.no, split.count and
// split.tensors.count, and the tensors are shared out in order.
func splitModel(t *testing.T, whole []byte) [][]byte {
	t.Helper()
	f, err := gguf.Parse(whole)
	if err != nil {
		t.Fatal(err)
	}
	half := len(f.Tensors) / 2
	var parts [][]byte
	for i, ts := range [][]gguf.TensorInfo{f.Tensors[:half], f.Tensors[half:]} {
		b := gguf.NewBuilder()
		if i == 0 {
			for _, kv := range f.KV {
				b.Set(kv.Key, kv.Value)
			}
		}
		b.Set("split.no", uint16(i))
		b.Set("split.count", uint16(2))
		b.Set("split.tensors.count", int32(len(f.Tensors)))
		for j := range ts {
			if err := b.AddTensor(ts[j].Name, ts[j].Type, ts[j].Dims, f.TensorData(&ts[j])); err != nil {
				t.Fatal(err)
			}
		}
		p, err := b.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	return parts
}

// onlineHub starts a fake hub with the tiny model (one file and split in
// two) and points the hub client of the commands at it, with an empty cache.
func onlineHub(t *testing.T) (*hubtest.Hub, []byte) {
	h := hubtest.New(t)
	whole := tinyModel(t)
	parts := splitModel(t, whole)
	h.AddRepo("org/tiny-GGUF", &hubtest.Repo{Files: map[string][]byte{
		"tiny-Q8_0.gguf":               whole,
		"tiny-F16-00001-of-00002.gguf": parts[0],
		"tiny-F16-00002-of-00002.gguf": parts[1],
		"README.md":                    []byte("# tiny"),
	}})
	cache := t.TempDir()
	t.Setenv("HF_HUB_CACHE", cache)
	t.Setenv("HF_ENDPOINT", h.Hub.URL)
	t.Setenv("HF_HUB_OFFLINE", "0")
	t.Setenv("WORKER_CACHE_DIR", filepath.Join(cache, "worker-orcd"))
	return h, whole
}

func TestPullListRmAndModelRefs(t *testing.T) {
	h, whole := onlineHub(t)
	old := progressEvery
	progressEvery = 0 // a progress line for every block
	t.Cleanup(func() { progressEvery = old })

	code, out, errOut := runCLI("pull", "hf.co/org/tiny-GGUF:Q8_0")
	if code != 0 {
		t.Fatalf("pull: exit %d: %s", code, errOut)
	}
	path := strings.TrimSpace(out)
	if b, _ := os.ReadFile(path); len(b) != len(whole) || !strings.Contains(path, filepath.Join("models--org--tiny-GGUF", "snapshots")) {
		t.Fatalf("pull printed %q", out)
	}
	// Not a terminal: log lines with bytes, percent and rate, then done.
	if !strings.Contains(errOut, "tiny-Q8_0.gguf: downloading") || !strings.Contains(errOut, "(100%)") || !strings.Contains(errOut, "/s") || !strings.Contains(errOut, ", done") {
		t.Fatalf("pull progress lines:\n%s", errOut)
	}
	if code, _, errOut := runCLI("pull", "hf.co/org/tiny-GGUF:Q8_0"); code != 0 || !strings.Contains(errOut, "in the cache") {
		t.Fatalf("second pull: exit %d: %s", code, errOut)
	}

	// --model REF on the commands that take a model: the cached file, and
	// a split model pulled on first use and joined.
	gen := func(ref string, extra ...string) string {
		t.Helper()
		code, out, errOut := runCLI(append([]string{"generate", "--model", ref, "--prompt", "Hello", "-n", "6", "--temperature", "0", "--ignore-eos", "--json", "--device", "cpu"}, extra...)...)
		if code != 0 {
			t.Fatalf("generate --model %s: exit %d: %s", ref, code, errOut)
		}
		var doc generateJSON
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatal(err)
		}
		ids, _ := json.Marshal(doc.Tokens)
		return string(ids)
	}
	want := gen(path)
	if got := gen("hf.co/org/tiny-GGUF:Q8_0"); got != want {
		t.Fatalf("generate by reference differs from the file")
	}
	if got := gen("hf.co/org/tiny-GGUF:f16"); got != want {
		t.Fatalf("the split model, joined, generates differently")
	}
	h.Hub.Close() // from here on the hub is gone: the cache serves
	if got := gen("hf.co/org/tiny-GGUF/tiny-Q8_0.gguf", "--offline"); got != want {
		t.Fatalf("offline generate differs")
	}
	for _, args := range [][]string{
		{"inspect", "--model", "hf.co/org/tiny-GGUF:Q8_0", "--json"},
		{"tokenize", "--model", "hf.co/org/tiny-GGUF:Q8_0", "Hello"},
		{"score", "--model", "hf.co/org/tiny-GGUF:Q8_0", "--ids", "1,2,3", "--device", "cpu"},
		{"doctor", "--model", "hf.co/org/tiny-GGUF:Q8_0", "--device", "cpu", "--no-smoke"},
	} {
		if code, out, errOut := runCLI(args...); code != 0 {
			t.Errorf("%v: exit %d: %s%s", args, code, out, errOut)
		}
	}
	if code, _, errOut := runCLI("generate", "--model", "hf.co/org/tiny-GGUF:Q4_0", "--prompt", "x", "--offline"); code == 0 || !strings.Contains(errOut, "OfflineNotCached") {
		t.Fatalf("offline, not cached: exit %d: %s", code, errOut)
	}

	// list: both models, with ref, type, size and path.
	code, out, _ = runCLI("list", "--json")
	var rows []listEntry
	if err := json.Unmarshal([]byte(out), &rows); code != 0 || err != nil || len(rows) != 2 {
		t.Fatalf("list --json: exit %d, %v: %s", code, err, out)
	}
	if rows[0].Ref != "hf.co/org/tiny-GGUF/tiny-F16-00001-of-00002.gguf" || len(rows[0].Parts) != 2 ||
		rows[1].Ref != "hf.co/org/tiny-GGUF/tiny-Q8_0.gguf" || rows[1].Type != "Q8_0" || rows[1].Size != int64(len(whole)) || rows[1].Path != path {
		t.Fatalf("list --json: %+v", rows)
	}
	code, out, _ = runCLI("list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "REF TYPE SIZE PATH" ||
		strings.Join(strings.Fields(lines[2]), " ") != "hf.co/org/tiny-GGUF/tiny-Q8_0.gguf Q8_0 108.0 KiB "+path ||
		!strings.HasSuffix(lines[1], "(+1 part)") {
		t.Fatalf("list:\n%s", out)
	}
	joined := filepath.Join(os.Getenv("WORKER_CACHE_DIR"), "joined", "org--tiny-GGUF")
	if js, _ := filepath.Glob(filepath.Join(joined, "*", "tiny-F16.gguf")); len(js) != 1 {
		t.Fatalf("joined copy of the split model: %v", js)
	}
	// rm by a ref that list printed, and by quantization.
	for _, ref := range []string{rows[1].Ref, "hf.co/org/tiny-GGUF:F16"} {
		if code, out, errOut := runCLI("rm", ref); code != 0 || !strings.Contains(out, "removed") {
			t.Fatalf("rm %s: exit %d: %s%s", ref, code, out, errOut)
		}
	}
	if code, out, _ := runCLI("list"); code != 0 || !strings.Contains(out, "no models") {
		t.Fatalf("list after rm:\n%s", out)
	}
	if js, _ := filepath.Glob(filepath.Join(joined, "*", "tiny-F16.gguf")); len(js) != 0 {
		t.Fatalf("rm left the joined copy: %v", js)
	}
	if code, _, errOut := runCLI("rm", "hf.co/org/tiny-GGUF:Q8_0"); code == 0 || !strings.Contains(errOut, "ModelNotFound") {
		t.Fatalf("rm twice: exit %d: %s", code, errOut)
	}
}

func TestPullErrors(t *testing.T) {
	h, _ := onlineHub(t)
	h.AddRepo("corp/gated", &hubtest.Repo{Gated: true, Files: map[string][]byte{"g-Q4_K_M.gguf": tinyModel(t)}})
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"pull", "hf.co/corp/gated"}, "Unauthorized: hf.co/corp/gated"},
		{[]string{"pull", "hf.co/org/none:Q8_0"}, "ModelNotFound"},
		{[]string{"pull", "hf.co/org/tiny-GGUF:Q2_K"}, "no GGUF file of quantization Q2_K"},
		{[]string{"pull", "hf.co/org"}, "InvalidModelRef"},
		{[]string{"pull", "--offline", "hf.co/org/tiny-GGUF:Q8_0"}, "OfflineNotCached"},
		{[]string{"generate", "--model", "hf.co/corp/gated", "--prompt", "x"}, "HF_TOKEN"},
	} {
		if code, _, errOut := runCLI(c.args...); code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %q", c.args, code, errOut, c.want)
		}
	}
	t.Setenv("HF_TOKEN", h.Token)
	if code, _, errOut := runCLI("pull", "hf.co/corp/gated"); code != 0 {
		t.Errorf("gated with HF_TOKEN: exit %d: %s", code, errOut)
	}
}

// TestServeModelRef: serve pulls a reference while /health says "loading",
// then serves it; WORKER_MODEL gives the same from the environment.
func TestServeModelRef(t *testing.T) {
	onlineHub(t)
	t.Setenv("WORKER_MODEL", "hf.co/org/tiny-GGUF:Q8_0")
	_, url, logs := startServe(t, "--port", "0", "--device", "cpu", "--parallel", "1")
	resp, err := http.Get(url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"ready"`) {
		t.Fatalf("/health: %d %s", resp.StatusCode, b)
	}
	if !strings.Contains(logs.String(), "tiny-Q8_0.gguf: downloading") {
		t.Fatalf("serve logs lack the pull:\n%s", logs)
	}
}

// TestPullProgressBar: on a terminal, pull draws a progress bar.
func TestPullProgressBar(t *testing.T) {
	onlineHub(t)
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("no pseudo-terminal on this machine: %v", err)
	}
	defer ptmx.Close()
	var screen bytes.Buffer
	done := make(chan struct{})
	go func() {
		io.Copy(&screen, ptmx)
		close(done)
	}()
	var out bytes.Buffer
	code := runIO([]string{"pull", "hf.co/org/tiny-GGUF:Q8_0"}, strings.NewReader(""), &out, tty)
	tty.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	s := screen.String()
	if code != 0 || !strings.Contains(s, "100%") || !strings.Contains(s, "tiny-Q8_0.gguf") || !strings.Contains(s, "111/111 kB") || !strings.Contains(s, "|██████████") {
		t.Fatalf("exit %d; terminal:\n%q", code, s)
	}
}
