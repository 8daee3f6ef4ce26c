package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"worker-orcd/engine"
	"worker-orcd/internal/testmodel"
	"worker-orcd/tokenizer"
)

var tokenizerOpts = tokenizer.EncodeOptions{AddSpecial: true}

type bufioReader = bufio.Reader

func newBufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

func newHTTPTest(h http.Handler) *httptest.Server { return httptest.NewServer(h) }

// Models are written once per test binary into a temporary directory.
var modelDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "server-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	modelDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// specs are the synthetic models of the tests: "micro" decodes a token in
// well under a millisecond; "slow" is big enough (and long enough a context)
// that a generation is still running when a test cancels it.
var specs = map[string]func() testmodel.Spec{
	"micro": func() testmodel.Spec {
		s := testmodel.MustPreset("qwen2-micro")
		s.Type, s.Seed = testmodel.Q8_0, 3
		return s
	},
	"slow": func() testmodel.Spec {
		s := testmodel.MustPreset("qwen2-micro")
		s.Embd, s.FF, s.Layers, s.Heads, s.HeadsKV, s.Context = 256, 768, 6, 4, 2, 4096
		s.Type, s.Seed = testmodel.Q8_0, 5
		return s
	},
}

func modelPath(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(modelDir, name+".gguf")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if err := specs[name]().Write(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// testServer is a server on real TCP (127.0.0.1) with its model.
type testServer struct {
	*Server
	URL string
	m   *engine.Model
	hs  *httptest.Server
}

type opts struct {
	model    string // a spec name, or a path ending in .gguf
	parallel int
	queue    int
	apiKey   string
	maxBody  int64
	// cfg, when set, adjusts the server's Config (timeouts, limits, hosts).
	cfg func(*Config)
	// sndBuf, when > 0, is the socket send buffer of accepted connections
	// (small: a client that does not read stalls the server's writes soon).
	sndBuf int
}

// sndBufListener sets the send buffer of each accepted connection.
type sndBufListener struct {
	net.Listener
	size int
}

func (l sndBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(l.size)
	}
	return c, err
}

func newTestServer(t testing.TB, o opts) *testServer {
	t.Helper()
	if o.model == "" {
		o.model = "micro"
	}
	path := o.model
	if !strings.HasSuffix(path, ".gguf") {
		path = modelPath(t, o.model)
	}
	m, err := engine.Load(path, engine.LoadOptions{Device: testDevice(), Threads: 2,
		Engine: engine.Options{Parallel: o.parallel, QueueSize: o.queue}})
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() && os.Getenv("SERVER_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg := Config{APIKey: o.apiKey, ModelPath: path, MaxBodyBytes: o.maxBody, Logger: logger, WorkerID: "test", LoopbackOnly: true}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	s := New(cfg)
	s.SetModel(m)
	// The http.Server and listener of the real command: its timeouts and
	// connection bound.
	hs := httptest.NewUnstartedServer(s)
	hs.Config = s.HTTPServer()
	if o.sndBuf > 0 {
		hs.Listener = sndBufListener{hs.Listener, o.sndBuf}
	}
	hs.Listener = s.LimitListener(hs.Listener)
	hs.Start()
	ts := &testServer{Server: s, URL: hs.URL, m: m, hs: hs}
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		m.Close()
	})
	return ts
}

var client = &http.Client{Timeout: 60 * time.Second}

