package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"worker-orcd/gguf"
	"worker-orcd/internal/fixtures"
)

func TestTokenizeJSON(t *testing.T) {
	phi3 := fixtures.VocabPath(t, "phi3")
	code, out, errOut := runCLI("tokenize", "--model", phi3, "--json", "日本語のテキスト 👋")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := `{"ids":[1,29871,30325,30346,30968,30199,30572,30454,30255,30279,29871,243,162,148,142],` +
		`"pieces":["<s>"," ","日","本","語","の","テ","キ","ス","ト"," ",[240],[159],[145],[139]]}` + "\n"
	if out != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	// --no-special drops BOS; --parse-special matches <|user|>.
	code, out, _ = runCLI("tokenize", "--model", phi3, "--json", "--no-special", "--parse-special", "<|user|>Hi")
	var r struct{ IDs []int32 }
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || len(r.IDs) == 0 || r.IDs[0] != 32010 {
		t.Errorf("exit %d, %s", code, out)
	}
}

func TestTokenizeText(t *testing.T) {
	qwen := fixtures.VocabPath(t, "qwen2")
	code, out, errOut := runCLI("tokenize", "--model", qwen, "Hello, my name is")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if want := "9707\t\"Hello\"\n11\t\",\"\n847\t\" my\"\n829\t\" name\"\n374\t\" is\"\n"; out != want {
		t.Errorf("got %q want %q", out, want)
	}
}

func TestTokenizeErrors(t *testing.T) {
	code, _, errOut := runCLI("tokenize", "x")
	if code != 1 || !strings.Contains(errOut, "--model is required") {
		t.Errorf("exit %d: %s", code, errOut)
	}
	// A GGUF file without tokenizer data.
	b := gguf.NewBuilder()
	b.Set("general.architecture", "qwen2")
	p := filepath.Join(t.TempDir(), "empty.gguf")
	if err := b.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI("tokenize", "--model", p, "x")
	if want := `GGUFError: Metadata key not found: "tokenizer.ggml.tokens"`; code != 1 || !strings.Contains(errOut, want) ||
		strings.Count(errOut, "\n") != 1 {
		t.Errorf("exit %d: %q, want one line with %s", code, errOut, want)
	}
}

func TestTokenizeStdin(t *testing.T) {
	qwen := fixtures.VocabPath(t, "qwen2")
	root := newRootCmd()
	var out strings.Builder
	root.SetArgs([]string{"tokenize", "--model", qwen, "--json"})
	root.SetIn(strings.NewReader("Hi\n"))
	root.SetOut(&out)
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if want := `{"ids":[13048,198],"pieces":["Hi","\n"]}` + "\n"; out.String() != want {
		t.Errorf("got %q want %q", out.String(), want)
	}
}
