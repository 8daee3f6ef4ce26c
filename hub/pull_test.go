package hub

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"worker-orcd/hub/hubtest"
)

const q4 = "model-q4_k_m.gguf"

func oneModelHub(t *testing.T, size int) (*hubtest.Hub, []byte) {
	h := hubtest.New(t)
	b := randomBytes(size, 1)
	h.AddRepo("org/model-GGUF", &hubtest.Repo{Files: map[string][]byte{q4: b, "model-q8_0.gguf": randomBytes(size/2, 2), "README.md": []byte("# model")}})
	return h, b
}

func TestPullLayoutAndProgress(t *testing.T) {
	h, b := oneModelHub(t, 3<<20+123)
	dir := t.TempDir()
	c, events := client(t, h, dir)
	m, err := c.Pull(context.Background(), mustRef(t, "hf.co/org/model-GGUF:Q4_K_M"))
	if err != nil {
		t.Fatal(err)
	}
	repo := h.Repo("org/model-GGUF")
	// The hub's layout: blob by SHA-256, relative link in the snapshot, ref.
	blob := filepath.Join(dir, "models--org--model-GGUF", "blobs", sha(b))
	snap := filepath.Join(dir, "models--org--model-GGUF", "snapshots", repo.Commit, q4)
	if got, _ := os.ReadFile(blob); !slices.Equal(got, b) {
		t.Fatalf("blob %s does not hold the file", blob)
	}
	if target, err := os.Readlink(snap); err != nil || target != filepath.Join("..", "..", "blobs", sha(b)) {
		t.Fatalf("snapshot link %s -> %q, %v", snap, target, err)
	}
	if ref, _ := os.ReadFile(filepath.Join(dir, "models--org--model-GGUF", "refs", "main")); string(ref) != repo.Commit {
		t.Fatalf("refs/main = %q, want %q", ref, repo.Commit)
	}
	if m.Path() != snap || m.Size != int64(len(b)) || m.Commit != repo.Commit || !slices.Equal(m.Files, []string{q4}) {
		t.Fatalf("model %+v", m)
	}
	// Progress: from 0 to the size, never backwards, finished once at the end.
	ev := *events
	if len(ev) < 3 || ev[0].Done != 0 || ev[0].Total != int64(len(b)) || !ev[len(ev)-1].Finished || ev[len(ev)-1].Done != int64(len(b)) {
		t.Fatalf("progress events: first %+v, last %+v (%d)", ev[0], ev[len(ev)-1], len(ev))
	}
	for i := 1; i < len(ev); i++ {
		if ev[i].Done < ev[i-1].Done {
			t.Fatalf("progress went back: %+v after %+v", ev[i], ev[i-1])
		}
	}
	// Pulled again: nothing is fetched, the listing only.
	served := h.ServedBytes(q4)
	*events = nil
	if _, err := c.Pull(context.Background(), mustRef(t, "hf.co/org/model-GGUF:Q4_K_M")); err != nil {
		t.Fatal(err)
	}
	if h.ServedBytes(q4) != served || len(*events) != 1 || !(*events)[0].Cached {
		t.Fatalf("second pull fetched %d more bytes; events %+v", h.ServedBytes(q4)-served, *events)
	}
	// A file reference to the same file links the same blob.
	m2, err := c.Pull(context.Background(), mustRef(t, "hf.co/org/model-GGUF/"+q4))
	if err != nil || m2.Path() != snap {
		t.Fatalf("file reference: %+v, %v", m2, err)
	}
}

