package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestNoLeakWithDisconnectingClients: 400 requests on every
// generation endpoint of the OpenAI and native APIs, streamed and not,
// with n up to 3, of random lengths, from clients that read to the end,
// leave at a random moment (before or after the headers), drop the
// connection after the first chunk, or cancel the job through /cancel
// after it; afterwards no place is held, no job registered, no slot busy,
// nothing queued, no KV position held, and the next requests give what a
// fresh server gives.
func TestNoLeakWithDisconnectingClients(t *testing.T) {
	total := 400
	if testing.Short() {
		total = 150
	}
	o := opts{parallel: 3, queue: 32}
	ts := newTestServer(t, o)
	hc := &http.Client{Timeout: 30 * time.Second}
	postCtx := func(ctx context.Context, path, body string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		return hc.Do(req)
	}
	words := strings.Fields("the cat sat on a mat while rain fell over quiet hills and every river ran to sea")
	system := "You answer in one line. " + strings.Repeat("Be brief. ", 6)

	const (
		readAllOf = iota
		leaveAnyTime
		dropAfterFirst
		cancelAfterFirst
		kinds
	)
	var done [kinds]atomic.Int64
	var failures, queueFull atomic.Int64
	fail := func(format string, args ...any) {
		if failures.Add(1) <= 5 {
			t.Errorf(format, args...)
		}
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 15))
			for range jobs {
				var text strings.Builder
				for range 1 + rng.IntN(40) {
					text.WriteString(words[rng.IntN(len(words))] + " ")
				}
				stream := rng.IntN(2) == 0
				n := 1 + rng.IntN(3)
				maxTokens := 1 + rng.IntN(30)
				var path, body string
				switch rng.IntN(3) {
				case 0:
					path = "/v1/chat/completions"
					body = fmt.Sprintf(`{"messages":[{"role":"system","content":%q},{"role":"user","content":%q}],"n":%d,"max_tokens":%d,"stream":%v,"seed":%d}`,
						system, text.String(), n, maxTokens, stream, rng.IntN(1000))
				case 1:
					path = "/v1/completions"
					body = fmt.Sprintf(`{"prompt":%q,"n":%d,"max_tokens":%d,"stream":%v,"temperature":0}`, system+text.String(), n, maxTokens, stream)
				default:
					path, stream = "/execute", true
					body = fmt.Sprintf(`{"prompt":%q,"max_tokens":%d}`, system+text.String(), maxTokens)
				}
				kind := rng.IntN(kinds)
				if !stream && (kind == dropAfterFirst || kind == cancelAfterFirst) {
					kind = leaveAnyTime
				}
				ctx, cancel := context.WithCancel(context.Background())
				if kind == leaveAnyTime {
					time.AfterFunc(time.Duration(rng.IntN(15000))*time.Microsecond, cancel)
				}
				resp, err := postCtx(ctx, path, body)
				if err != nil {
					cancel()
					if kind != leaveAnyTime {
						fail("%s: %v", path, err)
					}
					done[kind].Add(1)
					continue
				}
				switch {
				case resp.StatusCode == http.StatusServiceUnavailable:
					// The queue was full: a fair answer under this load.
					queueFull.Add(1)
				case resp.StatusCode != http.StatusOK:
					b, _ := io.ReadAll(resp.Body)
					fail("%s %.120s: status %d: %s", path, body, resp.StatusCode, b)
				case kind == dropAfterFirst || kind == cancelAfterFirst:
					br := bufio.NewReader(resp.Body)
					line, err := br.ReadString('\n')
					if err != nil {
						fail("%s: no first line: %v", path, err)
						break
					}
					if kind == dropAfterFirst {
						break // the connection closes below, mid-stream
					}
					// The job's id is in the first chunk (OpenAI) or the
					// started event (native).
					var first struct {
						ID    string `json:"id"`
						JobID string `json:"job_id"`
					}
					for !strings.HasPrefix(line, "data: ") && err == nil {
						line, err = br.ReadString('\n')
					}
					json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &first)
					id := first.ID + first.JobID
					if id == "" {
						fail("%s: no job id in %q", path, line)
						break
					}
					cr := post(t, ts.URL+"/cancel", fmt.Sprintf(`{"job_id":%q}`, id))
					if cr.StatusCode != http.StatusAccepted {
						fail("/cancel %s: %d", id, cr.StatusCode)
					}
					readAll(t, cr)
					io.Copy(io.Discard, resp.Body) // the stream ends at once
				default:
					io.Copy(io.Discard, resp.Body)
				}
				resp.Body.Close()
				cancel()
				done[kind].Add(1)
			}
		})
	}
	start := time.Now()
	for i := range total {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	t.Logf("%d requests in %v: %d read to the end, %d left at a random moment, %d dropped after the first chunk, %d cancelled by /cancel; %d answered 503 (queue full)",
		total, time.Since(start).Round(time.Millisecond), done[readAllOf].Load(), done[leaveAnyTime].Load(), done[dropAfterFirst].Load(), done[cancelAfterFirst].Load(), queueFull.Load())
	for k := range kinds {
		if done[k].Load() < int64(total/20) {
			t.Errorf("only %d requests of kind %d: the churn does not exercise it", done[k].Load(), k)
		}
	}

	jobsLeft := func() int {
		ts.jobsMu.Lock()
		defer ts.jobsMu.Unlock()
		return len(ts.jobs)
	}
	if _, ok := waitFor(10*time.Second, func() bool {
		st := ts.m.Stats()
		return ts.InFlight() == 0 && jobsLeft() == 0 && st.Active == 0 && st.Queued == 0 && st.KVPositions == 0
	}); !ok {
		t.Fatalf("not idle after the churn: %d places held, %d jobs registered, engine %+v", ts.InFlight(), jobsLeft(), ts.m.Stats())
	}

	// The next requests answer as a fresh server does.
	fresh := newTestServer(t, o)
	for _, p := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"messages":[{"role":"system","content":"` + system + `"},{"role":"user","content":"the cat sat"}],"n":2,"max_tokens":10,"seed":5,"ignore_eos":true}`},
		{"/v1/completions", `{"prompt":"` + system + `rain fell over","n":3,"max_tokens":8,"temperature":0,"logprobs":2,"ignore_eos":true}`},
	} {
		n := strings.Count(p.body, `"n":2`)*2 + strings.Count(p.body, `"n":3`)*3
		for _, stream := range []bool{false, true} {
			got, gu := askChoices(t, ts, p.path, p.body, n, stream)
			want, wu := askChoices(t, fresh, p.path, p.body, n, stream)
			gu.PromptTokensDetails = wu.PromptTokensDetails // the caches differ
			if !reflect.DeepEqual(got, want) || gu != wu {
				t.Errorf("%s stream %v after the churn:\n%+v %+v\na fresh server:\n%+v %+v", p.path, stream, got, gu, want, wu)
			}
		}
	}
}
