package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"worker-orcd/engine"
	"worker-orcd/sample"
	"worker-orcd/tokenizer"
)

func init() { register(newChatCmd) }

// encodeChat wraps a prompt as one user message with the model's chat
// template, asking for the assistant's turn, and encodes it (special tokens
// parsed, BOS once). When the template cannot be used and a built-in
// format stands in, the reason goes to warn.
func encodeChat(tok *tokenizer.Tokenizer, prompt string, warn io.Writer) ([]int32, error) {
	ids, p, err := tok.EncodeChat([]tokenizer.Message{{Role: "user", Content: prompt}},
		tokenizer.ChatOptions{AddGenerationPrompt: true})
	if p.Warning != "" {
		fmt.Fprintln(warn, chatTemplateWarning(p))
	}
	return ids, err
}

// chatTemplateWarning is the one line that says a built-in chat format
// stands in for the model's template.
func chatTemplateWarning(p tokenizer.ChatPrompt) string {
	return fmt.Sprintf("worker-orcd: warning: %s (using the built-in %s format)", p.Warning, p.Source)
}

type chatFlags struct {
	modelFlags
	system    string
	maxTokens int
	params    sample.Params
	seed      string
}

func newChatCmd() *cobra.Command {
	f := &chatFlags{params: sample.DefaultParams()}
	cmd := &cobra.Command{
		Use:   "chat --model M.gguf|REF",
		Short: "Chat with a model in the terminal (multi-turn, streaming, the model's chat template)",
		Long: `An interactive, multi-turn chat through the model's chat template. Replies
stream as they are generated. Type a message and Enter; commands:

  /system TEXT   set the system message (and start over); /system alone removes it
  /reset         forget the conversation (the system message stays)
  /exit          leave (also /bye, or Ctrl-D)
  /help          this list

Ctrl-C stops a reply that is being generated. When the conversation outgrows
the context (--ctx), the last message is refused: /reset and go on. Standard
input need not be a terminal: each line is a message.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runChat(cmd, f) },
	}
	fs := cmd.Flags()
	f.modelFlags.add(fs)
	fs.StringVar(&f.system, "system", "", "system message")
	fs.IntVarP(&f.maxTokens, "max-tokens", "n", 1024, "tokens a reply may have at most")
	fs.Float64Var(&f.params.Temperature, "temperature", 0.7, "sampling temperature, 0 to 2 (0 = greedy)")
	fs.IntVar(&f.params.TopK, "top-k", 40, "keep the K most likely tokens (0 = off)")
	fs.Float64Var(&f.params.TopP, "top-p", 0.9, "keep the most likely tokens up to this probability mass (1 = off)")
	fs.Float64Var(&f.params.MinP, "min-p", f.params.MinP, "drop tokens less likely than this fraction of the best (0 = off)")
	fs.Float64Var(&f.params.RepeatPenalty, "repeat-penalty", f.params.RepeatPenalty, "penalty for recently seen tokens (1 = off)")
	fs.StringVar(&f.seed, "seed", "-1", "random seed of the first reply (-1 = a fresh one); later replies continue from it")
	return cmd
}

// isTerminal reports whether r or w is a terminal.
func isTerminal(x any) bool {
	f, ok := x.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func runChat(cmd *cobra.Command, f *chatFlags) error {
	if f.seed != "-1" {
		s, err := strconv.ParseUint(f.seed, 10, 64)
		if err != nil {
			return fmt.Errorf("chat: --seed %q: want -1 or an integer from 0 to 18446744073709551615", f.seed)
		}
		f.params.Seed = &s
	}
	if err := f.params.Validate(); err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	f.stderr = cmd.ErrOrStderr()
	m, err := f.load("chat", nil)
	if err != nil {
		return err
	}
	defer m.Close()
	in, out, errw := cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	interactive := isTerminal(in)
	tok := m.Tokenizer()

	// Ctrl-C cancels the reply in progress; at the prompt it says how to
	// leave.
	var mu sync.Mutex
	var cancelReply context.CancelFunc
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	defer signal.Stop(sig)
	go func() {
		for range sig {
			mu.Lock()
			if cancelReply != nil {
				cancelReply()
			} else {
				fmt.Fprint(out, "\n(/exit or Ctrl-D to leave)\n>>> ")
			}
			mu.Unlock()
		}
	}()

	var msgs []tokenizer.Message
	reset := func() {
		msgs = msgs[:0]
		if f.system != "" {
			msgs = append(msgs, tokenizer.Message{Role: "system", Content: f.system})
		}
	}
	reset()
	warned := false
	params := f.params
	if interactive {
		fmt.Fprintf(out, "chat with %s (context %d tokens): /help for commands, /exit or Ctrl-D to leave\n", f.path, m.Options().CtxLen)
	}
	r := bufio.NewReader(in)
	for {
		if interactive {
			fmt.Fprint(out, ">>> ")
		}
		line, rerr := r.ReadString('\n')
		line = strings.TrimSpace(line)
		if line == "" {
			if rerr != nil {
				if interactive {
					fmt.Fprintln(out)
				}
				return nil
			}
			continue
		}
		if strings.HasPrefix(line, "/") {
			word, rest, _ := strings.Cut(line, " ")
			switch word {
			case "/exit", "/bye", "/quit":
				return nil
			case "/reset", "/clear":
				reset()
				fmt.Fprintln(out, "(conversation cleared)")
			case "/system":
				f.system = strings.TrimSpace(rest)
				reset()
				if f.system == "" {
					fmt.Fprintln(out, "(system message removed; conversation cleared)")
				} else {
					fmt.Fprintln(out, "(system message set; conversation cleared)")
				}
			case "/help", "/?":
				fmt.Fprintln(out, "/system TEXT  set the system message\n/reset        forget the conversation\n/exit         leave (or Ctrl-D)\nCtrl-C stops a reply")
			default:
				fmt.Fprintf(out, "(unknown command %s: /help lists them)\n", word)
			}
			if rerr != nil {
				return nil
			}
			continue
		}
		msgs = append(msgs, tokenizer.Message{Role: "user", Content: line})
		ids, p, err := tok.EncodeChat(msgs, tokenizer.ChatOptions{AddGenerationPrompt: true})
		if p.Warning != "" && !warned {
			fmt.Fprintln(errw, chatTemplateWarning(p))
			warned = true
		}
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		mu.Lock()
		cancelReply = cancel
		mu.Unlock()
		res, err := m.Generate(ctx, engine.Request{Prompt: ids, Params: params, MaxTokens: f.maxTokens}, func(t engine.Token) error {
			_, err := io.WriteString(out, t.Text)
			return err
		})
		mu.Lock()
		cancelReply = nil
		mu.Unlock()
		cancel()
		fmt.Fprintln(out)
		switch {
		case errors.Is(err, engine.ErrCancelled):
			fmt.Fprintln(out, "(reply stopped)")
		case err != nil:
			msgs = msgs[:len(msgs)-1]
			fmt.Fprintf(errw, "worker-orcd: %v\n", err)
			fmt.Fprintln(out, "(message not sent: /reset to start over)")
			if rerr != nil {
				return nil
			}
			continue
		}
		msgs = append(msgs, tokenizer.Message{Role: "assistant", Content: res.Text})
		if params.Seed != nil { // the next reply draws on from a new seed derived from this one
			next := *params.Seed + 1
			params.Seed = &next
		}
		if rerr != nil {
			return nil
		}
	}
}