func TestPullResumesInterrupted(t *testing.T) {
	h, b := oneModelHub(t, 2<<20)
	dir := t.TempDir()
	c, events := client(t, h, dir)
	c.Retries = 0 // the first pull gives up at the first drop, as a killed process would
	h.DropAfter(q4, 700_000)
	ref := mustRef(t, "hf.co/org/model-GGUF")
	_, err := c.Pull(context.Background(), ref)
	if !errors.Is(err, ErrDownload) || !strings.Contains(err.Error(), "resumes") {
		t.Fatalf("interrupted pull: %v", err)
	}
	partial := filepath.Join(dir, "models--org--model-GGUF", "blobs", sha(b)+".incomplete")
	st, err := os.Stat(partial)
	if err != nil || st.Size() != 700_000 {
		t.Fatalf("partial file: %v, %v", st, err)
	}
	if _, err := c.Cache.Local(ref); !errors.Is(err, ErrOffline) {
		t.Fatalf("an incomplete download is in the cache: %v", err)
	}
	// The next pull asks for the rest only.
	*events = nil
	c.Retries = 3
	m, err := c.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.ServedBytes(q4); got != int64(len(b)) {
		t.Fatalf("the CDN sent %d bytes in all for a file of %d: bytes were fetched twice", got, len(b))
	}
	if !slices.Contains(h.Ranges(), "bytes=700000-") {
		t.Fatalf("no Range request from the partial's end: %v", h.Ranges())
	}
	if (*events)[0].Resumed != 700_000 {
		t.Fatalf("progress does not report the resumed bytes: %+v", (*events)[0])
	}
	if got, _ := os.ReadFile(m.Path()); !slices.Equal(got, b) {
		t.Fatal("the resumed file differs from the original")
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Fatalf("partial file left: %v", err)
	}
}

func TestPullRetriesDroppedConnections(t *testing.T) {
	h, b := oneModelHub(t, 1<<20)
	c, _ := client(t, h, t.TempDir())
	h.DropAfter(q4, 100_000, 0, 300_000) // three drops, the second before any byte
	m, err := c.Pull(context.Background(), mustRef(t, "hf.co/org/model-GGUF:Q4_K_M"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.Path()); !slices.Equal(got, b) {
		t.Fatal("file differs after retries")
	}
	if got := h.ServedBytes(q4); got != int64(len(b)) {
		t.Fatalf("sent %d bytes for %d", got, len(b))
	}
	// More drops than retries: a clear failure, the bytes kept.
	h2, _ := oneModelHub(t, 1<<20)
	c2, _ := client(t, h2, t.TempDir())
	c2.Retries = 1
	h2.DropAfter(q4, 10, 20, 30)
	if _, err := c2.Pull(context.Background(), mustRef(t, "hf.co/org/model-GGUF:Q4_K_M")); !errors.Is(err, ErrDownload) || !strings.Contains(err.Error(), "after 2 attempts") {
		t.Fatalf("pull past the retries: %v", err)
	}
}

func TestPullServerWithoutRange(t *testing.T) {
	h, b := oneModelHub(t, 1<<20)
	h.Repo("org/model-GGUF").NoRange = true
	c, _ := client(t, h, t.TempDir())
	h.DropAfter(q4, 500_000)
	m, err := c.Pull(context.Background(), mustRef(t, "hf.co/org/model-GGUF:Q4_K_M"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.Path()); !slices.Equal(got, b) {
		t.Fatal("file differs when the server ignores Range")
	}
}

func TestPullChecksumMismatch(t *testing.T) {
	h, _ := oneModelHub(t, 1<<20)
	h.Repo("org/model-GGUF").Published[q4] = strings.Repeat("ab", 32)
	dir := t.TempDir()
	c, _ := client(t, h, dir)
	ref := mustRef(t, "hf.co/org/model-GGUF:Q4_K_M")
	_, err := c.Pull(context.Background(), ref)
	if !errors.Is(err, ErrChecksum) || !strings.HasPrefix(err.Error(), "ChecksumMismatch: ") || !strings.Contains(err.Error(), strings.Repeat("ab", 32)) {
		t.Fatalf("tampered file: %v", err)
	}
	// Nothing of it is left to be used: no blob, no partial, no link.
	blobs, _ := os.ReadDir(filepath.Join(dir, "models--org--model-GGUF", "blobs"))
	if len(blobs) != 0 {
		t.Fatalf("blobs left: %v", blobs)
	}
	if _, err := c.Cache.Local(ref); !errors.Is(err, ErrOffline) {
		t.Fatalf("the refused file is in the cache: %v", err)
	}
}

func TestPullGated(t *testing.T) {
	h := hubtest.New(t)
	b := randomBytes(4096, 3)
	h.AddRepo("corp/gated", &hubtest.Repo{Gated: true, Files: map[string][]byte{"g-Q4_K_M.gguf": b}})
	c, _ := client(t, h, t.TempDir())
	ref := mustRef(t, "hf.co/corp/gated")
	_, err := c.Pull(context.Background(), ref)
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "HF_TOKEN") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("gated without a token: %v", err)
	}
	c.Token = "hf_wrong"
	if _, err := c.Pull(context.Background(), ref); !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "lacks access") {
		t.Fatalf("gated with a bad token: %v", err)
	}
	c.Token = h.Token // the CDN handler fails the test if the token reaches it
	m, err := c.Pull(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.Path()); !slices.Equal(got, b) {
		t.Fatal("gated file differs")
	}
}

