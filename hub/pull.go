package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultEndpoint is the hub's address; HF_ENDPOINT replaces it (a mirror).
const DefaultEndpoint = "https://huggingface.co"

// Client pulls models from the hub into a cache.
type Client struct {
	Endpoint  string // the hub, without a trailing slash
	Token     string // sent as "Authorization: Bearer" to the hub (never to a host it redirects to)
	Cache     Cache
	Offline   bool // use the cache only
	HTTP      *http.Client
	UserAgent string
	// Progress, when set, is called as a download goes: at its start, after
	// each block written, and at its end.
	Progress func(Progress)
	// Note, when set, receives remarks worth a log line (a retry, the cache
	// used because the hub could not be reached).
	Note func(msg string)
	// Retries is how many times a dropped transfer is resumed before the
	// pull fails; RetryWait the pause before the first retry (doubling).
	Retries   int
	RetryWait time.Duration
	// StallTimeout is how long a transfer may bring no byte before its
	// connection is dropped and resumed (0: DefaultStallTimeout).
	StallTimeout time.Duration
}

// DefaultStallTimeout is a Client's StallTimeout when it sets none.
const DefaultStallTimeout = 60 * time.Second

// Progress is the state of one file's download.
type Progress struct {
	File        string // path inside the repository
	Part, Parts int    // 1-based part of a split model, and the count (1 for one file)
	Total       int64  // the file's size in bytes (-1: unknown)
	Done        int64  // bytes on disk so far
	Resumed     int64  // bytes that were on disk when this pull started (not fetched again)
	Cached      bool   // the file was in the cache: nothing was fetched
	Finished    bool   // the file is complete and verified
}

// truthy reads a boolean environment variable as the hub's tools do.
func truthy(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes", "on", "y", "t":
		return true
	}
	return false
}

// NewClientFromEnv makes a client configured as the hub's tools are:
// HF_ENDPOINT, HF_TOKEN (else HUGGING_FACE_HUB_TOKEN, else the token file
// $HF_TOKEN_PATH or $HF_HOME/token that "huggingface-cli login" writes),
// HF_HUB_OFFLINE and the cache folder of DefaultCacheDir.
func NewClientFromEnv() *Client {
	c := &Client{
		Endpoint:  strings.TrimRight(os.Getenv("HF_ENDPOINT"), "/"),
		Token:     os.Getenv("HF_TOKEN"),
		Cache:     Cache{Dir: DefaultCacheDir()},
		Offline:   truthy(os.Getenv("HF_HUB_OFFLINE")),
		Retries:   5,
		RetryWait: time.Second,
	}
	if c.Endpoint == "" {
		c.Endpoint = DefaultEndpoint
	}
	if c.Token == "" {
		c.Token = os.Getenv("HUGGING_FACE_HUB_TOKEN")
	}
	if c.Token == "" {
		p := os.Getenv("HF_TOKEN_PATH")
		if p == "" {
			home := os.Getenv("HF_HOME")
			if home == "" {
				home = filepath.Dir(DefaultCacheDir())
			}
			p = filepath.Join(expandHome(home), "token")
		}
		if b, err := os.ReadFile(expandHome(p)); err == nil {
			c.Token = strings.TrimSpace(string(b))
		}
	}
	return c
}

// defaultTransport is shared by every Client without its own HTTP: its
// connections are reused across requests, retries and split parts.
var defaultTransport = &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	ResponseHeaderTimeout: 60 * time.Second,
	TLSHandshakeTimeout:   30 * time.Second,
	IdleConnTimeout:       90 * time.Second,
}

// http returns the client requests go through. Whatever the caller's
// client, a redirect never carries the token on: Go's own rule keeps it for
// subdomains and for a downgrade to plain http on the same host, and the
// hub redirects downloads to another host.
func (c *Client) http() *http.Client {
	hc := http.Client{Transport: defaultTransport}
	if c.HTTP != nil {
		hc = *c.HTTP
	}
	next := hc.CheckRedirect
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if prev := via[len(via)-1]; !sameOrigin(req.URL, prev.URL) {
			req.Header.Del("Authorization")
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	return &hc
}

// sameOrigin reports whether a and b have the same scheme and host:port.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host)
}

