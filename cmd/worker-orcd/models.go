package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"worker-orcd/gguf"
	"worker-orcd/hub"
)

// DefaultModelRef is what `serve` runs without --model (or WORKER_MODEL).
const DefaultModelRef = "hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M"

// modelHelp is the --model flag's help, the same for every command.
const modelHelp = "GGUF model: a file, or a reference pulled into the Hugging Face cache on first use (hf.co/OWNER/REPO:QUANT, hf.co/OWNER/REPO/FILE.gguf, a URL)"

// newHubClient is the hub client the commands use: configured from the
// environment (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE, HF_HUB_CACHE/HF_HOME),
// --offline, and progress on stderr.
func newHubClient(stderr io.Writer) *hub.Client {
	c := hub.NewClientFromEnv()
	if globals.offline {
		c.Offline = true
	}
	c.UserAgent = "worker-orcd/" + versionString()
	pr := newProgressPrinter(stderr)
	c.Progress = pr.update
	c.Note = func(msg string) { fmt.Fprintln(stderr, "worker-orcd: note:", msg) }
	return c
}

// resolveModel turns a --model value into a local file: a path is used as
// it is; a reference is looked up in the cache and pulled when absent. A
// split model comes back as one file (see joinSplit).
func resolveModel(ctx context.Context, s string, stderr io.Writer) (string, error) {
	if s == "" || !hub.LooksLikeRef(s) {
		return s, nil
	}
	if _, err := os.Stat(s); err == nil {
		return s, nil // a local file that happens to look like a reference
	}
	r, err := hub.ParseRef(s)
	if err != nil {
		return "", err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	m, err := newHubClient(stderr).Resolve(ctx, r)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return "", fmt.Errorf("pull of %s interrupted: the bytes downloaded are kept and the next pull resumes", r)
		}
		return "", err
	}
	return modelFile(m, stderr)
}

// modelFile is the one file to load for a cached model.
func modelFile(m *hub.Model, stderr io.Writer) (string, error) {
	if len(m.Paths) == 1 {
		return m.Path(), nil
	}
	return joinSplit(m, stderr)
}

// joinedDir is where split models are joined into one file:
// $WORKER_CACHE_DIR, else $XDG_CACHE_HOME/worker-orcd/joined, else
// ~/.cache/worker-orcd/joined.
func joinedDir() string {
	if d := os.Getenv("WORKER_CACHE_DIR"); d != "" {
		return filepath.Join(d, "joined")
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "worker-orcd", "joined")
}

// joinedPath is where joinSplit puts a split model's one file.
func joinedPath(m *hub.Model) string {
	base := filepath.Base(m.Files[0])
	if i := strings.LastIndex(base, "-00001-of-"); i > 0 {
		base = base[:i] + ".gguf"
	}
	return filepath.Join(joinedDir(), strings.ReplaceAll(m.Repo, "/", "--"), m.Commit, base)
}

