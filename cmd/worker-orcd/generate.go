package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"worker-orcd/engine"
	"worker-orcd/grammar"
	"worker-orcd/sample"
	"worker-orcd/tokenizer"
)

func init() { register(newGenerateCmd) }

type generateFlags struct {
	modelFlags
	prompt, promptFile string
	promptIDs          string
	maxTokens          int
	params             sample.Params
	seed               string
	topLogprobs        int
	stops              []string
	chat, asJSON       bool
	ignoreEOS          bool
	dumpDir            string
	grammarFile        string
	schemaFile         string
}

func newGenerateCmd() *cobra.Command {
	f := &generateFlags{params: sample.DefaultParams()}
	cmd := &cobra.Command{
		Use:   "generate --model M.gguf|REF [--prompt TEXT | --prompt-file F | --prompt-ids 1,2 | < prompt.txt]",
		Short: "Generate text from a prompt and stream it to standard output",
		Long: `Generate a continuation of a prompt. Text streams to standard output as it is
produced; --json prints one JSON document at the end instead (format in the README).
Without --prompt, --prompt-file or --prompt-ids the prompt is read from standard
input. With -v the seed and a timing line go to standard error.

Sampling applies, in order: repetition penalty, top-k, top-p, min-p, temperature.
--temperature 0 is greedy decoding. The same --seed, parameters, model and
build give the same output.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runGenerate(cmd, f) },
	}
	fs := cmd.Flags()
	f.modelFlags.add(fs)
	fs.StringVar(&f.prompt, "prompt", "", "prompt text")
	fs.StringVar(&f.promptFile, "prompt-file", "", "read the prompt from a file")
	fs.StringVar(&f.promptIDs, "prompt-ids", "", "the prompt as comma-separated token ids (used as given: no BOS added)")
	fs.IntVarP(&f.maxTokens, "max-tokens", "n", 128, "tokens to generate at most")
	fs.Float64Var(&f.params.Temperature, "temperature", f.params.Temperature, "sampling temperature, 0 to 2 (0 = greedy)")
	fs.IntVar(&f.params.TopK, "top-k", f.params.TopK, "keep the K most likely tokens (0 = off)")
	fs.Float64Var(&f.params.TopP, "top-p", f.params.TopP, "keep the most likely tokens up to this probability mass (1 = off)")
	fs.Float64Var(&f.params.MinP, "min-p", f.params.MinP, "drop tokens less likely than this fraction of the best (0 = off)")
	fs.Float64Var(&f.params.RepeatPenalty, "repeat-penalty", f.params.RepeatPenalty, "penalty for tokens among the last --repeat-last-n (1 = off)")
	fs.IntVar(&f.params.RepeatLastN, "repeat-last-n", f.params.RepeatLastN, "how many recent tokens the repetition penalty looks at")
	fs.StringVar(&f.seed, "seed", "-1", "random seed, 0 to 2^64-1 (-1 = a fresh one, printed with --json)")
	fs.IntVar(&f.topLogprobs, "top-logprobs", 0, "report the K most likely tokens at each step (--json)")
	fs.StringArrayVar(&f.stops, "stop", nil, "stop before this text (repeatable)")
	fs.BoolVar(&f.chat, "chat", false, "wrap the prompt as a user message with the model's chat template")
	fs.BoolVar(&f.asJSON, "json", false, "print one JSON document with ids, pieces, logprobs and timings")
	fs.BoolVar(&f.ignoreEOS, "ignore-eos", false, "keep generating past end-of-generation tokens")
	fs.StringVar(&f.dumpDir, "dump-tensors", "", "write intermediate tensors of every step as .npy files to this directory")
	fs.StringVar(&f.grammarFile, "grammar-file", "", "constrain the output to this GBNF grammar (llama.cpp's notation)")
	fs.StringVar(&f.schemaFile, "json-schema-file", "", "constrain the output to JSON valid under this JSON Schema")
	return cmd
}

func readPrompt(prompt, file string, stdin io.Reader, stderr io.Writer) (string, error) {
	switch {
	case prompt != "" && file != "":
		return "", errors.New("give --prompt or --prompt-file, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--prompt-file: %w", err)
		}
		if !utf8.Valid(b) {
			return "", fmt.Errorf("--prompt-file %s is not valid UTF-8 text", file)
		}
		return string(b), nil
	case prompt != "":
		return prompt, nil
	}
	if isTerminal(stdin) {
		fmt.Fprintln(stderr, "worker-orcd: reading the prompt from standard input (Ctrl-D to end; or give --prompt TEXT)")
	}
	b, err := io.ReadAll(stdin)
	if err != nil {
		return "", fmt.Errorf("reading the prompt from standard input: %w", err)
	}
	if !utf8.Valid(b) {
		return "", errors.New("the prompt on standard input is not valid UTF-8 text")
	}
	if len(b) == 0 {
		return "", errors.New("the prompt is empty: give --prompt TEXT, --prompt-file F or text on standard input")
	}
	return string(b), nil
}

// generateJSON is what `generate --json` prints; the README documents it.
type generateJSON struct {
	PromptIDs  []int32         `json:"prompt_ids"`
	Tokens     []generateToken `json:"tokens"`
	Text       string          `json:"text"`
	StopReason string          `json:"stop_reason"`
	Seed       uint64          `json:"seed"`
	Timings    timingsJSON     `json:"timings"`
}

type generateToken struct {
	ID      int32           `json:"id"`
	Text    string          `json:"text"`
	Bytes   []byte          `json:"bytes,omitempty"` // only when the piece is not valid UTF-8 alone
	Logprob float32         `json:"logprob"`
	Top     []candidateJSON `json:"top,omitempty"`
}

type candidateJSON struct {
	ID      int32   `json:"id"`
	Logprob float32 `json:"logprob"`
}

type timingsJSON struct {
	LoadMs      float64 `json:"load_ms"`
	PrefillMs   float64 `json:"prefill_ms"`
	DecodeMs    float64 `json:"decode_ms"`
	PromptTPS   float64 `json:"prompt_tokens_per_s"`
	GenerateTPS float64 `json:"generate_tokens_per_s"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func candidates(cs []sample.Candidate) []candidateJSON {
	out := make([]candidateJSON, len(cs))
	for i, c := range cs {
		out[i] = candidateJSON{ID: c.ID, Logprob: c.Logprob}
	}
	return out
}

func runGenerate(cmd *cobra.Command, f *generateFlags) error {
	var text string
	var givenIDs []int32
	var err error
	if f.promptIDs != "" {
		if f.prompt != "" || f.promptFile != "" || f.chat {
			return errors.New("generate: --prompt-ids excludes --prompt, --prompt-file and --chat")
		}
		if givenIDs, err = parseIDs("generate: --prompt-ids", f.promptIDs); err != nil {
			return err
		}
	} else if cmd.Flags().Changed("prompt") && f.prompt == "" {
		return errors.New("generate: the prompt is empty: give --prompt TEXT, --prompt-file F or text on standard input")
	} else if text, err = readPrompt(f.prompt, f.promptFile, cmd.InOrStdin(), cmd.ErrOrStderr()); err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	if f.seed != "-1" {
		s, err := strconv.ParseUint(f.seed, 10, 64)
		if err != nil {
			return fmt.Errorf("generate: --seed %q: want -1 or an integer from 0 to 18446744073709551615", f.seed)
		}
		f.params.Seed = &s
	}
	if err := f.params.Validate(); err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	start := time.Now()
	var dumper *npyDumper
	f.stderr = cmd.ErrOrStderr()
	m, err := f.load("generate", func(o *engine.LoadOptions) {
		if f.dumpDir != "" {
			dumper = &npyDumper{dir: f.dumpDir}
			o.Dump = dumper.dump
		}
	})
	if err != nil {
		return err
	}
	defer m.Close()
	loadTime := time.Since(start)
	tok := m.Tokenizer()
	ids := givenIDs
	switch {
	case givenIDs != nil:
	case f.chat:
		ids, err = encodeChat(tok, text, cmd.ErrOrStderr())
	default:
		ids, err = tok.Encode(text, tokenizer.EncodeOptions{AddSpecial: true})
	}
	if err != nil {
		return err
	}
	req := engine.Request{Prompt: ids, Params: f.params, MaxTokens: f.maxTokens, Stop: f.stops,
		Logprobs: f.asJSON, TopLogprobs: f.topLogprobs, IgnoreEOS: f.ignoreEOS}
	if req.Grammar, err = constraintFromFiles(m.Engine, f.grammarFile, f.schemaFile); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	out := cmd.OutOrStdout()
	doc := generateJSON{PromptIDs: ids, Tokens: []generateToken{}}
	res, err := m.Generate(ctx, req, func(t engine.Token) error {
		if !f.asJSON {
			_, err := io.WriteString(out, t.Text)
			return err
		}
		piece, _ := tok.Piece(t.ID)
		gt := generateToken{ID: t.ID, Text: string(piece), Logprob: t.Logprob, Top: candidates(t.Top)}
		if tok.Type(t.ID) == tokenizer.TypeControl {
			gt.Text = ""
		} else if !utf8.Valid(piece) {
			gt.Bytes = piece
		}
		doc.Tokens = append(doc.Tokens, gt)
		return nil
	})
	if err != nil && !errors.Is(err, engine.ErrCancelled) {
		return err
	}
	if !f.asJSON {
		fmt.Fprintln(out)
		if globals.verbose {
			tm := res.Timings
			fmt.Fprintf(cmd.ErrOrStderr(), "worker-orcd: seed %d; load %.0f ms; prompt %d tokens in %.1f ms (%.1f tokens/s); generated %d tokens in %.1f ms (%.1f tokens/s); stop %s\n",
				res.Seed, ms(loadTime), res.PromptTokens, ms(tm.Prefill), tm.PromptTPS, len(res.IDs), ms(tm.Decode), tm.GenerateTPS, res.StopReason)
		}
		return nil
	}
	doc.Text = res.Text
	doc.StopReason = string(res.StopReason)
	doc.Seed = res.Seed
	doc.Timings = timingsJSON{LoadMs: ms(loadTime), PrefillMs: ms(res.Timings.Prefill), DecodeMs: ms(res.Timings.Decode),
		PromptTPS: res.Timings.PromptTPS, GenerateTPS: res.Timings.GenerateTPS}
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	return enc.Encode(doc)
}

// constraintFromFiles compiles --grammar-file or --json-schema-file (nil
// when neither is given).
func constraintFromFiles(e *engine.Engine, grammarFile, schemaFile string) (*grammar.Automaton, error) {
	kind, file := engine.GrammarGBNF, grammarFile
	switch {
	case grammarFile != "" && schemaFile != "":
		return nil, errors.New("give --grammar-file or --json-schema-file, not both")
	case schemaFile != "":
		kind, file = engine.GrammarJSONSchema, schemaFile
	case grammarFile == "":
		return nil, nil
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	a, err := e.Grammar(kind, string(src))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return a, nil
}
