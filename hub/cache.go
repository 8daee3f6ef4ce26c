package hub

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultCacheDir is the hub cache the hub's own tools use:
// $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub,
// else ~/.cache/huggingface/hub.
func DefaultCacheDir() string {
	if d := os.Getenv("HF_HUB_CACHE"); d != "" {
		return expandHome(d)
	}
	if d := os.Getenv("HF_HOME"); d != "" {
		return filepath.Join(expandHome(d), "hub")
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(expandHome(d), "huggingface", "hub")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "huggingface", "hub")
	}
	return filepath.Join(home, ".cache", "huggingface", "hub")
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

// Cache is a hub cache directory.
type Cache struct{ Dir string }

// repoFolder is the folder of a repository in the cache: models--OWNER--REPO.
func repoFolder(repo string) string { return "models--" + strings.ReplaceAll(repo, "/", "--") }

// urlRepo is the pseudo-repository a plain URL is cached under: url/<hash>,
// so that its files live in the same layout.
func urlRepo(u string) string {
	sum := sha256.Sum256([]byte(u))
	return "url/" + hex.EncodeToString(sum[:8])
}

// urlNote is the file in a URL's pseudo-repository folder that holds the URL.
const urlNote = "url.txt"

// urlFile is the file name a plain URL is cached as.
func urlFile(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return "model.gguf"
	}
	return path.Base(pu.Path)
}

// RepoDir is the folder of a repository in the cache.
func (c Cache) RepoDir(repo string) string { return filepath.Join(c.Dir, repoFolder(repo)) }

func (c Cache) blobPath(repo, blob string) string {
	return filepath.Join(c.RepoDir(repo), "blobs", blob)
}

func (c Cache) snapshotPath(repo, commit, file string) string {
	return filepath.Join(c.RepoDir(repo), "snapshots", commit, filepath.FromSlash(file))
}

// readRef returns the commit a revision pointed to when last pulled.
func (c Cache) readRef(repo, rev string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(c.RepoDir(repo), "refs", rev))
	if err == nil {
		s := strings.TrimSpace(string(b))
		return s, s != "" && validRevision(s)
	}
	// A revision that is itself a commit has no ref file.
	if st, err := os.Stat(filepath.Join(c.RepoDir(repo), "snapshots", rev)); err == nil && st.IsDir() {
		return rev, true
	}
	return "", false
}

func (c Cache) writeRef(repo, rev, commit string) error {
	if rev == commit {
		return nil
	}
	dir := filepath.Join(c.RepoDir(repo), "refs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, rev), []byte(commit))
}

// writeFileAtomic replaces p with b through a temporary file of its own
// (two processes sharing a cache never write the same temporary file).
func writeFileAtomic(p string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(b)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp, 0o644)
	}
	if werr != nil {
		os.Remove(tmp)
		return werr
	}
	return os.Rename(tmp, p)
}

// link makes snapshots/<commit>/<file> a relative symbolic link to the blob,
// as the hub's tools do.
func (c Cache) link(repo, commit, file, blob string) error {
	if !filepath.IsLocal(filepath.FromSlash(file)) || !filepath.IsLocal(blob) {
		return fmt.Errorf("hub: refusing to link %q to blob %q: the path would leave the cache", file, blob)
	}
	snap := c.snapshotPath(repo, commit, file)
	if err := os.MkdirAll(filepath.Dir(snap), 0o755); err != nil {
		return err
	}
	target, err := filepath.Rel(filepath.Dir(snap), c.blobPath(repo, blob))
	if err != nil {
		return err
	}
	os.Remove(snap)
	return os.Symlink(target, snap)
}

