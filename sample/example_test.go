package sample_test

import (
	"fmt"

	"worker-orcd/sample"
)

func Example() {
	p := sample.DefaultParams() // temperature 0.8, top-k 40, top-p 0.95, min-p 0.05
	seed := uint64(42)
	p.Seed = &seed
	if err := p.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	s := sample.New(p)
	logits := []float32{0.5, 3, 2.8, -1, 1} // one decoding step, [n_vocab]
	history := []int32{1, 4}                // prompt and generated ids so far
	id := s.Sample(logits, history)
	fmt.Println(id == 1 || id == 2, s.Seed())
	// Output: true 42
}

func ExampleParams_Validate() {
	p := sample.DefaultParams()
	p.TopP = 1.5
	fmt.Println(p.Validate())
	// Output: invalid sampling parameters: top_p must be in (0, 1] (1 = off), got 1.5
}

func ExampleTopLogprobs() {
	logits := []float32{1, 3, 2, 3}
	chosen, top := sample.Logprobs(logits, 2, 3, nil)
	fmt.Printf("chosen %.4f\n", chosen)
	for _, c := range top {
		fmt.Printf("%d %.4f\n", c.ID, c.Logprob)
	}
	// Output:
	// chosen -1.9176
	// 1 -0.9176
	// 3 -0.9176
	// 2 -1.9176
}
