package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"worker-orcd/hub/hubtest"
)

// TestTokenStaysWithTheHub: the token goes to the hub's endpoint only —
// never to a host a plain URL names (http or https), never across a
// redirect (the fake CDN fails the test if it sees it).
func TestTokenStaysWithTheHub(t *testing.T) {
	h, b := oneModelHub(t, 5000)
	c, _ := client(t, h, t.TempDir())
	c.Token = "hf_secret"
	if _, err := c.Pull(context.Background(), mustRef(t, "hf.co/org/model-GGUF:Q4_K_M")); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write(b)
	}))
	defer other.Close()
	if _, err := c.Pull(context.Background(), mustRef(t, other.URL+"/files/x-Q4_K_M.gguf")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("the URL was never fetched")
	}
	for _, a := range seen {
		if a != "" {
			t.Errorf("a plain URL on another host received Authorization %q", a)
		}
	}
}

// TestHostileFileNames: names in the hub's listing that would leave the
// cache ("../…") are never used, and nothing is written outside it.
func TestHostileFileNames(t *testing.T) {
	h := hubtest.New(t)
	b := randomBytes(3000, 9)
	h.AddRepo("evil/repo", &hubtest.Repo{Files: map[string][]byte{
		"../../../../escape-Q4_K_M.gguf": randomBytes(100, 1),
		"sub/../../up-Q4_K_M.gguf":       randomBytes(100, 2),
		"good-Q4_K_M.gguf":               b,
	}})
	root := t.TempDir()
	cacheDir := filepath.Join(root, "a", "b", "c", "cache")
	c, _ := client(t, h, cacheDir)
	m, err := c.Pull(context.Background(), mustRef(t, "hf.co/evil/repo:Q4_K_M"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.Path()); !slices.Equal(got, b) {
		t.Fatalf("pulled %s, not the good file", m.Path())
	}
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && (strings.Contains(d.Name(), "escape") || strings.Contains(d.Name(), "up-Q4")) {
			t.Errorf("a hostile name reached the disk: %s", p)
		}
		return nil
	})
	if _, err := ParseRef("hf.co/evil/repo/sub/../../up-Q4_K_M.gguf"); err == nil {
		t.Error("a reference to a hostile name was accepted")
	}
}

// TestPlainGitFileVerified: a file listed without LFS is checked against
// its git blob id; a mismatch is refused and nothing is linked.
func TestPlainGitFileVerified(t *testing.T) {
	h := hubtest.New(t)
	b := randomBytes(2000, 4)
	repo := h.AddRepo("org/small", &hubtest.Repo{Files: map[string][]byte{"s-Q8_0.gguf": b}, NoLFS: map[string]bool{"s-Q8_0.gguf": true}})
	c, _ := client(t, h, t.TempDir())
	m, err := c.Pull(context.Background(), mustRef(t, "hf.co/org/small"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.Path()); !slices.Equal(got, b) {
		t.Fatal("plain git file differs")
	}
	repo.BlobID = map[string]string{"s-Q8_0.gguf": strings.Repeat("ab", 20)}
	c2, _ := client(t, h, t.TempDir())
	if _, err := c2.Pull(context.Background(), mustRef(t, "hf.co/org/small")); !errors.Is(err, ErrChecksum) {
		t.Fatalf("a plain git file that does not match its blob id: %v, want ErrChecksum", err)
	}
	if _, err := c2.Cache.Local(mustRef(t, "hf.co/org/small")); err == nil {
		t.Fatal("the mismatched file was linked into the cache")
	}
}

// TestRemoveStaysInCache: rm deletes blobs of the repository only, even
// when a snapshot link points elsewhere.
func TestRemoveStaysInCache(t *testing.T) {
	h, _ := oneModelHub(t, 4000)
	c, _ := client(t, h, t.TempDir())
	ref := mustRef(t, "hf.co/org/model-GGUF:Q4_K_M")
	m, err := c.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "precious.gguf")
	if err := os.WriteFile(outside, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(m.Path())
	if err := os.Symlink(outside, m.Path()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cache.Remove(ref); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Fatalf("rm deleted a file outside the cache: %v", err)
	}
}

// TestURLResumeNeedsValidator: a partial download of a plain URL (no
// checksum) is not resumed when the server gave no validator: a changed
// file never ends up as old start + new rest.
func TestURLResumeNeedsValidator(t *testing.T) {
	b := randomBytes(6000, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(string(b)))
	}))
	defer srv.Close()
	c, _ := client(t, hubtest.New(t), t.TempDir())
	u := srv.URL + "/m-Q4_K_M.gguf"
	ref := mustRef(t, u)
	sum := sha256.Sum256([]byte(u))
	partial := c.Cache.blobPath(urlRepo(u), "url-"+hex.EncodeToString(sum[:])+".incomplete")
	if err := os.MkdirAll(filepath.Dir(partial), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(partial, []byte(strings.Repeat("X", 1000)), 0o644); err != nil { // an old version's start
		t.Fatal(err)
	}
	m, err := c.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.Path()); !slices.Equal(got, b) {
		t.Fatal("a stale partial file without a validator was resumed: the result mixes two versions")
	}
}