// authFor reports whether a request to u may carry the token: only to the
// hub's own endpoint (same scheme and host), never to a URL a user or the
// hub's answer names elsewhere.
func (c *Client) authFor(u string) bool {
	if c.Token == "" {
		return false
	}
	a, err1 := url.Parse(u)
	b, err2 := url.Parse(c.Endpoint)
	return err1 == nil && err2 == nil && sameOrigin(a, b)
}

func (c *Client) note(format string, args ...any) {
	if c.Note != nil {
		c.Note(fmt.Sprintf(format, args...))
	}
}

// Resolve returns the local model a reference names: from the cache when
// it is there and complete (no network), else pulled.
func (c *Client) Resolve(ctx context.Context, r Ref) (*Model, error) {
	if m, err := c.Cache.Local(r); err == nil {
		return m, nil
	}
	return c.Pull(ctx, r)
}

// Pull brings a model into the cache: it asks the hub which commit the
// revision is at and which file the reference names, and downloads what
// the cache lacks. With Offline it only looks in the cache. When the hub
// cannot be reached and the model was pulled before, the cached snapshot
// is used (and Note says so).
func (c *Client) Pull(ctx context.Context, r Ref) (*Model, error) {
	if c.Offline {
		return c.Cache.Local(r)
	}
	if r.URL != "" {
		return c.pullURL(ctx, r)
	}
	info, err := c.repoInfo(ctx, r)
	if err != nil {
		var he *Error
		if ctx.Err() == nil && (!errors.As(err, &he) || he.Kind == ErrDownload) {
			if m, lerr := c.Cache.Local(r); lerr == nil {
				c.note("the hub could not be reached (%v): using the cached snapshot %s of %s", err, m.Commit, r.Repo)
				return m, nil
			}
		}
		return nil, err
	}
	names := make([]string, 0, len(info.Siblings))
	byName := map[string]sibling{}
	for _, s := range info.Siblings {
		if !strings.HasSuffix(strings.ToLower(s.Name), ".gguf") || checkFile(s.Name) != "" {
			continue // not a model, or a name that could leave the cache ("../x.gguf"): never used
		}
		names = append(names, s.Name)
		byName[s.Name] = s
	}
	var files []string
	if r.File != "" {
		files = splitParts(r.File)
	} else if files, err = pick(r, names); err != nil {
		return nil, err
	}
	for _, f := range files {
		if _, ok := byName[f]; !ok {
			return nil, &Error{Code: CodeNotFound, Kind: ErrNotFound,
				Msg: fmt.Sprintf("%s: the repository has no file %q at %s (its GGUF files: %s)", r, f, r.Revision, ggufList(names))}
		}
	}
	for i, f := range files {
		if err := c.fetch(ctx, r.Repo, info.SHA, byName[f], i+1, len(files)); err != nil {
			return nil, err
		}
	}
	if err := c.Cache.writeRef(r.Repo, r.Revision, info.SHA); err != nil {
		return nil, err
	}
	return c.Cache.model(r, r.Repo, info.SHA, files), nil
}

// repoInfo is the hub's answer about a repository at a revision.
type repoInfo struct {
	SHA      string    `json:"sha"`
	Siblings []sibling `json:"siblings"`
}

type sibling struct {
	Name   string `json:"rfilename"`
	Size   int64  `json:"size"`
	BlobID string `json:"blobId"`
	LFS    *struct {
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
	} `json:"lfs"`
}

func (c *Client) newRequest(ctx context.Context, method, u string, auth bool) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	if auth && c.authFor(u) {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

func (c *Client) repoInfo(ctx context.Context, r Ref) (*repoInfo, error) {
	u := c.Endpoint + "/api/models/" + r.Repo + "/revision/" + url.PathEscape(r.Revision) + "?blobs=true"
	req, err := c.newRequest(ctx, http.MethodGet, u, true)
	if err != nil {
		return nil, err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, c.netError(ctx, r, err)
	}
	defer resp.Body.Close()
	if err := c.statusError(r, "", resp); err != nil {
		return nil, err
	}
	var info repoInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&info); err != nil {
		return nil, &Error{Code: CodeDownload, Kind: ErrDownload, Err: err,
			Msg: fmt.Sprintf("%s: the hub's file list could not be read: %v (is HF_ENDPOINT=%s a hub?)", r, err, c.Endpoint)}
	}
	if !validRevision(info.SHA) {
		return nil, &Error{Code: CodeDownload, Kind: ErrDownload,
			Msg: fmt.Sprintf("%s: the hub's answer names no valid commit (%q)", r, info.SHA)}
	}
	return &info, nil
}

