package backend

import (
	"errors"
	"strings"
	"testing"
)

type fakeKV struct{ n, cap int }

func (k *fakeKV) Len() int             { return k.n }
func (k *fakeKV) Cap() int             { return k.cap }
func (k *fakeKV) Bytes() int64         { return 0 }
func (k *fakeKV) Reserve(int) error    { return nil }
func (k *fakeKV) Truncate(n int) error { k.n = n; return nil }
func (k *fakeKV) Free()                {}

func TestCheckBatch(t *testing.T) {
	ok := &Seq{Tokens: []int32{1, 2}, KV: &fakeKV{0, 4}}
	for _, c := range []struct {
		name  string
		batch []*Seq
		want  string
	}{
		{"ok", []*Seq{ok}, ""},
		{"empty", nil, "empty batch"},
		{"no kv", []*Seq{ok, {Tokens: []int32{1}}}, "sequence 1 has no KV cache"},
		{"no tokens", []*Seq{{KV: &fakeKV{0, 4}}}, "sequence 0 of the batch has no tokens"},
		{"full", []*Seq{{Tokens: []int32{1, 2}, KV: &fakeKV{3, 4}}}, "needs 5 positions, its KV cache holds 4"},
		{"id too large", []*Seq{{Tokens: []int32{1, 10}, KV: &fakeKV{0, 4}}}, "token id 10 out of range [0, 10)"},
		{"negative id", []*Seq{{Tokens: []int32{-1}, KV: &fakeKV{0, 4}}}, "token id -1 out of range"},
	} {
		err := CheckBatch(c.batch, 10)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrBadBatch) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrBadBatch with %q", c.name, err, c.want)
		}
	}
}