func TestPullNotFound(t *testing.T) {
	h, _ := oneModelHub(t, 1000)
	c, _ := client(t, h, t.TempDir())
	for ref, want := range map[string]error{
		"hf.co/org/nothing":               ErrNotFound,
		"hf.co/org/model-GGUF:Q2_K":       ErrNotFound,
		"hf.co/org/model-GGUF/other.gguf": ErrNotFound,
		"hf.co/org/model-GGUF@v9:Q4_K_M":  ErrNotFound,
		"hf.co/org/model-GGUF/sub/x.gguf": ErrNotFound,
	} {
		if _, err := c.Pull(context.Background(), mustRef(t, ref)); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", ref, err, want)
		}
	}
}

func TestOffline(t *testing.T) {
	h, b := oneModelHub(t, 5000)
	dir := t.TempDir()
	c, _ := client(t, h, dir)
	if _, err := c.Pull(context.Background(), mustRef(t, "hf.co/org/model-GGUF:Q4_K_M")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HF_HUB_CACHE", dir)
	t.Setenv("HF_HUB_OFFLINE", "1")
	t.Setenv("HF_ENDPOINT", h.Hub.URL)
	off := NewClientFromEnv()
	if !off.Offline || off.Cache.Dir != dir || off.Endpoint != h.Hub.URL {
		t.Fatalf("client from the environment: %+v", off)
	}
	before := h.Requests()
	for _, s := range []string{"hf.co/org/model-GGUF:Q4_K_M", "hf.co/org/model-GGUF:q4_k_m", "hf.co/org/model-GGUF", "hf.co/org/model-GGUF/" + q4} {
		m, err := off.Pull(context.Background(), mustRef(t, s))
		if err != nil {
			t.Fatalf("offline %s: %v", s, err)
		}
		if m.Size != int64(len(b)) {
			t.Fatalf("offline %s: %+v", s, m)
		}
	}
	if h.Requests() != before {
		t.Fatal("the offline client used the network")
	}
	for _, s := range []string{"hf.co/org/model-GGUF:Q8_0", "hf.co/other/repo", "https://example.test/m.gguf"} {
		_, err := off.Pull(context.Background(), mustRef(t, s))
		if !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), "HF_HUB_OFFLINE") || !strings.Contains(err.Error(), "not in the cache") {
			t.Errorf("offline %s: %v", s, err)
		}
	}
	// The hub unreachable while online: the cached snapshot serves.
	h.Hub.Close()
	var notes []string
	c.Note = func(s string) { notes = append(notes, s) }
	if _, err := c.Pull(context.Background(), mustRef(t, "hf.co/org/model-GGUF:Q4_K_M")); err != nil || len(notes) == 0 {
		t.Fatalf("hub down, model cached: %v (notes %v)", err, notes)
	}
	if _, err := c.Pull(context.Background(), mustRef(t, "hf.co/org/model-GGUF:Q8_0")); !errors.Is(err, ErrDownload) || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("hub down, model not cached: %v", err)
	}
}

