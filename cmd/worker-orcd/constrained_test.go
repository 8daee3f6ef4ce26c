package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"worker-orcd/internal/testmodel"
)

// TestGenerateConstrained: generate --json-schema-file and --grammar-file
// hold the output to the language on a random-weight model at temperature
// 1; a grammar that does not compile is one line naming the file and the
// position.
func TestGenerateConstrained(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "m.gguf")
	if err := testmodel.MustPreset("qwen2-micro").Write(model); err != nil {
		t.Fatal(err)
	}
	schema := filepath.Join(dir, "s.json")
	os.WriteFile(schema, []byte(`{"type":"object","properties":{"n":{"type":"integer"},"ok":{"type":"boolean"}},"required":["n","ok"],"additionalProperties":false}`), 0o644)
	gbnf := filepath.Join(dir, "g.gbnf")
	os.WriteFile(gbnf, []byte("root ::= (\"- \" [a-z]{1,5} \"\\n\"){1,3}\n"), 0o644)
	bad := filepath.Join(dir, "bad.gbnf")
	os.WriteFile(bad, []byte(`root ::= "a" (`), 0o644)
	for _, seed := range []string{"1", "2", "3"} {
		code, out, errOut := runCLI("generate", "--model", model, "--prompt", "hi", "--temperature", "1", "--seed", seed,
			"--max-tokens", "100", "--json-schema-file", schema, "--json", "--device", "cpu")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var gen generateJSON
		if err := json.Unmarshal([]byte(out), &gen); err != nil {
			t.Fatal(err)
		}
		var v struct {
			N  *int
			Ok *bool
		}
		if err := json.Unmarshal([]byte(gen.Text), &v); err != nil || v.N == nil || v.Ok == nil || gen.StopReason != "grammar" {
			t.Errorf("seed %s: %q (%s): %v", seed, gen.Text, gen.StopReason, err)
		}
		code, out, errOut = runCLI("generate", "--model", model, "--prompt", "hi", "--temperature", "1", "--seed", seed,
			"--max-tokens", "100", "--grammar-file", gbnf, "--device", "cpu")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		// The text, then the newline generate ends its output with.
		text := strings.TrimSuffix(out, "\n")
		lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
		if len(lines) < 1 || len(lines) > 3 || !strings.HasSuffix(text, "\n") {
			t.Errorf("seed %s: %q", seed, out)
		}
		for _, l := range lines {
			if w, ok := strings.CutPrefix(l, "- "); !ok || len(w) < 1 || len(w) > 5 || strings.Trim(w, "abcdefghijklmnopqrstuvwxyz") != "" {
				t.Errorf("seed %s: line %q", seed, l)
			}
		}
	}
	code, _, errOut := runCLI("generate", "--model", model, "--prompt", "hi", "--grammar-file", bad, "--device", "cpu")
	if code != 1 || !strings.Contains(errOut, "bad.gbnf") || !strings.Contains(errOut, "line 1, column 14") {
		t.Errorf("bad grammar: exit %d, %q", code, errOut)
	}
	code, _, errOut = runCLI("generate", "--model", model, "--prompt", "hi", "--grammar-file", gbnf, "--json-schema-file", schema, "--device", "cpu")
	if code != 1 || !strings.Contains(errOut, "not both") {
		t.Errorf("both: exit %d, %q", code, errOut)
	}
}
