// Command worker-orcd is an LLM inference worker: it loads one GGUF model and
// serves generation.
//
// Each subcommand lives in its own file and registers a constructor in an
// init function:
//
//	func init() { register(newInspectCmd) }
//
// The command tree is built fresh for every run so that tests can call run
// repeatedly without flag values leaking from one call to the next.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// version is set at link time with -ldflags "-X main.version=...".
var version = "dev"

// subcommands holds the constructors registered by the subcommand files.
var subcommands []func() *cobra.Command

// register adds a subcommand constructor; call it from an init function.
func register(newCmd func() *cobra.Command) { subcommands = append(subcommands, newCmd) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "worker-orcd",
		Short:         "LLM inference worker for GGUF models (Qwen2, Phi-3, Llama)",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, newCmd := range subcommands {
		root.AddCommand(newCmd())
	}
	return root
}

// exitError carries a process exit status other than 1 through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// run executes the command line and returns the process exit status. Errors
// are printed as one line on stderr: the error's own message names its
// family (GGUFError: …) and the fix.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "worker-orcd:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
