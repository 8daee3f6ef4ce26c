package testmodel_test

import (
	"fmt"
	"os"
	"path/filepath"

	"worker-orcd/gguf"
	"worker-orcd/internal/testmodel"
)

func ExampleSpec_Write() {
	dir, _ := os.MkdirTemp("", "testmodel")
	defer os.RemoveAll(dir)

	s := testmodel.MustPreset("qwen2-micro") // d 64, 2 layers, built-in BPE vocabulary
	s.Type = testmodel.Q4_K_M
	s.Seed = 7
	path := filepath.Join(dir, "qwen2-micro.gguf")
	if err := s.Write(path); err != nil {
		fmt.Println(err)
		return
	}
	f, err := gguf.Open(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	emb, _ := f.Tensor("token_embd.weight")
	fmt.Println(f.Architecture(), len(f.Tensors), "tensors")
	fmt.Println("token_embd", emb.Type, emb.Dims)
	// Output:
	// qwen2 26 tensors
	// token_embd Q8_0 [64 322]
}
