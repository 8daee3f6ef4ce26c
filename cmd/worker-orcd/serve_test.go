package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"worker-orcd/internal/testmodel"
)

// TestServeHelperProcess is not a test: TestServeSIGTERM runs the test
// binary again with WORKER_ORCD_SERVE_ARGS set, and this function turns that
// process into `worker-orcd serve`.
func TestServeHelperProcess(t *testing.T) {
	raw := os.Getenv("WORKER_ORCD_SERVE_ARGS")
	if raw == "" {
		t.Skip("helper process for TestServeSIGTERM")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		os.Exit(3)
	}
	os.Exit(run(args, os.Stdout, os.Stderr))
}

func serveModel(t *testing.T) string {
	s := testmodel.MustPreset("qwen2-micro")
	s.Embd, s.FF, s.Layers, s.Context = 256, 768, 4, 4096
	s.Type, s.Seed = testmodel.Q8_0, 9
	p := filepath.Join(t.TempDir(), "serve-test.gguf")
	if err := s.Write(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// serveLogs collects a child's stderr while it runs: safe to read at any
// time; done is closed once the child's stderr reached its end (read all of
// it before cmd.Wait, which closes the pipe and may drop unread lines).
type serveLogs struct {
	mu   sync.Mutex
	b    bytes.Buffer
	done chan struct{}
}

func (l *serveLogs) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(line + "\n")
}

func (l *serveLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServe runs `worker-orcd serve` in a child process and returns it with
// the address it listens on once /health says ready.
func startServe(t *testing.T, args ...string) (*exec.Cmd, string, *serveLogs) {
	t.Helper()
	raw, _ := json.Marshal(append([]string{"serve"}, args...))
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeHelperProcess$")
	cmd.Env = append(os.Environ(), "WORKER_ORCD_SERVE_ARGS="+string(raw))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	logs := &serveLogs{done: make(chan struct{})}
	addrCh := make(chan string, 1)
	go func() {
		defer close(logs.done)
		re := regexp.MustCompile(`msg=listening .*addr=([0-9.:]+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logs.add(line)
			if m := re.FindStringSubmatch(line); m != nil {
				addrCh <- m[1]
			}
		}
		close(addrCh)
	}()
	var addr string
	select {
	case a, ok := <-addrCh:
		if !ok {
			<-logs.done
			cmd.Wait()
			t.Fatalf("serve exited before listening:\n%s", logs)
		}
		addr = a
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not listen within 30 s:\n%s", logs)
	}
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/health")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
			if resp.StatusCode != 503 || !strings.Contains(string(b), `"loading"`) {
				t.Fatalf("/health while starting: %d %s", resp.StatusCode, b)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 30 s:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cmd, url, logs
}

// TestServeSIGTERM: SIGTERM during a stream ends the stream with exactly one
// terminal event and the process exits 0.
func TestServeSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	cmd, url, logs := startServe(t, "--model", serveModel(t), "--port", "0", "--device", "cpu", "--threads", "1",
		"--parallel", "2", "--shutdown-timeout", "300ms", "--api-key", "k", "--log-format", "text")

	// The key is enforced by the real command too.
	resp, err := http.Post(url+"/execute", "application/json", strings.NewReader(`{"prompt":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no key: %d", resp.StatusCode)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/execute",
		strings.NewReader(`{"prompt":"a long story","temperature":0,"ignore_eos":true}`))
	req.Header.Set("Authorization", "Bearer k")
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	var events []string
	readEvent := func() (string, error) {
		var name string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return "", err
			}
			line = strings.TrimRight(line, "\n")
			if line == "" {
				return name, nil
			}
			if n, ok := strings.CutPrefix(line, "event: "); ok {
				name = n
			}
		}
	}
	for len(events) < 4 { // started and a few tokens
		ev, err := readEvent()
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		events = append(events, ev)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := readEvent()
		if err != nil {
			break
		}
		events = append(events, ev)
	}
	terminal := 0
	for i, ev := range events {
		if ev == "end" || ev == "error" {
			terminal++
			if i != len(events)-1 {
				t.Errorf("terminal event %q at %d of %d", ev, i, len(events))
			}
		}
	}
	t.Logf("%d events, last %q", len(events), events[len(events)-1])
	if terminal != 1 {
		t.Errorf("%d terminal events: %v", terminal, events[max(0, len(events)-5):])
	}
	done := make(chan error, 1)
	go func() {
		<-logs.done // every line read before Wait closes the pipe
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v, want 0:\n%s", err, logs)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not exit after SIGTERM:\n%s", logs)
	}
	for _, want := range []string{"msg=\"shutting down", "msg=stopped", "request_id="} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

func TestServeFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		// Without --model: the default model, here not in the (empty) cache
		// and offline.
		{[]string{"serve", "--offline", "--port", "0"}, nil, "OfflineNotCached: " + DefaultModelRef},
		{[]string{"serve", "--port", "0"}, map[string]string{"HF_HUB_OFFLINE": "1"}, "OfflineNotCached: " + DefaultModelRef},
		{[]string{"serve", "--model", "x.gguf", "--log-format", "xml"}, nil, "--log-format"},
		{[]string{"serve", "--model", "x.gguf", "--parallel", "0"}, nil, "--parallel"},
		{[]string{"serve", "--model", "/nonexistent/m.gguf", "--port", "0"}, nil, "m.gguf"},
		// The environment sets what the command line does not.
		{[]string{"serve", "--model", "x.gguf"}, map[string]string{"WORKER_PARALLEL": "0"}, "--parallel 0"},
		{[]string{"serve", "--model", "x.gguf"}, map[string]string{"WORKER_PORT": "eighty"}, `serve: WORKER_PORT="eighty": invalid argument`},
		{[]string{"serve", "--port", "0"}, map[string]string{"WORKER_MODEL": "/nonexistent/env.gguf"}, "env.gguf"},
		{[]string{"serve", "--model", "x.gguf", "--pooling", "max"}, nil, "--pooling: pooling \"max\": want mean or last"},
		{[]string{"serve", "--model", "x.gguf", "--kv-memory", "16 parsecs"}, nil, `--kv-memory "16 parsecs": unknown unit "parsecs": want a byte count such as 16GiB`},
		{[]string{"serve", "--model", "x.gguf"}, map[string]string{"WORKER_KV_MEMORY": "lots"}, `--kv-memory "lots"`},
		// The command line wins over the environment.
		{[]string{"serve", "--model", "/nonexistent/m.gguf", "--port", "0", "--log-format", "text"}, map[string]string{"WORKER_LOG_FORMAT": "xml"}, "m.gguf"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			if code := run(c.args, &out, &errb); code == 0 || !strings.Contains(errb.String(), c.want) {
				t.Errorf("%v %v: exit %d, stderr %q; want non-zero and %q", c.env, c.args, code, errb.String(), c.want)
			}
		})
	}
}

// TestParseKVMemory: --kv-memory's values as the engine takes them (0: the
// backend's default; -1: no limit).
func TestParseKVMemory(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		err  bool
	}{
		{"", 0, false}, {"16GiB", 16 << 30, false}, {"512MB", 512e6, false}, {"1073741824", 1 << 30, false},
		{"none", -1, false}, {"0", -1, false}, {"12 apples", 0, true}, {"GiB", 0, true},
	} {
		got, src, err := parseKVMemory(c.in)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("parseKVMemory(%q) = %d, %v; want %d (error %v)", c.in, got, err, c.want, c.err)
		}
		if err == nil && c.in != "" && !strings.Contains(src, "--kv-memory") {
			t.Errorf("parseKVMemory(%q): source %q does not name the flag", c.in, src)
		}
	}
}
