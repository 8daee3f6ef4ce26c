package cuda

import (
	"errors"
	"testing"

	"worker-orcd/backend"
	"worker-orcd/model"
)

// TestBlockPoolChecks (no GPU: a device whose allocations fail): the
// pool's and its caches' argument checks, and a table whose blocks cannot
// get memory, each an error with the cache unchanged; a pool cache does
// not grow by Reserve.
func TestBlockPoolChecks(t *testing.T) {
	d := fakeDevice(t)
	d.failAlloc = func(n int64, purpose string) error {
		return &AllocationError{Bytes: n, Free: 0, Total: 1 << 30, Purpose: purpose}
	}
	c := &model.Config{NLayer: 2, NEmbd: 64, NHead: 4, NHeadKV: 2, HeadDim: 16, VocabSize: 10}
	b := &Backend{dev: d, c: c, kvType: "f16"}
	if _, err := b.NewBlockPool(0); !errors.Is(err, ErrBadInput) {
		t.Errorf("a pool of 0 blocks: %v", err)
	}
	p, err := b.NewBlockPool(8)
	if err != nil {
		t.Fatal(err)
	}
	if p.Blocks() != 8 || p.BlockLen() != KVBlockLen || p.Bytes() != 0 {
		t.Errorf("pool: %d blocks of %d, %d bytes", p.Blocks(), p.BlockLen(), p.Bytes())
	}
	kv := p.NewCache()
	for _, tc := range []struct {
		name  string
		err   error
		match error
	}{
		{"block 8 of 8", kv.SetTable([]int32{8}, 0), ErrBadInput},
		{"block -1", kv.SetTable([]int32{-1}, 0), ErrBadInput},
		{"17 positions in one block", kv.SetTable([]int32{1}, 17), ErrBadInput},
		{"-1 positions", kv.SetTable([]int32{1}, -1), ErrBadInput},
		{"blocks without memory", kv.SetTable([]int32{1, 2}, 5), backend.ErrOutOfMemory},
		{"copy from a block never used", p.CopyBlock(1, 2, 4), ErrBadInput},
		{"copy into block 9", p.CopyBlock(9, 2, 4), ErrBadInput},
		{"Reserve on a pool cache", kv.Reserve(1), ErrBadInput},
	} {
		if !errors.Is(tc.err, tc.match) {
			t.Errorf("%s: %v, want an error matching %v", tc.name, tc.err, tc.match)
		}
	}
	if kv.Len() != 0 || kv.Cap() != 0 || len(kv.Table()) != 0 || kv.Bytes() != 0 || p.Bytes() != 0 {
		t.Errorf("after refused calls: %d positions, capacity %d, table %v, %d bytes; pool %d bytes", kv.Len(), kv.Cap(), kv.Table(), kv.Bytes(), p.Bytes())
	}
	if _, err := b.NewKVCache(20); !errors.Is(err, backend.ErrOutOfMemory) {
		t.Errorf("a standalone cache without memory: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := kv.SetTable([]int32{1}, 0); !errors.Is(err, ErrBadInput) {
		t.Errorf("SetTable on a closed pool's cache: %v", err)
	}
	if err := p.CopyBlock(1, 1, 1); !errors.Is(err, ErrBadInput) {
		t.Errorf("CopyBlock on a closed pool: %v", err)
	}
}
