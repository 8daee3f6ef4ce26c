package server

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"worker-orcd/tokenizer"
)

// TestOpenAINpmClient drives the server with the official openai npm
// package (tools/openai-client-test). It needs node and the package
// installed there (npm ci in that directory); otherwise it skips.
func TestOpenAINpmClient(t *testing.T) {
	dir := filepath.Join("..", "tools", "openai-client-test")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: skipping the openai npm client test")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err != nil {
		t.Skipf("the openai npm package is not installed: run `npm ci` in %s to enable this test", dir)
	}
	ts := newTestServer(t, opts{parallel: 2, apiKey: "npm-key", model: micro4k(t)}) // room for tool instructions
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "test.mjs")
	cmd.Dir = dir
	ids, err := ts.m.Tokenizer().Encode("a", tokenizer.EncodeOptions{})
	if err != nil || len(ids) != 1 {
		t.Fatalf(`"a" is not one token: %v %v`, ids, err)
	}
	cmd.Env = append(os.Environ(), "WORKER_URL="+ts.URL, "WORKER_API_KEY=npm-key", "WORKER_TOKEN_A="+strconv.Itoa(int(ids[0])))
	out, err := cmd.CombinedOutput()
	t.Logf("node test.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("the openai npm client checks failed: %v", err)
	}
}
