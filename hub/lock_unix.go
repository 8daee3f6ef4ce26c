//go:build unix

package hub

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// lockBlob takes an exclusive lock on a blob while it is downloaded, so that
// two processes pulling the same file (workers sharing a cache volume) do
// not write one partial file at once: the second waits, then finds the
// blob complete. The lock file is <cache>/.locks/models--OWNER--REPO/<blob>.lock,
// where the hub's own tools keep theirs.
func (c Cache) lockBlob(ctx context.Context, repo, blob string) (unlock func(), err error) {
	p := filepath.Join(c.Dir, ".locks", repoFolder(repo), blob+".lock")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
