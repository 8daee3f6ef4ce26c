package engine

import (
	"path/filepath"
	"testing"

	"worker-orcd/internal/testmodel"
	"worker-orcd/model"
	"worker-orcd/tokenizer"
)

// openSpec writes spec's synthetic model into the test's temporary folder
// and opens it with its tokenizer; the model is closed when the test ends.
func openSpec(t *testing.T, spec testmodel.Spec) (*model.Model, *tokenizer.Tokenizer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := spec.Write(path); err != nil {
		t.Fatal(err)
	}
	m, err := model.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tok, err := tokenizer.FromGGUF(m.File)
	if err != nil {
		t.Fatal(err)
	}
	return m, tok
}
