package backend

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDevice(t *testing.T) {
	cases := []struct {
		in   string
		want Device
		err  string // "" for success
	}{
		{"", Device{Kind: DeviceAuto}, ""},
		{"auto", Device{Kind: DeviceAuto}, ""},
		{"cpu", Device{Kind: DeviceCPU}, ""},
		{"cuda", Device{Kind: DeviceCUDA}, ""},
		{"cuda:0", Device{Kind: DeviceCUDA}, ""},
		{"cuda:3", Device{Kind: DeviceCUDA, Index: 3}, ""},
		{"cuda:007", Device{Kind: DeviceCUDA, Index: 7}, ""},
		{"cuda:65536", Device{Kind: DeviceCUDA, Index: 65536}, ""},
		{"cuda:65537", Device{}, `unknown device "cuda:65537": want auto, cpu, cuda or cuda:N with N a GPU index`},
		{"cuda:99999999999999999999", Device{}, "with N a GPU index"},
		{"cuda:", Device{}, `unknown device "cuda:": want auto, cpu, cuda or cuda:N`},
		{"cuda:1x", Device{}, "with N a GPU index"},
		{"cuda:-1", Device{}, "with N a GPU index"},
		{"cuda:+1", Device{}, "with N a GPU index"},
		{"cuda: 1", Device{}, "with N a GPU index"},
		{"cuda:0:1", Device{}, "with N a GPU index"},
		{"CPU", Device{}, `unknown device "CPU": want auto, cpu, cuda or cuda:N`},
		{" cpu", Device{}, `unknown device " cpu"`},
		{"tpu", Device{}, `unknown device "tpu": want auto, cpu, cuda or cuda:N`},
		{"gpu", Device{}, `unknown device "gpu"`},
	}
	for _, c := range cases {
		got, err := ParseDevice(c.in)
		if c.err == "" {
			if err != nil || got != c.want {
				t.Errorf("ParseDevice(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			}
			if back, err := ParseDevice(got.String()); err != nil || back != got {
				t.Errorf("ParseDevice(%q.String() = %q) = %+v, %v; want %+v", c.in, got.String(), back, err, got)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrBadDevice) || !strings.Contains(err.Error(), c.err) {
			t.Errorf("ParseDevice(%q) = %+v, %v; want an ErrBadDevice containing %q", c.in, got, err, c.err)
		}
	}
}
