// Command worker-orcd is an LLM inference worker: it loads one GGUF model and
// serves generation. Each subcommand lives in its own file and registers
// itself on the root command in an init function.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at link time with -ldflags "-X main.version=...".
var version = "dev"

var rootCmd = &cobra.Command{
	Use:           "worker-orcd",
	Short:         "LLM inference worker for GGUF models (Qwen2, Phi-3, Llama)",
	Version:       version,
	SilenceUsage:  true,
	SilenceErrors: true,
}

// exitError carries a process exit status through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	if err := rootCmd.Execute(); err != nil {
		// One line on stderr: the error's own message already names the
		// family (GGUFError: …) and the fix.
		fmt.Fprintln(os.Stderr, "worker-orcd:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}
