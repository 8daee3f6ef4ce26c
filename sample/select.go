package sample

import (
	"cmp"
	"math"
	"slices"
)

// worse reports whether a ranks below b: a smaller logit, or the same logit
// and a larger id.
func worse(a, b Candidate) bool {
	return a.Logprob < b.Logprob || (a.Logprob == b.Logprob && a.ID > b.ID)
}

// cmpDesc orders candidates by decreasing logit, then increasing id.
func cmpDesc(a, b Candidate) int {
	switch {
	case a.Logprob > b.Logprob:
		return -1
	case a.Logprob < b.Logprob:
		return 1
	}
	return cmp.Compare(a.ID, b.ID)
}

// sortDesc sorts c by decreasing logit, then increasing id.
func sortDesc(c []Candidate) { slices.SortFunc(c, cmpDesc) }

// SortCandidates sorts c by decreasing logit (Logprob), then increasing id:
// the order SampleTop wants, for a backend whose selection comes unordered.
func SortCandidates(c []Candidate) { sortDesc(c) }

// topKHeap appends to dst[:0] the k largest entries of src (1 <= k <=
// len(src); ties go to the lower index; NaN counts as -Inf) as candidates
// whose Logprob holds the value, in heap order. It allocates only when
// cap(dst) < k.
func topKHeap(src []float32, k int, dst []Candidate) []Candidate {
	h := dst[:0]
	for i, v := range src[:k] {
		if v != v {
			v = float32(math.Inf(-1))
		}
		h = append(h, Candidate{ID: int32(i), Logprob: v})
	}
	for i := k/2 - 1; i >= 0; i-- {
		siftDown(h, i)
	}
	// h[0] is the worst kept entry. A later index loses ties, so only a
	// strictly larger value (never NaN) can replace it.
	thr := h[0].Logprob
	for i := k; i < len(src); i++ {
		if v := src[i]; v > thr {
			h[0] = Candidate{ID: int32(i), Logprob: v}
			siftDown(h, 0)
			thr = h[0].Logprob
		}
	}
	return h
}

