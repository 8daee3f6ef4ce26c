package stop_test

import (
	"fmt"

	"worker-orcd/stop"
)

func ExampleMatcher() {
	m := stop.NewMatcher([]string{"<|im_end|>", "\n\n"})
	for _, piece := range []string{"Hello", " there", "<|", "im", "_end", "|>", "ignored"} {
		emit, stopped := m.Push(piece)
		fmt.Printf("%q %v\n", emit, stopped)
		if stopped {
			break
		}
	}
	// Output:
	// "Hello" false
	// " there" false
	// "" false
	// "" false
	// "" false
	// "" true
}

func ExampleMatcher_Flush() {
	m := stop.NewMatcher([]string{"END"})
	a, _ := m.Push("almost E")
	b, _ := m.Push("N") // the stream ends here, e.g. at max_tokens
	fmt.Printf("%q %q %q\n", a, b, m.Flush())
	// Output: "almost " "" "EN"
}