func (c *Client) netError(ctx context.Context, r Ref, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return &Error{Code: CodeDownload, Kind: ErrDownload, Err: err,
		Msg: fmt.Sprintf("%s: cannot reach %s: %v (check the network, a proxy (HTTPS_PROXY) or HF_ENDPOINT; with the model in the cache, --offline or HF_HUB_OFFLINE=1 uses it)", r, c.Endpoint, err)}
}

// statusError turns a hub answer other than success into an Error.
func (c *Client) statusError(r Ref, file string, resp *http.Response) error {
	if resp.StatusCode/100 == 2 {
		return nil
	}
	what := r.String()
	if file != "" {
		what += " (" + file + ")"
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		if c.Token == "" {
			return &Error{Code: CodeUnauthorized, Kind: ErrUnauthorized,
				Msg: fmt.Sprintf("%s: the hub answered %s: the repository is gated or private (or does not exist); set HF_TOKEN to an access token of an account that has accepted the repository's terms", what, resp.Status)}
		}
		return &Error{Code: CodeUnauthorized, Kind: ErrUnauthorized,
			Msg: fmt.Sprintf("%s: the hub answered %s with the token of HF_TOKEN: the token lacks access; accept the repository's terms on its page with that account, or use a token with read access", what, resp.Status)}
	case http.StatusNotFound:
		return &Error{Code: CodeNotFound, Kind: ErrNotFound,
			Msg: fmt.Sprintf("%s: not found on %s (%s): check the owner, repository, revision and file names", what, c.Endpoint, resp.Status)}
	}
	return &Error{Code: CodeDownload, Kind: ErrDownload,
		Msg: fmt.Sprintf("%s: the hub answered %s: try again later", what, resp.Status)}
}

// pick chooses the files of the model a reference without a file names
// among a repository's files: the parts of its only model, of the model of
// the quantization asked for, or of DefaultQuant.
func pick(r Ref, files []string) ([]string, error) {
	var models []string // first parts
	for _, f := range files {
		if !strings.HasSuffix(strings.ToLower(f), ".gguf") {
			continue
		}
		if p := splitParts(f)[0]; !slices.Contains(models, p) {
			models = append(models, p)
		}
	}
	choose := func(q string) []string {
		var m []string
		for _, f := range models {
			if matchesQuant(f, q) {
				m = append(m, f)
			}
		}
		return m
	}
	var cands []string
	switch {
	case r.Quant != "":
		cands = choose(r.Quant)
		if len(cands) == 0 {
			return nil, &Error{Code: CodeNotFound, Kind: ErrNotFound,
				Msg: fmt.Sprintf("%s: no GGUF file of quantization %s in the repository (its GGUF files: %s); name one as hf.co/%s/FILE.gguf", r, r.Quant, ggufList(files), r.Repo)}
		}
	case len(models) == 0:
		return nil, &Error{Code: CodeNotFound, Kind: ErrNotFound,
			Msg: fmt.Sprintf("%s: the repository has no GGUF file (a safetensors checkpoint needs converting with llama.cpp's convert_hf_to_gguf.py)", r)}
	case len(models) == 1:
		cands = models
	default:
		cands = choose(DefaultQuant)
		if len(cands) == 0 {
			return nil, &Error{Code: CodeAmbiguous, Kind: ErrAmbiguous,
				Msg: fmt.Sprintf("%s: the repository has several GGUF models and none is %s: add :QUANT or /FILE.gguf (its GGUF files: %s)", r, DefaultQuant, ggufList(files))}
		}
	}
	if len(cands) > 1 {
		return nil, &Error{Code: CodeAmbiguous, Kind: ErrAmbiguous,
			Msg: fmt.Sprintf("%s: several files match (%s): name one as hf.co/%s/FILE.gguf", r, strings.Join(cands, ", "), r.Repo)}
	}
	return splitParts(cands[0]), nil
}

