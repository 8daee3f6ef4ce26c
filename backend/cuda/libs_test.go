package cuda

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenLibraryNamesFailedPaths: a library found but not loadable (here
// not an ELF file) is named in the error with the loader's reason, besides
// the places searched.
func TestOpenLibraryNamesFailedPaths(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "libworker-orcd-test.so.1")
	if err := os.WriteFile(bad, []byte("not a shared object"), 0o644); err != nil {
		t.Fatal(err)
	}
	var attempts []LibraryAttempt
	_, err := openLibrary([]string{"libworker-orcd-test.so.1"}, []string{dir, "/nonexistent-dir"}, &attempts)
	if !errors.Is(err, ErrLibraryNotFound) {
		t.Fatalf("error %v, want ErrLibraryNotFound", err)
	}
	if !strings.Contains(err.Error(), bad+": ") || !strings.Contains(err.Error(), "/nonexistent-dir") {
		t.Errorf("error %q does not name the unloadable file with its reason and the places searched", err)
	}
	if len(attempts) != 1 || attempts[0].Path != bad || attempts[0].Err == "" {
		t.Errorf("attempts %+v", attempts)
	}
}