// snapshotFiles lists the .gguf files of a snapshot, as slash paths, sorted.
func (c Cache) snapshotFiles(repo, commit string) []string {
	root := filepath.Join(c.RepoDir(repo), "snapshots", commit)
	var files []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(strings.ToLower(p), ".gguf") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err == nil {
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(files)
	return files
}

// complete reports whether every part is in the snapshot, each a file (or a
// link to one) that exists.
func (c Cache) complete(repo, commit string, parts []string) bool {
	for _, p := range parts {
		st, err := os.Stat(c.snapshotPath(repo, commit, p))
		if err != nil || !st.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// Local finds a reference in the cache without the network: the model as
// last pulled. It fails with ErrOffline when the model is not there.
func (c Cache) Local(r Ref) (*Model, error) {
	repo, rev := r.Repo, r.Revision
	if r.URL != "" {
		repo, rev = urlRepo(r.URL), DefaultRevision
	}
	notCached := func(why string) (*Model, error) {
		return nil, &Error{Code: CodeOffline, Kind: ErrOffline,
			Msg: fmt.Sprintf("%s is not in the cache %s (%s) and the network may not be used (--offline or HF_HUB_OFFLINE): pull it once with network access, or pass a local --model file", r, c.Dir, why)}
	}
	commit, ok := c.readRef(repo, rev)
	if !ok {
		return notCached("never pulled")
	}
	var files []string
	switch {
	case r.URL != "":
		files = []string{urlFile(r.URL)}
	case r.File != "":
		files = splitParts(r.File)
	default:
		var err error
		if files, err = pick(r, c.snapshotFiles(repo, commit)); err != nil {
			var he *Error
			if errors.As(err, &he) && he.Kind == ErrNotFound {
				return notCached("no matching file was pulled")
			}
			return nil, err
		}
	}
	if !c.complete(repo, commit, files) {
		return notCached("the file is missing or incomplete in the snapshot")
	}
	return c.model(r, repo, commit, files), nil
}

func (c Cache) model(r Ref, repo, commit string, files []string) *Model {
	m := &Model{Ref: r, Repo: repo, Commit: commit, Files: files}
	for _, f := range files {
		p := c.snapshotPath(repo, commit, f)
		m.Paths = append(m.Paths, p)
		if st, err := os.Stat(p); err == nil {
			m.Size += st.Size()
		}
	}
	return m
}

// Model is a model in the cache: its files (one, or the parts of a split
// model in order) and where they are.
type Model struct {
	Ref    Ref
	Repo   string   // OWNER/REPO (url/<hash> for a plain URL)
	Commit string   // the snapshot
	Files  []string // paths inside the repository
	Paths  []string // the files in the snapshot, in the same order
	Size   int64    // bytes, all parts together
}

// Path is the model's file: the first part of a split model.
func (m *Model) Path() string { return m.Paths[0] }

// Entry is one model in the cache, as List gives it.
type Entry struct {
	Ref  Ref    // a reference that names exactly this model: hf.co/OWNER/REPO[@COMMIT]/FILE
	Repo string // OWNER/REPO
	Model
}

// List returns every GGUF model in the cache (split parts together as one),
// sorted by reference. Snapshots other than the one a ref points to are
// listed with their commit in the reference.
func (c Cache) List() ([]Entry, error) {
	dirs, err := os.ReadDir(c.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, d := range dirs {
		name, ok := strings.CutPrefix(d.Name(), "models--")
		if !ok || !d.IsDir() {
			continue
		}
		repo := strings.Replace(name, "--", "/", 1)
		current := map[string]bool{}
		if refs, err := os.ReadDir(filepath.Join(c.Dir, d.Name(), "refs")); err == nil {
			for _, rf := range refs {
				if commit, ok := c.readRef(repo, rf.Name()); ok && rf.Name() == DefaultRevision {
					current[commit] = true
				}
			}
		}
		snaps, _ := os.ReadDir(filepath.Join(c.Dir, d.Name(), "snapshots"))
		for _, s := range snaps {
			files := c.snapshotFiles(repo, s.Name())
			seen := map[string]bool{}
			for _, f := range files {
				parts := splitParts(f)
				if seen[parts[0]] {
					continue
				}
				seen[parts[0]] = true
				if !c.complete(repo, s.Name(), parts) {
					continue
				}
				r := Ref{Repo: repo, Revision: DefaultRevision, File: parts[0]}
				if !current[s.Name()] {
					r.Revision = s.Name()
				}
				if b, err := os.ReadFile(filepath.Join(c.Dir, d.Name(), urlNote)); err == nil && strings.HasPrefix(repo, "url/") {
					if u, err := ParseRef(strings.TrimSpace(string(b))); err == nil && u.URL != "" && urlRepo(u.URL) == repo {
						r = u
					}
				}
				m := c.model(r, repo, s.Name(), parts)
				out = append(out, Entry{Ref: r, Repo: repo, Model: *m})
			}
		}
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Ref.String(), b.Ref.String()) })
	return out, nil
}

// Remove deletes a model from the cache: its snapshot links, the blobs no
// other snapshot file of the repository links to, and the repository's
// folder when nothing is left in it. It returns the files removed.
func (c Cache) Remove(r Ref) ([]string, error) {
	m, err := c.Local(r)
	if err != nil {
		return nil, &Error{Code: CodeNotFound, Kind: ErrNotFound, Msg: fmt.Sprintf("%s is not in the cache %s (worker-orcd list shows what is)", r, c.Dir)}
	}
	var removed []string
	blobs := map[string]bool{}
	for _, p := range m.Paths {
		if t, err := filepath.EvalSymlinks(p); err == nil && t != p {
			blobs[t] = true
		}
		if err := os.Remove(p); err != nil {
			return removed, err
		}
		removed = append(removed, p)
	}
	// Blobs still linked from another snapshot stay.
	snaps := filepath.Join(c.RepoDir(m.Repo), "snapshots")
	filepath.WalkDir(snaps, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if t, err := filepath.EvalSymlinks(p); err == nil {
				delete(blobs, t)
			}
		}
		return nil
	})
	// Only blobs of this repository's blobs/ folder are deleted: a link
	// that points anywhere else (made by hand, or by another tool) never
	// makes rm delete a file outside the cache.
	blobDir, _ := filepath.EvalSymlinks(filepath.Join(c.RepoDir(m.Repo), "blobs"))
	for b := range blobs {
		if rel, err := filepath.Rel(blobDir, b); blobDir == "" || err != nil || !filepath.IsLocal(rel) {
			continue
		}
		if os.Remove(b) == nil {
			removed = append(removed, b)
		}
	}
	pruneEmpty(snaps)
	if n, _ := os.ReadDir(snaps); len(n) == 0 {
		if err := os.RemoveAll(c.RepoDir(m.Repo)); err != nil {
			return removed, err
		}
		os.RemoveAll(filepath.Join(c.Dir, ".locks", repoFolder(m.Repo)))
	}
	return removed, nil
}

// pruneEmpty removes the empty folders under dir (not dir itself).
func pruneEmpty(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			p := filepath.Join(dir, e.Name())
			pruneEmpty(p)
			os.Remove(p) // fails unless empty
		}
	}
}
