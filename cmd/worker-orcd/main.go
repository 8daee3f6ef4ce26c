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

// globalFlags are the flags of every command (persistent flags of the root).
type globalFlags struct {
	verbose bool // -v: more on stderr (log progress; --version: the GPU libraries)
	offline bool // --offline: model references from the cache only, like HF_HUB_OFFLINE=1
}

// globals holds the global flags of the run in progress; newRootCmd resets it.
var globals globalFlags

// version is set at link time with -ldflags "-X main.version=...".
var version = "dev"

// subcommands holds the constructors registered by the subcommand files.
var subcommands []func() *cobra.Command

// register adds a subcommand constructor; call it from an init function.
func register(newCmd func() *cobra.Command) { subcommands = append(subcommands, newCmd) }

func newRootCmd() *cobra.Command {
	globals = globalFlags{}
	var showVersion bool
	root := &cobra.Command{
		Use:   "worker-orcd",
		Short: "LLM inference worker for GGUF models (Qwen2, Phi-3, Llama)",
		Long: `worker-orcd loads one GGUF model (Qwen2/Qwen2.5, Phi-3, Llama) and serves it over
HTTP, on an NVIDIA GPU or on the CPU.

--model takes a GGUF file or a model reference, pulled into the Hugging Face
cache on first use: hf.co/OWNER/REPO:QUANT, hf.co/OWNER/REPO/FILE.gguf or a URL
(HF_TOKEN, HF_ENDPOINT, HF_HUB_CACHE/HF_HOME and HF_HUB_OFFLINE apply).`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if showVersion {
				return printVersion(cmd.OutOrStdout(), globals.verbose)
			}
			return cmd.Help()
		},
	}
	root.Flags().BoolVar(&showVersion, "version", false, "print the version, the VCS revision, the Go version (and with -v the GPU libraries found)")
	pf := root.PersistentFlags()
	pf.BoolVarP(&globals.verbose, "verbose", "v", false, "log progress to stderr")
	pf.BoolVar(&globals.offline, "offline", false, "use model references from the cache only, never the network (as HF_HUB_OFFLINE=1)")
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
	return runIO(args, os.Stdin, stdout, stderr)
}

// runIO is run with a given standard input.
func runIO(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
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
