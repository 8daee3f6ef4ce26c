package grammar

import (
	"slices"
	"unicode/utf8"
)

// cpRange is an inclusive range of code points.
type cpRange struct{ lo, hi rune }

// normalize sorts and merges ranges, drops the surrogates and clips to
// Unicode.
func normalize(rs []cpRange) []cpRange {
	var out []cpRange
	for _, r := range rs {
		if r.lo < 0 {
			r.lo = 0
		}
		if r.hi > utf8.MaxRune {
			r.hi = utf8.MaxRune
		}
		if r.lo > r.hi {
			continue
		}
		// Surrogates have no UTF-8 encoding.
		if r.lo < 0xD800 && r.hi > 0xDFFF {
			out = append(out, cpRange{r.lo, 0xD7FF}, cpRange{0xE000, r.hi})
			continue
		}
		if r.lo >= 0xD800 && r.hi <= 0xDFFF {
			continue
		}
		if r.lo >= 0xD800 && r.lo <= 0xDFFF {
			r.lo = 0xE000
		}
		if r.hi >= 0xD800 && r.hi <= 0xDFFF {
			r.hi = 0xD7FF
		}
		if r.lo <= r.hi {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b cpRange) int { return int(a.lo - b.lo) })
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 && r.lo <= merged[n-1].hi+1 {
			merged[n-1].hi = max(merged[n-1].hi, r.hi)
			continue
		}
		merged = append(merged, r)
	}
	return merged
}

// complement returns the code points not in rs (rs normalized).
func complement(rs []cpRange) []cpRange {
	var out []cpRange
	next := rune(0)
	for _, r := range rs {
		if r.lo > next {
			out = append(out, cpRange{next, r.lo - 1})
		}
		next = r.hi + 1
	}
	if next <= utf8.MaxRune {
		out = append(out, cpRange{next, utf8.MaxRune})
	}
	return normalize(out)
}

// classAlts turns a set of code points into alternatives over bytes: one
// alternative for all the ASCII members (a single byte set) and one per run
// of multi-byte encodings whose bytes vary as ranges.
func classAlts(rs []cpRange) [][]item {
	rs = normalize(rs)
	var ascii byteSet
	var alts [][]item
	for _, r := range rs {
		utf8Split(r.lo, r.hi, func(seq [][2]byte) {
			if len(seq) == 1 {
				ascii.addRange(seq[0][0], seq[0][1])
				return
			}
			alt := make([]item, len(seq))
			for i, br := range seq {
				var s byteSet
				s.addRange(br[0], br[1])
				alt[i] = item{term: true, set: s}
			}
			alts = append(alts, alt)
		})
	}
	if !ascii.empty() {
		alts = append([][]item{{{term: true, set: ascii}}}, alts...)
	}
	return alts
}

// utf8Split calls emit with byte-range sequences whose concatenated
// products are exactly the UTF-8 encodings of [lo, hi] (no surrogates
// inside).
func utf8Split(lo, hi rune, emit func([][2]byte)) {
	if lo > hi {
		return
	}
	for _, m := range []rune{0x7F, 0x7FF, 0xFFFF} {
		if lo <= m && m < hi {
			utf8Split(lo, m, emit)
			utf8Split(m+1, hi, emit)
			return
		}
	}
	if hi <= 0x7F {
		emit([][2]byte{{byte(lo), byte(hi)}})
		return
	}
	for i := uint(1); i < 4; i++ {
		m := rune(1)<<(6*i) - 1
		if lo&^m != hi&^m {
			if lo&m != 0 {
				utf8Split(lo, lo|m, emit)
				utf8Split((lo|m)+1, hi, emit)
				return
			}
			if hi&m != m {
				utf8Split(lo, (hi&^m)-1, emit)
				utf8Split(hi&^m, hi, emit)
				return
			}
		}
	}
	var a, b [4]byte
	n := utf8.EncodeRune(a[:], lo)
	utf8.EncodeRune(b[:], hi)
	seq := make([][2]byte, n)
	for i := range n {
		seq[i] = [2]byte{a[i], b[i]}
	}
	emit(seq)
}