func post(t testing.TB, url, body string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func get(t testing.TB, url string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readAll(t testing.TB, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeJSON(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// event is one Server-Sent Event.
type event struct {
	name string
	data string
}

// readSSE reads a whole event stream and checks its framing: every event
// has one data line, and events are separated by a blank line.
func readSSE(t testing.TB, r io.Reader) []event {
	t.Helper()
	var out []event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var cur event
	hasData := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if !hasData {
				t.Fatalf("empty event (blank line without data) after %d events", len(out))
			}
			out = append(out, cur)
			cur, hasData = event{}, false
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if hasData {
				t.Fatalf("two data lines in one event: %q", line)
			}
			cur.data, hasData = strings.TrimPrefix(line, "data: "), true
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	if hasData {
		t.Fatalf("stream ended inside an event %+v", cur)
	}
	return out
}

// execResult is a parsed /execute stream.
type execResult struct {
	jobID  string
	text   string
	idx    []int
	end    *endEvent
	errEv  *nativeError
	events []event
}

// checkExecute validates the grammar started → token* → metrics? → end, or
// started → token* → error: exactly one terminal event, at the end.
func checkExecute(t testing.TB, evs []event) execResult {
	t.Helper()
	var r execResult
	r.events = evs
	if len(evs) == 0 || evs[0].name != "started" {
		t.Fatalf("stream does not begin with started: %+v", evs)
	}
	var st startedEvent
	decodeJSON(t, []byte(evs[0].data), &st)
	r.jobID = st.JobID
	var sb strings.Builder
	for i, ev := range evs[1:] {
		last := i == len(evs)-2
		switch ev.name {
		case "token":
			var tk tokenEvent
			decodeJSON(t, []byte(ev.data), &tk)
			if len(r.idx) > 0 && tk.I <= r.idx[len(r.idx)-1] {
				t.Fatalf("token indices not increasing: %v then %d", r.idx, tk.I)
			}
			r.idx = append(r.idx, tk.I)
			sb.WriteString(tk.T)
		case "metrics":
		case "end":
			r.end = &endEvent{}
			decodeJSON(t, []byte(ev.data), r.end)
		case "error":
			r.errEv = &nativeError{}
			decodeJSON(t, []byte(ev.data), r.errEv)
		default:
			t.Fatalf("unknown event %q", ev.name)
		}
		if (ev.name == "end" || ev.name == "error") != last {
			t.Fatalf("terminal event not last, or last event not terminal: %+v", evs)
		}
	}
	if r.end == nil && r.errEv == nil {
		t.Fatalf("no terminal event: %+v", evs)
	}
	r.text = sb.String()
	return r
}

// execute runs one /execute request and parses its stream.
func (ts *testServer) execute(t testing.TB, body string) execResult {
	t.Helper()
	resp := post(t, ts.URL+"/execute", body)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/execute %s: status %d: %s", body, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	return checkExecute(t, readSSE(t, resp.Body))
}

func (ts *testServer) health(t testing.TB) healthResponse {
	t.Helper()
	var h healthResponse
	decodeJSON(t, readAll(t, get(t, ts.URL+"/health")), &h)
	return h
}

var modelLabelRE = regexp.MustCompile(`model="[^"]*",?`)

// metric returns the value of one sample line of /metrics ("name{labels}").
func (ts *testServer) metric(t testing.TB, series string, hdr ...string) float64 {
	t.Helper()
	return ts.metrics(t, []string{series}, hdr...)[0]
}

// metrics returns the values of sample lines of one scrape of /metrics.
func (ts *testServer) metrics(t testing.TB, series []string, hdr ...string) []float64 {
	t.Helper()
	b := readAll(t, get(t, ts.URL+"/metrics", hdr...))
	vals := make([]float64, len(series))
	for _, line := range bytes.Split(b, []byte("\n")) {
		// The model label is left out of the series the tests name.
		l := modelLabelRE.ReplaceAllString(string(line), "")
		l = strings.Replace(l, "{}", "", 1)
		if name, val, ok := strings.Cut(l, " "); ok {
			if i := slices.Index(series, name); i >= 0 {
				fmt.Sscan(val, &vals[i])
			}
		}
	}
	return vals
}

// waitFor polls cond every millisecond up to d and reports how long it took.
func waitFor(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > d {
			return time.Since(start), false
		}
		time.Sleep(time.Millisecond)
	}
}

// testDevice is where the server tests run the model: the CPU, or the
// device WORKER_TEST_DEVICE names ("cuda" on a GPU machine, where the same
// tests check the CUDA backend behind the server).
func testDevice() string {
	if d := os.Getenv("WORKER_TEST_DEVICE"); d != "" {
		return d
	}
	return "cpu"
}