// ggufList names a repository's GGUF files for a message (split models once).
func ggufList(files []string) string {
	var out []string
	for _, f := range files {
		if strings.HasSuffix(strings.ToLower(f), ".gguf") {
			if p := splitParts(f)[0]; !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	if len(out) == 0 {
		return "none"
	}
	if len(out) > 16 {
		out = append(out[:16], fmt.Sprintf("and %d more", len(out)-16))
	}
	return strings.Join(out, ", ")
}

// fetch makes one file of a repository present in the snapshot.
func (c *Client) fetch(ctx context.Context, repo, commit string, s sibling, part, parts int) error {
	p := Progress{File: s.Name, Part: part, Parts: parts, Total: s.Size}
	want := ""
	blob := s.BlobID
	if s.LFS != nil && s.LFS.SHA256 != "" {
		want = strings.ToLower(s.LFS.SHA256)
		blob = want
		p.Total = s.LFS.Size
	}
	if !isHex(blob) {
		return &Error{Code: CodeDownload, Kind: ErrDownload,
			Msg: fmt.Sprintf("hf.co/%s/%s: the hub lists no checksum for the file (%q)", repo, s.Name, blob)}
	}
	if c.Cache.complete(repo, commit, []string{s.Name}) {
		if st, err := os.Stat(c.Cache.snapshotPath(repo, commit, s.Name)); err == nil && (p.Total < 0 || st.Size() == p.Total) {
			p.Done, p.Resumed, p.Cached, p.Finished = st.Size(), st.Size(), true, true
			c.progress(p)
			return nil
		}
	}
	unlock, err := c.Cache.lockBlob(ctx, repo, blob)
	if err != nil {
		return err
	}
	defer unlock()
	dest := c.Cache.blobPath(repo, blob)
	if st, err := os.Stat(dest); err == nil && st.Mode().IsRegular() && (p.Total < 0 || st.Size() == p.Total) {
		p.Done, p.Resumed, p.Cached, p.Finished = st.Size(), st.Size(), true, true
		c.progress(p)
		return c.Cache.link(repo, commit, s.Name, blob)
	}
	u := c.Endpoint + "/" + repo + "/resolve/" + url.PathEscape(commit) + "/" + escapePath(s.Name)
	sum, err := c.download(ctx, Ref{Repo: repo, Revision: commit, File: s.Name}, u, dest+".incomplete", want, &p)
	if err != nil {
		return err
	}
	if want != "" && sum != want {
		os.Remove(dest + ".incomplete")
		return &Error{Code: CodeChecksum, Kind: ErrChecksum,
			Msg: fmt.Sprintf("hf.co/%s/%s: the download's SHA-256 is %s but the hub publishes %s; the download was deleted and not used (a proxy or mirror altered it, or the disk is failing): pull again", repo, s.Name, sum, want)}
	}
	if want == "" {
		// Not an LFS file: the hub gives the git blob id, the SHA-1 of
		// "blob <size>\x00" and the content.
		got, err := gitBlobID(dest + ".incomplete")
		if err != nil {
			return err
		}
		if !strings.EqualFold(got, s.BlobID) {
			os.Remove(dest + ".incomplete")
			return &Error{Code: CodeChecksum, Kind: ErrChecksum,
				Msg: fmt.Sprintf("hf.co/%s/%s: the download's git blob id is %s but the hub lists %s; the download was deleted and not used: pull again", repo, s.Name, got, s.BlobID)}
		}
	}
	if err := os.Rename(dest+".incomplete", dest); err != nil {
		return err
	}
	return c.Cache.link(repo, commit, s.Name, blob)
}

func (c *Client) progress(p Progress) {
	if c.Progress != nil {
		c.Progress(p)
	}
}

func isHex(s string) bool {
	if len(s) < 8 || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// download fetches u into partial, resuming from the bytes already there
// and after dropped connections, and returns the SHA-256 of the whole file.
// The partial file stays when the download fails or is cancelled, for the
// next pull to resume.
func (c *Client) download(ctx context.Context, r Ref, u, partial, want string, p *Progress) (string, error) {
	if err := os.MkdirAll(filepath.Dir(partial), 0o755); err != nil {
		return "", err
	}
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	have, err := io.Copy(h, f) // the bytes of an earlier attempt
	if err != nil {
		return "", err
	}
	if p.Total >= 0 && have > p.Total {
		if err := restart(f, h); err != nil {
			return "", err
		}
		have = 0
	}
	// unverifiable: no checksum would catch a file that changed between
	// attempts, and no validator lets the server say whether it did (If-Range):
	// then a partial file is not resumed but fetched again.
	unverifiable := func() bool {
		_, err := os.Stat(partial + validatorSuffix)
		return have > 0 && want == "" && err != nil
	}
	if unverifiable() {
		if err := restart(f, h); err != nil {
			return "", err
		}
		have = 0
	}
	p.Done, p.Resumed = have, have
	c.progress(*p)
	wait := c.RetryWait
	for attempt := 0; ; attempt++ {
		if p.Total >= 0 && have == p.Total && have > 0 {
			break
		}
		if unverifiable() {
			if err := restart(f, h); err != nil {
				return "", err
			}
			have = 0
		}
		n, done, err := c.getRange(ctx, r, u, f, h, have, p)
		have = n
		if err == nil && done {
			break
		}
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		var he *Error
		if ctx.Err() != nil || errors.As(err, &he) || attempt >= c.Retries {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			if he != nil {
				return "", err
			}
			return "", &Error{Code: CodeDownload, Kind: ErrDownload, Err: err,
				Msg: fmt.Sprintf("%s: the transfer failed at byte %d of %d after %d attempts: %v; the %d bytes on disk are kept and the next pull resumes from them", r, have, p.Total, attempt+1, err, have)}
		}
		c.note("%s: transfer interrupted at byte %d (%v): resuming", r.File, have, err)
		if wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return "", ctx.Err()
			}
			wait *= 2
		}
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	os.Remove(partial + validatorSuffix)
	p.Done, p.Finished = have, true
	c.progress(*p)
	return hex.EncodeToString(h.Sum(nil)), nil
}

func restart(f *os.File, h hash.Hash) error {
	h.Reset()
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// getRange asks for u from byte have on and appends what comes to f and h.
// It returns the bytes now on disk and whether the file is complete.
func (c *Client) getRange(ctx context.Context, r Ref, u string, f *os.File, h hash.Hash, have int64, p *Progress) (int64, bool, error) {
	req, err := c.newRequest(ctx, http.MethodGet, u, true)
	if err != nil {
		return have, false, err
	}
	validator := f.Name() + validatorSuffix
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
		if v, err := os.ReadFile(validator); err == nil && len(v) > 0 {
			// Only the rest of the same file: a changed one comes whole (200).
			req.Header.Set("If-Range", string(v))
		}
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return have, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		// A fresh start: remember what identifies this version of the file,
		// for a later resume to ask for its rest only.
		if v := resp.Header.Get("ETag"); v != "" && !strings.HasPrefix(v, "W/") {
			writeFileAtomic(validator, []byte(v))
		} else if v := resp.Header.Get("Last-Modified"); v != "" {
			writeFileAtomic(validator, []byte(v))
		} else {
			os.Remove(validator)
		}
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if have > 0 { // the server ignored the range: start over
			if err := restart(f, h); err != nil {
				return have, false, err
			}
			have = 0
			c.note("%s: the server does not resume downloads: starting over", r.File)
		}
		if p.Total < 0 && resp.ContentLength >= 0 {
			p.Total = resp.ContentLength
		}
	case http.StatusPartialContent:
		start, total, ok := contentRange(resp.Header.Get("Content-Range"))
		if !ok || start != have {
			if err := restart(f, h); err != nil {
				return have, false, err
			}
			return 0, false, fmt.Errorf("the server sent bytes from %d, not %d (Content-Range %q)", start, have, resp.Header.Get("Content-Range"))
		}
		if p.Total < 0 && total >= 0 {
			p.Total = total
		}
	case http.StatusRequestedRangeNotSatisfiable:
		// What is on disk is longer than the file: start over.
		if err := restart(f, h); err != nil {
			return have, false, err
		}
		return 0, false, fmt.Errorf("the server refused the range from byte %d (%s)", have, resp.Status)
	default:
		if resp.StatusCode >= 500 {
			return have, false, fmt.Errorf("the server answered %s", resp.Status)
		}
		return have, false, c.statusError(r, r.File, resp)
	}
	// A connection that stops bringing bytes is closed, so the read fails
	// and the transfer is resumed instead of hanging.
	stallAfter := c.StallTimeout
	if stallAfter <= 0 {
		stallAfter = DefaultStallTimeout
	}
	var stalled atomic.Bool
	watchdog := time.AfterFunc(stallAfter, func() { stalled.Store(true); resp.Body.Close() })
	defer watchdog.Stop()
	buf := make([]byte, 1<<20)
	for {
		n, rerr := resp.Body.Read(buf)
		watchdog.Reset(stallAfter)
		if rerr != nil && stalled.Load() {
			rerr = fmt.Errorf("no data for %s: %w", stallAfter, rerr)
		}
		if n > 0 {
			// At the byte the hash has reached, whatever an earlier failed
			// write left: the file and the hash never disagree.
			if _, err := f.WriteAt(buf[:n], have); err != nil {
				f.Truncate(have)
				return have, false, fmt.Errorf("writing %s: %w", f.Name(), err)
			}
			h.Write(buf[:n])
			have += int64(n)
			p.Done = have
			c.progress(*p)
			if p.Total >= 0 && have > p.Total {
				return have, false, &Error{Code: CodeDownload, Kind: ErrDownload,
					Msg: fmt.Sprintf("%s: the server sent more than the %d bytes the hub lists", r, p.Total)}
			}
		}
		if rerr == io.EOF {
			return have, p.Total < 0 || have == p.Total, nil
		}
		if rerr != nil {
			return have, false, rerr
		}
	}
}

// contentRange reads "bytes START-END/TOTAL" (TOTAL may be "*": -1).
func contentRange(s string) (start, total int64, ok bool) {
	s, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(s, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}

// pullURL downloads a plain URL into the cache, under url/<hash>. Without a
// published checksum only the length is checked; the blob is named by the
// SHA-256 of what arrived.
func (c *Client) pullURL(ctx context.Context, r Ref) (*Model, error) {
	repo := urlRepo(r.URL)
	const commit = "url"
	file := urlFile(r.URL)
	if c.Cache.complete(repo, commit, []string{file}) {
		m := c.Cache.model(r, repo, commit, []string{file})
		c.progress(Progress{File: file, Part: 1, Parts: 1, Total: m.Size, Done: m.Size, Resumed: m.Size, Cached: true, Finished: true})
		return m, nil
	}
	sum := sha256.Sum256([]byte(r.URL))
	unlock, err := c.Cache.lockBlob(ctx, repo, "url-"+hex.EncodeToString(sum[:]))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if c.Cache.complete(repo, commit, []string{file}) { // pulled by another process meanwhile
		return c.Cache.model(r, repo, commit, []string{file}), nil
	}
	partial := c.Cache.blobPath(repo, "url-"+hex.EncodeToString(sum[:])+".incomplete")
	p := &Progress{File: file, Part: 1, Parts: 1, Total: -1}
	got, err := c.download(ctx, Ref{URL: r.URL, File: file}, r.URL, partial, "", p)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(partial, c.Cache.blobPath(repo, got)); err != nil {
		return nil, err
	}
	if err := c.Cache.link(repo, commit, file, got); err != nil {
		return nil, err
	}
	if err := c.Cache.writeRef(repo, DefaultRevision, commit); err != nil {
		return nil, err
	}
	// The URL itself, for List to name the model by it.
	if err := writeFileAtomic(filepath.Join(c.Cache.RepoDir(repo), urlNote), []byte(r.URL+"\n")); err != nil {
		return nil, err
	}
	return c.Cache.model(r, repo, commit, []string{file}), nil
}

// validatorSuffix names the file beside a partial download that holds the
// server's ETag (or Last-Modified) of the version being fetched.
const validatorSuffix = ".validator"

// gitBlobID is the git object id of the file at p: the SHA-1 of
// "blob <size>\x00" followed by the content.
func gitBlobID(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", st.Size())
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