func TestPullSplit(t *testing.T) {
	h := hubtest.New(t)
	parts := map[string][]byte{}
	for i := 1; i <= 3; i++ {
		parts[filepathName(i)] = randomBytes(10_000+i, uint64(i))
	}
	parts["m-F16.gguf"] = randomBytes(10, 9)
	h.AddRepo("org/split", &hubtest.Repo{Files: parts})
	c, events := client(t, h, t.TempDir())
	for _, s := range []string{"hf.co/org/split:Q8_0", "hf.co/org/split/" + filepathName(2)} {
		m, err := c.Pull(context.Background(), mustRef(t, s))
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Paths) != 3 || m.Files[0] != filepathName(1) || m.Size != 30_006 {
			t.Fatalf("%s: %+v", s, m)
		}
		for i, p := range m.Paths {
			if got, _ := os.ReadFile(p); !slices.Equal(got, parts[filepathName(i+1)]) {
				t.Fatalf("part %d differs", i+1)
			}
		}
	}
	if last := (*events)[len(*events)-1]; last.Parts != 3 || last.Part != 3 {
		t.Fatalf("progress of parts: %+v", last)
	}
}

func filepathName(i int) string { return "m-Q8_0-0000" + string(rune('0'+i)) + "-of-00003.gguf" }

func TestPullURL(t *testing.T) {
	h, b := oneModelHub(t, 70_000)
	dir := t.TempDir()
	c, _ := client(t, h, dir)
	u := h.CDN.URL + "/blob/org/model-GGUF/" + q4 + "?file=" + q4
	h.DropAfter(q4, 1000)
	r := mustRef(t, u)
	m, err := c.Pull(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.Path()); !slices.Equal(got, b) || filepath.Base(m.Path()) != q4 {
		t.Fatalf("URL pull: %s", m.Path())
	}
	if l, err := c.Cache.Local(r); err != nil || l.Path() != m.Path() {
		t.Fatalf("URL in the cache: %v", err)
	}
	list, err := c.Cache.List()
	if err != nil || len(list) != 1 || list[0].Ref != r {
		t.Fatalf("list names the URL model %+v, %v; want %s", list, err, r)
	}
	if _, err := c.Cache.Remove(list[0].Ref); err != nil {
		t.Fatal(err)
	}
	if list, _ := c.Cache.List(); len(list) != 0 {
		t.Fatalf("after rm: %+v", list)
	}
}

func TestListAndRemove(t *testing.T) {
	h, b := oneModelHub(t, 9000)
	dir := t.TempDir()
	c, _ := client(t, h, dir)
	for _, s := range []string{"hf.co/org/model-GGUF:Q4_K_M", "hf.co/org/model-GGUF:Q8_0"} {
		if _, err := c.Pull(context.Background(), mustRef(t, s)); err != nil {
			t.Fatal(err)
		}
	}
	// A download in progress is not listed.
	os.WriteFile(filepath.Join(dir, "models--org--model-GGUF", "blobs", "ff00ff00.incomplete"), []byte("x"), 0o644)
	list, err := c.Cache.List()
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, e := range list {
		refs = append(refs, e.Ref.String())
	}
	if !slices.Equal(refs, []string{"hf.co/org/model-GGUF/model-q4_k_m.gguf", "hf.co/org/model-GGUF/model-q8_0.gguf"}) || list[0].Size != int64(len(b)) {
		t.Fatalf("list: %v %+v", refs, list)
	}
	removed, err := c.Cache.Remove(list[0].Ref)
	if err != nil || len(removed) != 2 {
		t.Fatalf("remove: %v, %v", removed, err)
	}
	if _, err := c.Cache.Local(mustRef(t, "hf.co/org/model-GGUF:Q8_0")); err != nil {
		t.Fatalf("the other model went too: %v", err)
	}
	if _, err := c.Cache.Remove(mustRef(t, "hf.co/org/model-GGUF:Q4_K_M")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing twice: %v", err)
	}
	if _, err := c.Cache.Remove(mustRef(t, "hf.co/org/model-GGUF:Q8_0")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "models--org--model-GGUF")); !os.IsNotExist(err) {
		t.Fatalf("empty repository folder left: %v", err)
	}
	if list, err := (Cache{Dir: filepath.Join(dir, "none")}).List(); err != nil || len(list) != 0 {
		t.Fatalf("list of a missing cache: %v, %v", list, err)
	}
}

