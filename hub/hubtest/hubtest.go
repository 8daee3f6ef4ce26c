// Package hubtest is a fake Hugging Face hub for tests: an httptest server
// that answers the hub's file listing and "resolve" downloads the way the
// hub does, with a CDN on another host name, Range requests, gated
// repositories and connections dropped mid-file on demand.
package hubtest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Hub behaves like the hub for the client: a file listing per
// revision, "resolve" URLs that redirect to a CDN on another host name
// (localhost instead of 127.0.0.1, so that the client must not forward its
// token), Range requests, X-Repo-Commit / X-Linked-Etag headers, 401 for a
// gated repository without the token, and connections dropped mid-file.
type Hub struct {
	t        testing.TB
	Hub, CDN *httptest.Server
	Token    string // the token a gated repository accepts

	mu       sync.Mutex
	repos    map[string]*Repo
	served   map[string]int64 // body bytes the CDN sent, by file name
	ranges   []string         // Range headers the CDN received
	requests int              // requests to the hub and the CDN
	drops    map[string][]int64
	stalls   map[string][]int64
}

type Repo struct {
	Commit    string
	Gated     bool
	Files     map[string][]byte
	Published map[string]string // a SHA-256 to publish instead of the real one
	NoRange   bool              // the CDN ignores Range
	// NoLFS lists files listed as plain git files: a blobId (their git
	// object id, or BlobID's value) and no lfs entry.
	NoLFS  map[string]bool
	BlobID map[string]string // a blob id to list instead of the real one
	Slow   time.Duration     // the CDN pauses this long before each write
}

// New starts a fake hub; it stops when the test ends. Its URL (h.Hub.URL) is
// the endpoint; the CDN it redirects to is on "localhost" instead of
// 127.0.0.1, so a client that forwards its token across hosts is caught.
func New(t testing.TB) *Hub {
	h := &Hub{t: t, Token: "hf_good", repos: map[string]*Repo{}, served: map[string]int64{}, drops: map[string][]int64{}, stalls: map[string][]int64{}}
	h.CDN = httptest.NewServer(http.HandlerFunc(h.serveCDN))
	h.Hub = httptest.NewServer(http.HandlerFunc(h.serveHub))
	t.Cleanup(func() { h.Hub.Close(); h.CDN.Close() })
	return h
}

// AddRepo adds (or replaces) a repository OWNER/NAME; a zero Commit gets one.
func (h *Hub) AddRepo(name string, r *Repo) *Repo {
	if r.Commit == "" {
		sum := sha256.Sum256([]byte(name))
		r.Commit = hex.EncodeToString(sum[:20])
	}
	if r.Published == nil {
		r.Published = map[string]string{}
	}
	h.mu.Lock()
	h.repos[name] = r
	h.mu.Unlock()
	return r
}

// DropAfter makes the CDN cut the connection after n bytes of the file's
// body, once per value given.
func (h *Hub) DropAfter(file string, n ...int64) {
	h.mu.Lock()
	h.drops[file] = append(h.drops[file], n...)
	h.mu.Unlock()
}

// GitBlobID is b's git object id: the hex SHA-1 of "blob <len>\x00" and b.
func GitBlobID(b []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(b))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// SHA256 is the hex SHA-256 of b, as the hub publishes it.
func SHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Ranges returns the Range headers the CDN has received.
func (h *Hub) Ranges() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ranges...)
}

