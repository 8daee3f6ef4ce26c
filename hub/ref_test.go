package hub

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseRef(t *testing.T) {
	tests := []struct {
		in   string
		want Ref
		bad  string // part of the error, when the reference is refused
	}{
		{in: "hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M", want: Ref{Repo: "Qwen/Qwen2.5-0.5B-Instruct-GGUF", Revision: "main", Quant: "Q4_K_M"}},
		{in: "hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF", want: Ref{Repo: "Qwen/Qwen2.5-0.5B-Instruct-GGUF", Revision: "main"}},
		{in: "huggingface.co/a/b:q8_0", want: Ref{Repo: "a/b", Revision: "main", Quant: "q8_0"}},
		{in: "hf.co/a/b/model-q4_k_m.gguf", want: Ref{Repo: "a/b", Revision: "main", File: "model-q4_k_m.gguf"}},
		{in: "hf.co/a/b/sub/dir/m-00001-of-00003.gguf", want: Ref{Repo: "a/b", Revision: "main", File: "sub/dir/m-00001-of-00003.gguf"}},
		{in: "hf.co/a/b@v1.0:Q8_0", want: Ref{Repo: "a/b", Revision: "v1.0", Quant: "Q8_0"}},
		{in: "hf.co/a/b@0123456789abcdef0123456789abcdef01234567/m.gguf", want: Ref{Repo: "a/b", Revision: "0123456789abcdef0123456789abcdef01234567", File: "m.gguf"}},
		{in: "https://huggingface.co/a/b/resolve/main/m.gguf", want: Ref{Repo: "a/b", Revision: "main", File: "m.gguf"}},
		{in: "https://huggingface.co/a/b/blob/dev/x/m.gguf", want: Ref{Repo: "a/b", Revision: "dev", File: "x/m.gguf"}},
		{in: "https://example.test/models/m.gguf", want: Ref{URL: "https://example.test/models/m.gguf"}},
		{in: "http://127.0.0.1:8000/m.GGUF?sig=1", want: Ref{URL: "http://127.0.0.1:8000/m.GGUF?sig=1"}},

		{in: "model.gguf", bad: "not a model reference"},
		{in: "hf.co/", bad: "no repository"},
		{in: "hf.co/onlyowner", bad: "no repository"},
		{in: "hf.co/a/b/model.bin", bad: "not a .gguf file"},
		{in: "hf.co/a/b/../../etc/x.gguf", bad: "'..'"},
		{in: "hf.co/a/b//x.gguf", bad: "empty"},
		{in: "hf.co/a/b/.hidden.gguf", bad: "hidden"},
		{in: "hf.co/a/b:", bad: "quantization"},
		{in: "hf.co/a/b:Q4 K", bad: "quantization"},
		{in: "hf.co/a/b@:Q4", bad: "revision"},
		{in: "hf.co/a/b@x..y", bad: "revision"},
		{in: "hf.co/a--x/b", bad: "repository"},
		{in: "hf.co/../b", bad: "repository"},
		{in: "hf.co/a/b./m.gguf", bad: "repository"},
		{in: "https://huggingface.co/a/b", bad: "hub URL"},
		{in: "https://user:pw@example.test/m.gguf", bad: "valid URL"},
		{in: "https://example.test/", bad: "does not end in a .gguf"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRef(tc.in)
			if tc.bad != "" {
				if err == nil || !errors.Is(err, ErrBadRef) || !strings.Contains(err.Error(), tc.bad) {
					t.Fatalf("ParseRef(%q) = %+v, %v; want an InvalidModelRef error with %q", tc.in, got, err, tc.bad)
				}
				if !strings.HasPrefix(err.Error(), "InvalidModelRef: ") {
					t.Errorf("error %q does not start with its code", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("ParseRef(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			back, err := ParseRef(got.String())
			if err != nil || back != got {
				t.Fatalf("round trip through %q: %+v, %v", got.String(), back, err)
			}
			if !LooksLikeRef(tc.in) {
				t.Errorf("LooksLikeRef(%q) = false", tc.in)
			}
		})
	}
	for _, p := range []string{"model.gguf", "./hf.co/a/b", "/models/x.gguf", "C:\\x.gguf"} {
		if LooksLikeRef(p) {
			t.Errorf("LooksLikeRef(%q) = true, want a path", p)
		}
	}
}

func TestMatchesQuantAndSplit(t *testing.T) {
	tests := []struct {
		file, quant string
		want        bool
	}{
		{"qwen2.5-0.5b-instruct-q4_k_m.gguf", "Q4_K_M", true},
		{"Model.Q4_K_M.gguf", "q4_k_m", true},
		{"dir/model-Q8_0-00002-of-00003.gguf", "Q8_0", true},
		{"model-IQ4_K_M.gguf", "Q4_K_M", false},
		{"model-Q4_K_M.gguf", "Q4_K", false},
		{"model-Q4_K_M.bin", "Q4_K_M", false},
		{"Q4_K_M.gguf", "Q4_K_M", true},
	}
	for _, tc := range tests {
		if got := matchesQuant(tc.file, tc.quant); got != tc.want {
			t.Errorf("matchesQuant(%q, %q) = %v, want %v", tc.file, tc.quant, got, tc.want)
		}
	}
	if got := splitParts("d/m-00002-of-00003.gguf"); !slices.Equal(got, []string{"d/m-00001-of-00003.gguf", "d/m-00002-of-00003.gguf", "d/m-00003-of-00003.gguf"}) {
		t.Errorf("splitParts = %v", got)
	}
	for _, f := range []string{"m.gguf", "m-00004-of-00003.gguf", "m-00000-of-00003.gguf"} {
		if got := splitParts(f); !slices.Equal(got, []string{f}) {
			t.Errorf("splitParts(%q) = %v, want the file alone", f, got)
		}
	}
}

func TestPick(t *testing.T) {
	repo := []string{"README.md", "m-Q4_K_M.gguf", "m-Q8_0-00001-of-00002.gguf", "m-Q8_0-00002-of-00002.gguf", "m-F16.gguf"}
	tests := []struct {
		ref   string
		files []string
		want  []string
		err   error
	}{
		{"hf.co/a/b", repo, []string{"m-Q4_K_M.gguf"}, nil},
		{"hf.co/a/b:q8_0", repo, []string{"m-Q8_0-00001-of-00002.gguf", "m-Q8_0-00002-of-00002.gguf"}, nil},
		{"hf.co/a/b:Q2_K", repo, nil, ErrNotFound},
		{"hf.co/a/b", []string{"only-F16.gguf", "x.json"}, []string{"only-F16.gguf"}, nil},
		{"hf.co/a/b", []string{"a-F16.gguf", "a-Q8_0.gguf"}, nil, ErrAmbiguous},
		{"hf.co/a/b", []string{"config.json"}, nil, ErrNotFound},
		{"hf.co/a/b:Q4_K_M", []string{"x/a-Q4_K_M.gguf", "y/a-Q4_K_M.gguf"}, nil, ErrAmbiguous},
	}
	for _, tc := range tests {
		r, err := ParseRef(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pick(r, tc.files)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("pick(%s, %v) = %v, %v; want %v", tc.ref, tc.files, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("pick(%s) = %v, %v; want %v", tc.ref, got, err, tc.want)
		}
	}
}

// FuzzParseRef: no input panics; an accepted reference prints to a string
// that parses back to it, and every cache path it leads to stays inside the
// cache folder.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"hf.co/a/b:Q4_K_M", "hf.co/a/b@v1/x/y.gguf", "https://huggingface.co/a/b/resolve/main/m.gguf",
		"https://h.test/m.gguf", "hf.co/a/b/../x.gguf", "hf.co/a/b@..:Q", "huggingface.co/a/b/c-00001-of-00002.gguf"} {
		f.Add(s)
	}
	cache := Cache{Dir: "/cache"}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRef(s)
		if err != nil {
			if !errors.Is(err, ErrBadRef) {
				t.Fatalf("ParseRef(%q): error of another kind: %v", s, err)
			}
			return
		}
		back, err := ParseRef(r.String())
		if err != nil || back != r {
			t.Fatalf("ParseRef(%q) = %+v; its string %q parses to %+v, %v", s, r, r.String(), back, err)
		}
		repo, file, commit := r.Repo, r.File, r.Revision
		if r.URL != "" {
			repo, file, commit = urlRepo(r.URL), urlFile(r.URL), "url"
		}
		if file == "" {
			file = "x.gguf"
		}
		for _, p := range append([]string{cache.RepoDir(repo), cache.snapshotPath(repo, commit, file)}, mapped(splitParts(file), func(f string) string {
			return cache.snapshotPath(repo, commit, f)
		})...) {
			if rel, err := filepath.Rel(cache.Dir, p); err != nil || rel == ".." || strings.HasPrefix(rel, "../") || !strings.HasPrefix(filepath.Base(cache.RepoDir(repo)), "models--") {
				t.Fatalf("ParseRef(%q): cache path %q outside %s", s, p, cache.Dir)
			}
		}
	})
}

func mapped(xs []string, f func(string) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}
