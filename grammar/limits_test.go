package grammar

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRuleCountBounded: a grammar of more rules than MaxRules is refused
// quickly, and one at the bound compiles in bounded time (a long chain of
// rules is the worst case of the compile's checks; review finding: 40 000
// rules in a body under the size limit took 12 s of a request's time).
func TestRuleCountBounded(t *testing.T) {
	chain := func(n int) string {
		var b strings.Builder
		b.WriteString("root ::= r0\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "r%d ::= r%d \"a\"\n", i, i+1)
		}
		fmt.Fprintf(&b, "r%d ::= \"b\"\n", n)
		return b.String()
	}
	start := time.Now()
	_, err := CompileGBNF(chain(40000))
	if err == nil || !strings.Contains(err.Error(), "rules") {
		t.Fatalf("40 000 rules: %v, want a refusal naming the rule count", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("refusing 40 000 rules took %v", took)
	}
	start = time.Now()
	if _, err := CompileGBNF(chain(MaxRules - 2)); err != nil {
		t.Fatalf("a chain at the bound: %v", err)
	}
	t.Logf("a chain of %d rules compiles in %v", MaxRules-2, time.Since(start))
}