// siftDown restores the min-heap (worst at the root) below index i.
func siftDown(h []Candidate, i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && worse(h[r], h[l]) {
			c = r
		}
		if !worse(h[c], h[i]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// topPSorted keeps the prefix of set (sorted by decreasing logit, largest m)
// whose softmax probability first reaches p.
func topPSorted(set []Candidate, m, p float64) []Candidate {
	z := 0.0
	for _, c := range set {
		z += weight(c.Logprob, m, 1)
	}
	target := p * z
	cum := 0.0
	for i, c := range set {
		cum += weight(c.Logprob, m, 1)
		if cum >= target {
			return set[:i+1]
		}
	}
	return set
}

// minPFilter keeps, in order, the candidates with logit - m >= lnMinP.
func minPFilter(set []Candidate, m, lnMinP float64) []Candidate {
	j := 0
	for _, c := range set {
		if float64(c.Logprob)-m >= lnMinP {
			set[j] = c
			j++
		}
	}
	return set[:j]
}

// minPAll appends to dst the entries of src with value - m >= lnMinP, in
// index order.
func minPAll(src []float32, m, lnMinP float64, dst []Candidate) []Candidate {
	for i, v := range src {
		if float64(v)-m >= lnMinP {
			dst = append(dst, Candidate{ID: int32(i), Logprob: v})
		}
	}
	return dst
}

// Histogram selection. Candidates are put into nBuckets buckets by their
// distance below the largest logit m, finest over the range actually used
// (capped at maxSpan nats; everything further below shares the last bucket).
// A selection walks the buckets from the top until the count or mass it needs
// is reached, keeps every bucket above that one whole, and sorts only the
// bucket in which the cut falls. Equal logits always share a bucket, so the
// result is the same set a full sort by (logit desc, id asc) would give.
const (
	nBuckets = 1024
	maxSpan  = 40
)

// bucketer maps a logit to its bucket.
type bucketer struct{ m, scale float64 }

// newBucketer spreads [m - span, m] over the first nBuckets-1 buckets, where
// span is the distance from m to lo, the smallest finite logit, capped at
// maxSpan.
func newBucketer(m, lo float64) bucketer {
	span := min(m-lo, maxSpan)
	if !(span > 0) {
		span = 1
	}
	return bucketer{m: m, scale: (nBuckets - 1) / span}
}

// minFiniteSet returns the smallest finite logit of set, or m if none is
// smaller.
func minFiniteSet(set []Candidate, m float64) float64 {
	lo := float32(m)
	for _, c := range set {
		if v := c.Logprob; v < lo && v > float32(math.Inf(-1)) {
			lo = v
		}
	}
	return float64(lo)
}

// minFinite returns the smallest finite value of src, or m if none is
// smaller.
func minFinite(src []float32, m float64) float64 {
	lo := float32(m)
	for _, v := range src {
		if v < lo && v > float32(math.Inf(-1)) {
			lo = v
		}
	}
	return float64(lo)
}

// of returns the bucket of logit v (<= m); -Inf and NaN go to the last one.
func (b bucketer) of(v float32) int {
	d := (b.m - float64(v)) * b.scale
	if !(d < nBuckets-1) {
		return nBuckets - 1
	}
	return int(d)
}

// split moves the candidates of buckets above cut to the front of set (in
// their order) and those of bucket cut to s.bnd, sorted by decreasing logit
// then increasing id. It returns the front part and the sorted bucket.
func (s *Sampler) split(set []Candidate, bk bucketer, cut int) ([]Candidate, []Candidate) {
	bnd := s.bnd[:0]
	j := 0
	for _, c := range set {
		switch b := bk.of(c.Logprob); {
		case b < cut:
			set[j] = c
			j++
		case b == cut:
			bnd = append(bnd, c)
		}
	}
	s.bnd = bnd
	sortDesc(bnd)
	return set[:j], bnd
}

// selectCount keeps the k (< len(set)) candidates with the largest logits
// (ties to the lower id); the result is not sorted.
func (s *Sampler) selectCount(set []Candidate, m float64, k int) []Candidate {
	bk := newBucketer(m, minFiniteSet(set, m))
	clear(s.bcnt[:])
	for _, c := range set {
		s.bcnt[bk.of(c.Logprob)]++
	}
	cut, above := nBuckets-1, 0
	for b, n := range s.bcnt[:] {
		if above+int(n) >= k {
			cut = b
			break
		}
		above += int(n)
	}
	front, bnd := s.split(set, bk, cut)
	return append(front, bnd[:k-len(front)]...)
}

// selectMass keeps the most likely candidates, in order of decreasing logit
// then increasing id, until their softmax probability (temperature 1, largest
// logit m) reaches p; the result is not sorted.
func (s *Sampler) selectMass(set []Candidate, m, p float64) []Candidate {
	bk := newBucketer(m, minFiniteSet(set, m))
	clear(s.bsum[:])
	s.w = grow(s.w, len(set))
	w := s.w[:len(set)]
	expSumSet(w, set, m, 1)
	for i, c := range set {
		s.bsum[bk.of(c.Logprob)] += w[i]
	}
	cut, cum, target := s.massCut(p)
	front, bnd := s.split(set, bk, cut)
	return takeMass(front, bnd, m, cum, target)
}

// selectMassAll is selectMass over all of src (ids are indices), reading src
// in place instead of copying it into candidates first.
func (s *Sampler) selectMassAll(src []float32, m, p float64) []Candidate {
	n := len(src)
	bk := newBucketer(m, minFinite(src, m))
	clear(s.bsum[:])
	s.w = grow(s.w, n)
	w := s.w[:n]
	expSum(w, src, m, 1)
	for i, v := range src {
		s.bsum[bk.of(v)] += w[i]
	}
	cut, cum, target := s.massCut(p)
	front, bnd := s.buf(n), s.bnd[:0]
	for i, v := range src {
		switch b := bk.of(v); {
		case b < cut:
			front = append(front, Candidate{ID: int32(i), Logprob: v})
		case b == cut:
			if v != v {
				v = float32(math.Inf(-1))
			}
			bnd = append(bnd, Candidate{ID: int32(i), Logprob: v})
		}
	}
	s.bnd = bnd
	sortDesc(bnd)
	return takeMass(front, bnd, m, cum, target)
}

// massCut finds, in s.bsum, the bucket in which the running mass first
// reaches p times the total. It returns that bucket, the mass of the buckets
// above it, and the target mass.
func (s *Sampler) massCut(p float64) (cut int, cum, target float64) {
	z := 0.0
	for _, x := range s.bsum[:] {
		z += x
	}
	target = p * z
	for b, x := range s.bsum[:] {
		if cum+x >= target {
			return b, cum, target
		}
		cum += x
	}
	return nBuckets - 1, cum, target
}

// takeMass appends to front the sorted boundary candidates while the mass
// cum (that of front) is below target; the one that reaches it is kept.
func takeMass(front, bnd []Candidate, m, cum, target float64) []Candidate {
	for i, c := range bnd {
		if cum >= target {
			return append(front, bnd[:i]...)
		}
		cum += weight(c.Logprob, m, 1)
	}
	return append(front, bnd...)
}
