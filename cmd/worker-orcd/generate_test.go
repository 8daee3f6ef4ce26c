package main

import (
	"encoding/json"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"worker-orcd/internal/fixtures"
	"worker-orcd/internal/testmodel"
)

// TestGenerateAndScoreGolden runs the acceptance checks through the CLI for
// every fixture model: prompt ids equal, teacher-forced top-5 logprobs via
// `score --json` within 0.1 nats, and free-running greedy ids via
// `generate --json` equal up to the first near-tie (gap < 0.05 nats).
func TestGenerateAndScoreGolden(t *testing.T) {
	for _, m := range fixtures.Models {
		t.Run(m.Name, func(t *testing.T) {
			modelPath := fixtures.ModelPath(t, m.Name)
			g := fixtures.ReadGolden(t, m.Name)
			p := g.Prompts[len(g.Prompts)-1] // the CJK + emoji prompt: byte tokens, split characters
			code, out, errOut := runCLI("generate", "--model", modelPath, "--prompt", p.Prompt, "--temperature", "0",
				"--top-logprobs", "5", "--max-tokens", "16", "--ignore-eos", "--json", "--device", "cpu")
			if code != 0 {
				t.Fatalf("generate: exit %d: %s", code, errOut)
			}
			var gen generateJSON
			if err := json.Unmarshal([]byte(out), &gen); err != nil {
				t.Fatalf("generate --json: %v\n%s", err, out)
			}
			if !slices.Equal(gen.PromptIDs, p.PromptIDs) {
				t.Fatalf("prompt ids %v, reference %v", gen.PromptIDs, p.PromptIDs)
			}
			for k, st := range p.Steps {
				if gen.Tokens[k].ID != st.ID {
					if st.Gap >= 0.05 {
						t.Errorf("step %d: id %d, reference %d (gap %.3f)", k, gen.Tokens[k].ID, st.ID, st.Gap)
					}
					break
				}
				if len(gen.Tokens[k].Top) != 5 || gen.Tokens[k].Top[0].ID != st.ID {
					t.Errorf("step %d: top %v", k, gen.Tokens[k].Top)
				}
			}

			ids := append(slices.Clone(p.PromptIDs), p.GeneratedIDs...)
			idArgs := make([]string, len(ids))
			for i, id := range ids {
				idArgs[i] = strconv.Itoa(int(id))
			}
			code, out, errOut = runCLI("score", "--model", modelPath, "--ids", strings.Join(idArgs, ","), "--top-logprobs", "5", "--json", "--device", "cpu")
			if code != 0 {
				t.Fatalf("score: exit %d: %s", code, errOut)
			}
			var sc scoreJSON
			if err := json.Unmarshal([]byte(out), &sc); err != nil {
				t.Fatal(err)
			}
			if len(sc.Positions) != len(ids)-1 || sc.Positions[0].I != 1 {
				t.Fatalf("%d positions starting at %d", len(sc.Positions), sc.Positions[0].I)
			}
			for k, st := range p.Steps {
				// Step k predicts ids[len(prompt)+k] from the tokens before it.
				i := len(p.PromptIDs) + k
				if i >= len(ids) {
					break
				}
				pos := sc.Positions[i-1]
				got := map[int32]float32{}
				for _, c := range pos.Top {
					got[c.ID] = c.Logprob
				}
				for _, c := range st.Top {
					lp, ok := got[c.ID]
					if !ok {
						// Outside our top-5 (a near-tie at rank 5): compare its own logprob instead.
						if c.ID == pos.ID {
							lp = pos.Logprob
						} else {
							continue
						}
					}
					if d := math.Abs(float64(lp) - c.Logprob); d > 0.1 {
						t.Errorf("step %d id %d: logprob %.4f, reference %.4f", k, c.ID, lp, c.Logprob)
					}
				}
			}
		})
	}
}

func TestGenerateBadInput(t *testing.T) {
	modelPath := fixtures.ModelPath(t, "qwen2-tiny-Q4_K_M")
	long := strings.Repeat("word ", 300)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"generate", "--model", modelPath, "--prompt", ""}, "the prompt is empty"},
		{[]string{"generate", "--model", modelPath, "--prompt", long, "--ctx", "128"}, "ContextLengthExceeded { length: 429, max: 128 }"},
		{[]string{"generate", "--model", modelPath, "--prompt", "hi", "--temperature", "5"}, "temperature"},
		{[]string{"generate", "--prompt", "hi"}, "--model is required"},
		{[]string{"generate", "--model", modelPath, "--prompt", "hi", "--device", "tpu"}, `unknown device "tpu"`},
		{[]string{"score", "--model", modelPath, "--ids", "1"}, "at least 2 tokens"},
		{[]string{"score", "--model", modelPath, "--ids", "1,x"}, "not an integer"},
		{[]string{"score", "--model", modelPath, "--ids", "1,99999999"}, "outside the vocabulary"},
	}
	for _, c := range cases {
		code, _, errOut := runCLI(c.args...)
		if code != 1 || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 and one line containing %q", c.args[:2], code, errOut, c.want)
		}
	}
}

// TestGenerateBadModels: a model file that cannot run is one line and exit
// status 1, without ../shared.
func TestGenerateBadModels(t *testing.T) {
	dir := t.TempDir()
	missing := testmodel.MustPreset("qwen2-micro")
	missing.Omit = []string{"blk.0.ffn_up.weight"}
	arch, err := testmodel.MustPreset("phi3-micro").Builder()
	if err != nil {
		t.Fatal(err)
	}
	arch.Set("general.architecture", "mamba")
	archPath := filepath.Join(dir, "arch.gguf")
	if err := arch.WriteFile(archPath); err != nil {
		t.Fatal(err)
	}
	missingPath := filepath.Join(dir, "missing.gguf")
	if err := missing.Write(missingPath); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		missingPath: `WeightMappingError: Tensor not found: "blk.0.ffn_up.weight"`,
		archPath:    `InvalidModelType: architecture "mamba" is not supported`,
	} {
		code, _, errOut := runCLI("generate", "--model", path, "--prompt", "hi", "--device", "cpu")
		if code != 1 || !strings.Contains(errOut, want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 and one line containing %q", filepath.Base(path), code, errOut, want)
		}
	}
}

// TestKVTypeFlag: --kv-type f32 runs anywhere, f16 is refused on the CPU
// backend (which keeps float32 only) and anything else is refused by name.
func TestKVTypeFlag(t *testing.T) {
	path := writeSpec(t, "qwen2-micro", nil, nil)
	for _, c := range []struct {
		kv   string
		code int
		want string
	}{
		{"f32", 0, ""},
		{"f16", 1, "the CPU backend keeps its KV cache in float32"},
		{"q8", 1, `KV cache type "q8": want f16 or f32`},
	} {
		code, _, errOut := runCLI("generate", "--model", path, "--device", "cpu", "--prompt", "hi", "--max-tokens", "2", "--kv-type", c.kv)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("--kv-type %s: exit %d, stderr %q; want %d and %q", c.kv, code, errOut, c.code, c.want)
		}
	}
}