func (h *Hub) serveHub(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.requests++
	h.mu.Unlock()
	p := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	authorized := r.Header.Get("Authorization") == "Bearer "+h.Token
	// /api/models/OWNER/REPO/revision/REV
	if len(p) == 6 && p[0] == "api" && p[1] == "models" && p[4] == "revision" {
		repo := h.repos[p[2]+"/"+p[3]]
		if repo == nil || (p[5] != "main" && p[5] != repo.Commit) {
			http.Error(w, `{"error":"Repository not found"}`, http.StatusNotFound)
			return
		}
		if r.URL.Query().Get("blobs") != "true" {
			h.t.Errorf("listing without blobs=true: %s", r.URL)
		}
		type lfs struct {
			SHA256 string `json:"sha256"`
			Size   int64  `json:"size"`
		}
		type sib struct {
			Name   string `json:"rfilename"`
			Size   int64  `json:"size"`
			BlobID string `json:"blobId,omitempty"`
			LFS    *lfs   `json:"lfs,omitempty"`
		}
		doc := struct {
			ID       string `json:"id"`
			SHA      string `json:"sha"`
			Gated    any    `json:"gated"`
			Siblings []sib  `json:"siblings"`
		}{ID: p[2] + "/" + p[3], SHA: repo.Commit, Gated: repo.Gated}
		for name, b := range repo.Files {
			sum := SHA256(b)
			if s, ok := repo.Published[name]; ok {
				sum = s
			}
			if repo.NoLFS[name] {
				id := GitBlobID(b)
				if v, ok := repo.BlobID[name]; ok {
					id = v
				}
				doc.Siblings = append(doc.Siblings, sib{Name: name, Size: int64(len(b)), BlobID: id})
				continue
			}
			doc.Siblings = append(doc.Siblings, sib{Name: name, Size: int64(len(b)), LFS: &lfs{SHA256: sum, Size: int64(len(b))}})
		}
		json.NewEncoder(w).Encode(doc)
		return
	}
	// /OWNER/REPO/resolve/REV/PATH
	if len(p) >= 5 && p[2] == "resolve" {
		repo := h.repos[p[0]+"/"+p[1]]
		file := strings.Join(p[4:], "/")
		if repo == nil || repo.Files[file] == nil || (p[3] != "main" && p[3] != repo.Commit) {
			http.Error(w, "Entry not found", http.StatusNotFound)
			return
		}
		if repo.Gated && !authorized {
			http.Error(w, "Access to model "+p[0]+"/"+p[1]+" is restricted. You must have access to it and be authenticated to access it.", http.StatusUnauthorized)
			return
		}
		b := repo.Files[file]
		w.Header().Set("X-Repo-Commit", repo.Commit)
		w.Header().Set("X-Linked-Etag", `"`+SHA256(b)+`"`)
		w.Header().Set("X-Linked-Size", fmt.Sprint(len(b)))
		cdn := strings.Replace(h.CDN.URL, "127.0.0.1", "localhost", 1)
		http.Redirect(w, r, cdn+"/blob/"+p[0]+"/"+p[1]+"?file="+url.QueryEscape(file), http.StatusFound)
		return
	}
	http.NotFound(w, r)
}

func (h *Hub) serveCDN(w http.ResponseWriter, r *http.Request) {
	if a := r.Header.Get("Authorization"); a != "" {
		h.t.Errorf("the CDN (another host) received the token: Authorization %q", a)
	}
	p := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	file := r.URL.Query().Get("file")
	h.mu.Lock()
	h.requests++
	repo := h.repos[p[1]+"/"+p[2]]
	var limit int64 = -1
	if d := h.drops[file]; len(d) > 0 {
		limit, h.drops[file] = d[0], d[1:]
	}
	stall := false
	if d := h.stalls[file]; len(d) > 0 && limit < 0 {
		limit, h.stalls[file], stall = d[0], d[1:], true
	}
	if rg := r.Header.Get("Range"); rg != "" {
		h.ranges = append(h.ranges, rg)
	}
	h.mu.Unlock()
	b := repo.Files[file]
	if repo.NoRange {
		r.Header.Del("Range")
	}
	cw := &countingWriter{ResponseWriter: w, h: h, file: file, limit: limit, slow: repo.Slow, stall: stall, done: r.Context().Done()}
	http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(b))
}

// countingWriter counts the body bytes sent and, past limit (>= 0), drops
// the connection.
type countingWriter struct {
	http.ResponseWriter
	h     *Hub
	file  string
	limit int64
	sent  int64
	slow  time.Duration
	stall bool            // at limit, stop sending and hold the connection open
	done  <-chan struct{} // the request's end
}

func (c *countingWriter) Write(p []byte) (int, error) {
	time.Sleep(c.slow)
	if c.limit >= 0 && c.sent+int64(len(p)) > c.limit {
		p = p[:c.limit-c.sent]
		c.ResponseWriter.Write(p)
		c.count(len(p))
		c.ResponseWriter.(http.Flusher).Flush()
		if c.stall {
			select { // silent until the client gives up
			case <-c.done:
			case <-time.After(time.Minute):
			}
		}
		panic(http.ErrAbortHandler) // the connection is closed mid-body
	}
	n, err := c.ResponseWriter.Write(p)
	c.count(n)
	return n, err
}

func (c *countingWriter) count(n int) {
	c.sent += int64(n)
	c.h.mu.Lock()
	c.h.served[c.file] += int64(n)
	c.h.mu.Unlock()
}

// ServedBytes is how many body bytes of a file the CDN has sent.
func (h *Hub) ServedBytes(file string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.served[file]
}

// StallAfter makes the CDN stop sending a file after n bytes, once per value
// given, and hold the connection open until the client closes it.
func (h *Hub) StallAfter(file string, n ...int64) {
	h.mu.Lock()
	h.stalls[file] = append(h.stalls[file], n...)
	h.mu.Unlock()
}

// Requests is how many requests the hub and the CDN have answered.
func (h *Hub) Requests() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requests
}

// RandomBytes returns n seeded pseudo-random bytes.
func RandomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Repo returns a repository added with AddRepo (nil if none), for a test to
// change.
func (h *Hub) Repo(name string) *Repo {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.repos[name]
}
