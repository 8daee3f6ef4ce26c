package server

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestOllamaNpmClient drives the server with the official ollama npm
// package (tools/ollama-client-test). It needs node and the package
// installed there (npm ci in that directory); otherwise it skips.
func TestOllamaNpmClient(t *testing.T) {
	dir := filepath.Join("..", "tools", "ollama-client-test")
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: skipping the ollama npm client test")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ollama", "package.json")); err != nil {
		t.Skipf("the ollama npm package is not installed: run `npm ci` in %s to enable this test", dir)
	}
	ts := newTestServer(t, opts{parallel: 2, apiKey: "ollama-key"})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WORKER_URL="+ts.URL, "WORKER_API_KEY=ollama-key")
	out, err := cmd.CombinedOutput()
	t.Logf("node test.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("the ollama npm client checks failed: %v", err)
	}
}
