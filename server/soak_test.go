package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSoakBrokenClients runs well-behaved and broken clients side by side
// for a few seconds: streams read to their end, non-streaming answers,
// clients that leave while queued, bodies promised and never sent, silent
// connections, readers that never read, jobs cancelled through /cancel.
// Afterwards every place, slot and connection must be free and a normal
// request answered at once.
func TestSoakBrokenClients(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	const run = 6 * time.Second
	ts := newTestServer(t, opts{parallel: 2, queue: 16, sndBuf: 4096, cfg: func(c *Config) {
		c.ReadHeaderTimeout = 300 * time.Millisecond
		c.BodyReadTimeout = 300 * time.Millisecond
		c.WriteTimeout = 300 * time.Millisecond
		c.MaxConnections = 64
	}})
	addr := strings.TrimPrefix(ts.URL, "http://")
	hc := &http.Client{Timeout: 30 * time.Second}
	postJSON := func(ctx context.Context, path, body string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		return hc.Do(req)
	}
	raw := func(request string, hold time.Duration, read bool) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return // the connection bound may make us wait: fine
		}
		defer c.Close()
		io.WriteString(c, request)
		if read {
			c.SetReadDeadline(time.Now().Add(hold))
			io.Copy(io.Discard, c)
			return
		}
		time.Sleep(hold)
	}
	var served, rejected, failures atomic.Int64
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 5 {
			t.Errorf(format, args...)
		}
	}
	kinds := []func(i int){
		func(i int) { // a stream read to its end
			resp, err := postJSON(context.Background(), "/execute", `{"prompt":"hello","max_tokens":6,"temperature":0}`)
			if err != nil {
				fail("stream: %v", err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusServiceUnavailable:
				rejected.Add(1)
			case resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "event: end"):
				fail("stream: %d %.200s", resp.StatusCode, b)
			default:
				served.Add(1)
			}
		},
		func(i int) { // a non-streaming chat
			resp, err := postJSON(context.Background(), "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":4}`)
			if err != nil {
				fail("chat: %v", err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case http.StatusOK:
				served.Add(1)
			case http.StatusServiceUnavailable:
				rejected.Add(1)
			default:
				fail("chat: %d %.200s", resp.StatusCode, b)
			}
		},
		func(i int) { // leaves once started (often while queued)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			resp, err := postJSON(ctx, "/execute", `{"prompt":"x","max_tokens":50,"ignore_eos":true}`)
			if err != nil {
				return
			}
			buf := make([]byte, 64)
			resp.Body.Read(buf)
			resp.Body.Close()
		},
		func(i int) { // promises a body, never sends it
			raw("POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{", 2*time.Second, true)
		},
		func(i int) { // connects and says nothing
			raw("", time.Second, false)
		},
		func(i int) { // asks for a large answer and never reads it
			body := `{"messages":[{"role":"user","content":"hi"}],"max_tokens":200,"ignore_eos":true,"logprobs":true,"top_logprobs":20}`
			raw(fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body), time.Second, false)
		},
		func(i int) { // cancels its own job
			id := fmt.Sprintf("soak-%d", i)
			resp, err := postJSON(context.Background(), "/execute", fmt.Sprintf(`{"job_id":%q,"prompt":"x","max_tokens":100,"ignore_eos":true}`, id))
			if err != nil {
				fail("cancelled stream: %v", err)
				return
			}
			defer resp.Body.Close()
			if r, err := postJSON(context.Background(), "/cancel", fmt.Sprintf(`{"job_id":%q}`, id)); err == nil {
				r.Body.Close()
			}
			io.Copy(io.Discard, resp.Body)
		},
	}
	deadline := time.Now().Add(run)
	var wg sync.WaitGroup
	for w := range 3 * len(kinds) {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				kinds[w%len(kinds)](w*100000 + i)
			}
		})
	}
	wg.Wait()
	hc.CloseIdleConnections()
	client.CloseIdleConnections()
	t.Logf("%d answered, %d turned away (503) while broken clients came and went", served.Load(), rejected.Load())
	if served.Load() == 0 {
		t.Fatal("no well-behaved request was served during the soak")
	}

	// Everything is free.
	if _, ok := waitFor(5*time.Second, func() bool {
		h := ts.health(t)
		return ts.InFlight() == 0 && h.Slots.Active == 0 && h.Queue.Depth == 0
	}); !ok {
		h := ts.health(t)
		t.Fatalf("after the soak: %d in flight, %d slots active, %d queued; want all 0", ts.InFlight(), h.Slots.Active, h.Queue.Depth)
	}
	client.CloseIdleConnections()
	if _, ok := waitFor(5*time.Second, func() bool {
		defer client.CloseIdleConnections()
		return ts.metric(t, "worker_orcd_connections_open") <= 1 // the /metrics request itself
	}); !ok {
		t.Fatalf("after the soak: %v connections still open", ts.metric(t, "worker_orcd_connections_open"))
	}
	start := time.Now()
	if r := ts.execute(t, `{"prompt":"x","max_tokens":2}`); r.end == nil {
		t.Fatalf("a request after the soak: %+v", r.errEv)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("a request after the soak took %v", took)
	}
}
