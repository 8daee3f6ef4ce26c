package server

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"worker-orcd/backend/cuda"
	"worker-orcd/engine"
	"worker-orcd/memwatch"
)

// TestHealthUnhealthyOnMemoryGrowth: a memory self-check that sees usage
// growing without bound turns /health into 503 "unhealthy" with the reason,
// and back to 200 once usage returns.
func TestHealthUnhealthyOnMemoryGrowth(t *testing.T) {
	ts := newTestServer(t, opts{})
	const mib = 1 << 20
	w := memwatch.New(func() int64 { return 0 }, memwatch.Config{Name: "rss", WarmUp: 2, Threshold: 100 * mib, Rising: 3,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ts.SetMemWatch(w)
	health := func() (int, map[string]any) {
		resp := get(t, ts.URL+"/health")
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	for _, v := range []int64{1000, 1000, 1100, 1300, 1500, 1700} {
		w.Observe(v * mib)
	}
	code, body := health()
	if code != http.StatusServiceUnavailable || body["status"] != "unhealthy" || body["error"] == "" {
		t.Fatalf("growing memory: %d %v", code, body)
	}
	if mc, ok := body["memory_check"].(map[string]any); !ok || mc["healthy"] != false {
		t.Errorf("memory_check = %v", body["memory_check"])
	}
	w.Observe(1000 * mib)
	if code, body = health(); code != http.StatusOK || body["status"] != "ready" {
		t.Errorf("after recovery: %d %v", code, body)
	}
}

// TestErrorCodesForDeviceFailures: an allocation failure answers 507
// VRAM_OOM (retriable), a failed CUDA call 500 CUDA_ERROR.
func TestErrorCodesForDeviceFailures(t *testing.T) {
	oom := fmt.Errorf("%w: KV cache: %w", engine.ErrForward, &cuda.AllocationError{Bytes: 1 << 30, Free: 1 << 20, Total: 80 << 30, Purpose: "kv_cache"})
	if ae := engineError(oom, nil, "prompt"); ae.Status != 507 || ae.Code != CodeVRAMOOM || !ae.Retriable ||
		!strings.Contains(ae.Message, "AllocationFailed: 1073741824 bytes (free 1048576 of 85899345920 on GPU 0)") {
		t.Errorf("oom: %+v", ae)
	}
	ce := fmt.Errorf("%w: %w", engine.ErrForward, &cuda.Error{API: "cuLaunchKernel(mm_q4_k)", Code: 719, Name: "CUDA_ERROR_LAUNCH_FAILED"})
	if ae := engineError(ce, nil, "prompt"); ae.Status != 500 || ae.Code != CodeCUDAError || !strings.Contains(ae.Message, "CUDA_ERROR_LAUNCH_FAILED") {
		t.Errorf("cuda error: %+v", ae)
	}
}