// joinSplit writes the parts of a split GGUF model (NAME-0000k-of-0000N.gguf,
// as llama.cpp's gguf-split writes them) as one GGUF file and returns its
// path; a join made before is reused. The loader maps one file, so a split
// model needs its size again on disk.
func joinSplit(m *hub.Model, stderr io.Writer) (string, error) {
	out := joinedPath(m)
	dir := filepath.Dir(out)
	if st, err := os.Stat(out); err == nil && st.Mode().IsRegular() {
		// Reused only when it parses as a whole GGUF file (a join cut short
		// by a crash is never renamed into place, but a damaged disk or a
		// hand-copied file could be anything).
		if f, err := gguf.Open(out); err == nil {
			f.Close()
			return out, nil
		}
		os.Remove(out)
	}
	fmt.Fprintf(stderr, "worker-orcd: joining the %d parts of %s into %s (%s)\n", len(m.Paths), m.Ref, out, humanBytes(m.Size))
	var files []*gguf.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	b := gguf.NewBuilder()
	for i, p := range m.Paths {
		f, err := gguf.Open(p)
		if err != nil {
			return "", fmt.Errorf("split model part %d of %d (%s): %w", i+1, len(m.Paths), p, err)
		}
		files = append(files, f)
		if i == 0 {
			for _, kv := range f.KV {
				if !strings.HasPrefix(kv.Key, "split.") {
					b.Set(kv.Key, kv.Value)
				}
			}
		}
		for j := range f.Tensors {
			t := &f.Tensors[j]
			if err := b.AddTensor(t.Name, t.Type, t.Dims, f.TensorData(t)); err != nil {
				return "", fmt.Errorf("split model part %d of %d (%s): %w", i+1, len(m.Paths), p, err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// A temporary file of this process's own: two workers joining the same
	// model at once each write theirs, and the renames leave one whole file.
	f, err := os.CreateTemp(dir, "."+filepath.Base(out)+".*.incomplete")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	f.Close()
	if err := b.WriteFile(tmp); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("joining the split model into %s: %w", out, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return out, os.Rename(tmp, out)
}

// progressPrinter shows downloads on stderr: a progress bar (bytes, rate,
// ETA) on a terminal, otherwise a line every few seconds and at the end.
type progressPrinter struct {
	w   io.Writer
	tty bool

	mu       sync.Mutex
	bar      *progressbar.ProgressBar
	file     string
	start    time.Time
	lastLine time.Time
}

// progressEvery is how often a download logs a line when stderr is not a
// terminal.
var progressEvery = 5 * time.Second

func newProgressPrinter(w io.Writer) *progressPrinter {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &progressPrinter{w: w, tty: tty}
}

func (p *progressPrinter) update(ev hub.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name := ev.File
	if ev.Parts > 1 {
		name = fmt.Sprintf("%s (part %d of %d)", ev.File, ev.Part, ev.Parts)
	}
	if ev.Cached {
		fmt.Fprintf(p.w, "worker-orcd: %s: in the cache (%s)\n", name, humanBytes(ev.Done))
		return
	}
	if name != p.file { // a new download
		p.file, p.start, p.lastLine = name, time.Now(), time.Now()
		if ev.Resumed > 0 {
			fmt.Fprintf(p.w, "worker-orcd: %s: resuming at %s of %s\n", name, humanBytes(ev.Resumed), sizeOrUnknown(ev.Total))
		} else {
			fmt.Fprintf(p.w, "worker-orcd: %s: downloading %s\n", name, sizeOrUnknown(ev.Total))
		}
		if p.tty {
			p.bar = progressbar.NewOptions64(ev.Total,
				progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription(filepathBase(ev.File)),
				progressbar.OptionShowBytes(true),
				progressbar.OptionShowTotalBytes(true),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
			)
			p.bar.Set64(ev.Done)
		}
	}
	if p.bar != nil {
		p.bar.Set64(ev.Done)
		if ev.Finished {
			p.bar.Finish()
			p.bar = nil
		}
	} else if time.Since(p.lastLine) >= progressEvery || ev.Finished {
		p.lastLine = time.Now()
		elapsed := time.Since(p.start).Seconds()
		rate := float64(ev.Done-ev.Resumed) / max(elapsed, 1e-3)
		line := fmt.Sprintf("worker-orcd: %s: %s of %s", name, humanBytes(ev.Done), sizeOrUnknown(ev.Total))
		if ev.Total > 0 {
			line += fmt.Sprintf(" (%.0f%%)", 100*float64(ev.Done)/float64(ev.Total))
		}
		line += fmt.Sprintf(", %s/s", humanBytes(int64(rate)))
		if ev.Total > 0 && rate > 0 && !ev.Finished {
			line += ", ETA " + time.Duration(float64(ev.Total-ev.Done)/rate*float64(time.Second)).Round(time.Second).String()
		}
		if ev.Finished {
			line += ", done"
		}
		fmt.Fprintln(p.w, line)
	}
	if ev.Finished {
		p.file = ""
	}
}

func sizeOrUnknown(n int64) string {
	if n < 0 {
		return "an unknown size"
	}
	return humanBytes(n)
}

func filepathBase(p string) string { return filepath.Base(filepath.FromSlash(p)) }

// explainFileError gives a model file's GGUFError for a file that is not
// GGUF at all the reason gguf.Sniff finds (a Git LFS pointer, an HTML page,
// a safetensors file, zeros, …), the same words doctor's file.magic check
// uses, instead of a guess. Other errors pass unchanged.
func explainFileError(path string, err error) error {
	var ge *gguf.Error
	if !errors.As(err, &ge) || !errors.Is(err, gguf.ErrBadMagic) {
		return err
	}
	fh, oerr := os.Open(path)
	if oerr != nil {
		return err
	}
	defer fh.Close()
	st, serr := fh.Stat()
	if serr != nil {
		return err
	}
	s, serr := gguf.Sniff(fh, st.Size())
	if serr != nil || s.Kind == gguf.KindGGUF {
		return err
	}
	msg := ge.Msg
	if i := strings.LastIndex(msg, "): "); i >= 0 {
		msg = msg[:i+1] // gguf's own guess goes; Sniff's reason replaces it
	}
	return &gguf.Error{Offset: ge.Offset, Kind: ge.Kind, Err: ge.Err, Msg: msg + ": " + s.Hint()}
}
