//go:build !amd64

package cpu

// withPortable runs f: without amd64 assembly every path is the portable one.
func withPortable(_ bool, f func()) { f() }
