package main

import (
	"fmt"
	"os"
	"testing"
)

// TestMain keeps every test of this package off the network: model
// references resolve against an empty, temporary Hugging Face cache, offline
// (tests that pull set HF_HUB_OFFLINE=0 and HF_ENDPOINT to a local fake hub),
// and no token file of the user is read.
func TestMain(m *testing.M) {
	if os.Getenv("WORKER_ORCD_SERVE_ARGS") != "" {
		// The serve helper process (serve_test.go) runs in the test's
		// environment, already set here, plus what the test added.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "worker-orcd-test-hf-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Setenv("HF_HOME", dir)
	os.Setenv("HF_HUB_CACHE", dir+"/hub")
	os.Setenv("HF_HUB_OFFLINE", "1")
	os.Setenv("HF_ENDPOINT", "http://127.0.0.1:1") // nothing listens there
	os.Unsetenv("HF_TOKEN")
	os.Unsetenv("HF_TOKEN_PATH")
	os.Setenv("WORKER_CACHE_DIR", dir+"/worker-orcd")
	for _, k := range []string{"WORKER_MODEL", "WORKER_PORT", "WORKER_HOST", "WORKER_PARALLEL", "WORKER_VERBOSE"} {
		os.Unsetenv(k)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