func TestDefaultCacheDir(t *testing.T) {
	home, _ := os.UserHomeDir()
	tests := []struct{ hubCache, hfHome, xdg, want string }{
		{"/c/hub", "/h", "/x", "/c/hub"},
		{"", "/h", "/x", "/h/hub"},
		{"", "", "/x", "/x/huggingface/hub"},
		{"", "", "", filepath.Join(home, ".cache", "huggingface", "hub")},
		{"~/hc", "", "", filepath.Join(home, "hc")},
	}
	for _, tc := range tests {
		t.Setenv("HF_HUB_CACHE", tc.hubCache)
		t.Setenv("HF_HOME", tc.hfHome)
		t.Setenv("XDG_CACHE_HOME", tc.xdg)
		if got := DefaultCacheDir(); got != tc.want {
			t.Errorf("%+v: %s", tc, got)
		}
	}
}

func TestTokenFromEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HF_HOME", dir)
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HUGGING_FACE_HUB_TOKEN", "")
	t.Setenv("HF_TOKEN_PATH", "")
	os.WriteFile(filepath.Join(dir, "token"), []byte("hf_fromfile\n"), 0o600)
	if c := NewClientFromEnv(); c.Token != "hf_fromfile" || c.Endpoint != DefaultEndpoint {
		t.Fatalf("token file: %+v", c)
	}
	t.Setenv("HF_TOKEN", "hf_env")
	t.Setenv("HF_ENDPOINT", "http://mirror.test/")
	if c := NewClientFromEnv(); c.Token != "hf_env" || c.Endpoint != "http://mirror.test" {
		t.Fatalf("HF_TOKEN: %+v", c)
	}
}

// TestConcurrentPulls: processes sharing a cache (here two clients) pulling
// the same file at once download it once; both get the verified file.
func TestConcurrentPulls(t *testing.T) {
	h, b := oneModelHub(t, 1<<20)
	h.Repo("org/model-GGUF").Slow = time.Millisecond
	dir := t.TempDir()
	errs := make(chan error, 2)
	for range 2 {
		c, _ := client(t, h, dir)
		go func() {
			m, err := c.Pull(context.Background(), mustRef(t, "hf.co/org/model-GGUF:Q4_K_M"))
			if err == nil {
				if got, _ := os.ReadFile(m.Path()); !slices.Equal(got, b) {
					err = errors.New("file differs")
				}
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := h.ServedBytes(q4); got != int64(len(b)) {
		t.Fatalf("the CDN sent %d bytes for a file of %d: both pulls downloaded", got, len(b))
	}
}

// TestPullStalledConnection: a transfer that stops bringing bytes is
// dropped after StallTimeout and resumed.
func TestPullStalledConnection(t *testing.T) {
	h, b := oneModelHub(t, 1<<20)
	c, _ := client(t, h, t.TempDir())
	c.StallTimeout = 100 * time.Millisecond
	h.StallAfter(q4, 200_000)
	start := time.Now()
	m, err := c.Pull(context.Background(), mustRef(t, "hf.co/org/model-GGUF:Q4_K_M"))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(m.Path()); !slices.Equal(got, b) {
		t.Fatal("file differs after a stalled transfer")
	}
	if !slices.Contains(h.Ranges(), "bytes=200000-") || time.Since(start) > 20*time.Second {
		t.Fatalf("not resumed from the stall (ranges %v, %s)", h.Ranges(), time.Since(start))
	}
}
