package hub

import (
	"sync"
	"testing"

	"worker-orcd/hub/hubtest"
)

// client is a client of the fake hub with a cache in cacheDir; it records
// the progress events.
func client(t *testing.T, h *hubtest.Hub, cacheDir string) (*Client, *[]Progress) {
	var events []Progress
	var mu sync.Mutex
	c := &Client{Endpoint: h.Hub.URL, Cache: Cache{Dir: cacheDir}, Retries: 3,
		Progress: func(p Progress) { mu.Lock(); events = append(events, p); mu.Unlock() },
		Note:     func(msg string) { t.Log("note:", msg) }}
	return c, &events
}

func mustRef(t *testing.T, s string) Ref {
	t.Helper()
	r, err := ParseRef(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var (
	sha         = hubtest.SHA256
	randomBytes = hubtest.RandomBytes
)
