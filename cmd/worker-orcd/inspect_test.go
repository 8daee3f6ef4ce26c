package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"worker-orcd/internal/fixtures"
)

// readmeTensors parses the per-model tensor tables of the fixtures README:
// "#### <file>" headings followed by "| name | type | [ne0, ne1] | offset | bytes |" rows.
func readmeTensors(t *testing.T) map[string][]inspectTensor {
	p := fixtures.Path(t, "README.md")
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	out := map[string][]inspectTensor{}
	model := ""
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "#### "); ok {
			model = strings.TrimSpace(name)
			continue
		}
		if model == "" || !strings.HasPrefix(line, "| ") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), "|")
		if len(cells) != 5 {
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		off, err1 := strconv.ParseUint(cells[3], 10, 64)
		size, err2 := strconv.ParseUint(cells[4], 10, 64)
		if err1 != nil || err2 != nil {
			continue // the header row
		}
		var shape []uint64
		for _, d := range strings.Split(strings.Trim(cells[2], "[]"), ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(d), 10, 64)
			if err != nil {
				t.Fatalf("README shape %q: %v", cells[2], err)
			}
			shape = append(shape, n)
		}
		out[model] = append(out[model], inspectTensor{Name: cells[0], Type: cells[1], Shape: shape, Offset: off, Bytes: size})
	}
	if len(out) == 0 {
		t.Fatal("no tensor tables found in the fixtures README")
	}
	return out
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = runIO(args, strings.NewReader(""), &o, &e)
	return code, o.String(), e.String()
}

func TestInspectFixturesMatchREADME(t *testing.T) {
	want := readmeTensors(t)
	for model, tensors := range want {
		t.Run(model, func(t *testing.T) {
			path := fixtures.Path(t, "models", model)
			code, out, errOut := runCLI("inspect", "--json", path)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var rep inspectReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Tensors) != len(tensors) {
				t.Fatalf("%d tensors, README lists %d", len(rep.Tensors), len(tensors))
			}
			for i, w := range tensors {
				g := rep.Tensors[i]
				if fmt.Sprint(g) != fmt.Sprint(w) {
					t.Errorf("tensor %d: got %+v, want %+v", i, g, w)
				}
			}
			var params uint64
			for _, ts := range tensors {
				n := uint64(1)
				for _, d := range ts.Shape {
					n *= d
				}
				params += n
			}
			if rep.Totals.Parameters != params {
				t.Errorf("parameters %d, want %d", rep.Totals.Parameters, params)
			}
		})
	}
}

func TestInspectSHA256AndText(t *testing.T) {
	path := fixtures.ModelPath(t, "phi3-small-Q4_K_M")
	code, out, errOut := runCLI("inspect", "--sha256", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"1a4c9093aca82799cfb2df67e8f257bf97547eb6c3d9bbee051be93e7f3a557b",
		"architecture:  phi3",
		"tokenizer.ggml.tokens", "[32064]", "…",
		"blk.1.attn_qkv.weight", "Q6_K",
		"totals: 15 tensors, 17728768 parameters",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q", want)
		}
	}
	code, out, _ = runCLI("inspect", "--json", "--full", path)
	if code != 0 || !strings.Contains(out, `"length": 32064`) || strings.Contains(out, `"truncated"`) {
		t.Errorf("--full: exit %d, truncated arrays or no length", code)
	}
}

// TestInspectBadFiles: every damaged input is exit status 1 and one line
// on stderr naming a GGUFError.
func TestInspectBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hdr := func(nTensors, nKV uint64, rest ...byte) []byte {
		b := []byte("GGUF")
		b = binary.LittleEndian.AppendUint32(b, 3)
		b = binary.LittleEndian.AppendUint64(b, nTensors)
		b = binary.LittleEndian.AppendUint64(b, nKV)
		return append(b, rest...)
	}
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(i*7919 + i>>3)
	}
	hugeStr := hdr(0, 1, binary.LittleEndian.AppendUint64(nil, 1<<63)...)
	hugeStr = append(hugeStr, make([]byte, 32)...)
	cases := map[string]string{
		write("zero.gguf", nil):                   "is empty (0 bytes)",
		write("random.gguf", random):              "bad magic",
		write("tensors.gguf", hdr(1<<60, 0)):      "header claims 1152921504606846976 tensors",
		write("string.gguf", hugeStr):             "claims 9223372036854775808 bytes",
		filepath.Join(dir, "does-not-exist.gguf"): "cannot open model file",
	}
	// Cuts of a real model too, where the fixtures are present.
	switch p, err := fixtures.Find("models", fixtures.Models[0].Name+".gguf"); {
	case err == nil:
		full, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for k := 1; k < 16; k++ {
			cases[write(fmt.Sprintf("cut%02d.gguf", k), full[:len(full)*k/16])] = "GGUFError"
		}
	case !errors.Is(err, fixtures.ErrAbsent):
		t.Fatal(err)
	}
	for path, want := range cases {
		code, out, errOut := runCLI("inspect", path)
		lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
		if code != 1 || out != "" || len(lines) != 1 || !strings.Contains(errOut, "GGUFError: ") || !strings.Contains(errOut, want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and one GGUFError line containing %q",
				filepath.Base(path), code, out, errOut, want)
		}
	}
}
