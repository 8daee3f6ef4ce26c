package main

import (
	"strings"
	"testing"
)

func TestEnvNames(t *testing.T) {
	for flag, want := range map[string]string{
		"port": "WORKER_PORT", "max-body": "WORKER_MAX_BODY", "worker-id": "WORKER_ID",
		"api-key": "WORKER_API_KEY", "read-header-timeout": "WORKER_READ_HEADER_TIMEOUT", "model": "WORKER_MODEL",
	} {
		if got := envName(flag); got != want {
			t.Errorf("envName(%q) = %q, want %q", flag, got, want)
		}
	}
	// Every serve flag shows its variable in --help.
	code, out, _ := runCLI("serve", "--help")
	if code != 0 {
		t.Fatal("serve --help failed")
	}
	_, flags, _ := strings.Cut(out, "\nFlags:\n")
	flags, _, _ = strings.Cut(flags, "\nGlobal Flags:")
	if strings.Count(flags, "[$WORKER_") < 25 {
		t.Fatalf("serve --help lists %d variables:\n%s", strings.Count(flags, "[$WORKER_"), out)
	}
	for _, line := range strings.Split(flags, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "--") || strings.HasPrefix(line, "-") && !strings.HasPrefix(line, "-h,") && !strings.HasPrefix(line, "-v,") {
			if !strings.Contains(line, "[$WORKER_") && !strings.HasPrefix(line, "--offline") {
				t.Errorf("serve --help: no variable on %q", line)
			}
		}
	}
}
