package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// envName is the environment variable of a flag: WORKER_ and the flag's name
// in capitals with '_' for '-' (--max-body → WORKER_MAX_BODY; --worker-id →
// WORKER_ID, not WORKER_WORKER_ID).
func envName(flag string) string {
	return "WORKER_" + strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(flag, "worker-"), "-", "_"))
}

// envFlags are the flags a command takes from the environment: all but
// help and the global ones.
func envFlag(f *pflag.Flag) bool {
	return f.Name != "help" && f.Name != "offline"
}

// documentEnv appends each flag's variable to its help line.
func documentEnv(cmd *cobra.Command) {
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if envFlag(f) {
			f.Usage += " [$" + envName(f.Name) + "]"
		}
	})
}

// flagsFromEnv sets every flag of cmd that the command line did not set from
// its environment variable, if that is set: flag > environment > default.
func flagsFromEnv(cmd *cobra.Command, name string) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || !envFlag(f) {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok || v == "" {
			return
		}
		if serr := cmd.Flags().Set(f.Name, v); serr != nil {
			err = fmt.Errorf("%s: %s=%q: %v (as --%s)", name, envName(f.Name), v, serr, f.Name)
		}
	})
	return err
}
