package tokenizer

// StreamingDecoder turns ids that arrive one by one into text. It emits only
// complete UTF-8: a character whose bytes are split across tokens is held
// until the token that completes it arrives, so a split character never
// shows as U+FFFD. Bytes that can never become valid UTF-8 are emitted as
// U+FFFD exactly as Decode renders them, so the concatenation of everything
// Add and Flush return equals Decode of the same ids with the same options.
//
// A StreamingDecoder is not safe for concurrent use; use one per sequence.
type StreamingDecoder struct {
	t       *Tokenizer
	opts    DecodeOptions
	strip   bool
	pending []byte
}

// NewStreamingDecoder returns a decoder for one stream of ids.
func (t *Tokenizer) NewStreamingDecoder(opts DecodeOptions) *StreamingDecoder {
	return &StreamingDecoder{t: t, opts: opts,
		strip: opts.StripSpacePrefix && t.model == ModelSPM && t.addSpace}
}

// Add appends one id and returns the text that is now complete ("" when the
// token ended inside a character or produces no text). An id outside the
// vocabulary is an IdNotFound error and changes nothing.
func (d *StreamingDecoder) Add(id int32) (string, error) {
	p, err := d.t.pieceFor(id, d.opts)
	if err != nil {
		return "", err
	}
	if len(p) == 0 {
		return "", nil
	}
	if d.strip {
		d.strip = false
		if p[0] == ' ' {
			p = p[1:]
		}
	}
	d.pending = append(d.pending, p...)
	out, used := appendValidUTF8Partial(nil, d.pending, false)
	d.pending = append(d.pending[:0], d.pending[used:]...)
	return string(out), nil
}

// Flush ends the stream: it returns what is still held (an incomplete
// character at the end of the stream comes out as U+FFFD) and resets the
// decoder for a new stream.
func (d *StreamingDecoder) Flush() string {
	out, _ := appendValidUTF8Partial(nil, d.pending, true)
	d.pending = d.pending[:0]
	d.strip = d.opts.StripSpacePrefix && d.t.model == ModelSPM && d.t.addSpace
	return string(out)
}

// Pending reports how many bytes are held back waiting for the rest of a character.
func (d *StreamingDecoder) Pending() int { return len(d.pending) }

const replacementChar = "\uFFFD"

// appendValidUTF8 appends b to dst, replacing each maximal ill-formed subpart
// with U+FFFD.
func appendValidUTF8(dst, b []byte, atEOF bool) []byte {
	out, _ := appendValidUTF8Partial(dst, b, atEOF)
	return out
}

// appendValidUTF8Partial converts b like appendValidUTF8 but, unless atEOF,
// stops before a trailing incomplete (still completable) character; it
// returns how many bytes of b it consumed.
func appendValidUTF8Partial(dst, b []byte, atEOF bool) ([]byte, int) {
	i := 0
	for i < len(b) {
		c := b[i]
		if c < 0x80 {
			dst = append(dst, c)
			i++
			continue
		}
		need, lo, hi := utf8Lead(c)
		if need == 0 {
			dst = append(dst, replacementChar...)
			i++
			continue
		}
		k := 1 // bytes of the sequence seen and valid so far
		for k <= need && i+k < len(b) {
			x := b[i+k]
			if k == 1 {
				if x < lo || x > hi {
					break
				}
			} else if x < 0x80 || x > 0xBF {
				break
			}
			k++
		}
		switch {
		case k == need+1:
			dst = append(dst, b[i:i+k]...)
		case i+k == len(b) && !atEOF:
			return dst, i // incomplete: wait for more bytes
		default:
			dst = append(dst, replacementChar...)
		}
		i += k
	}
	return dst, i
}

// utf8Lead returns, for a lead byte ≥ 0x80, the number of continuation bytes
// and the allowed range of the first one (Unicode Table 3-7); need is 0 for
// a byte that cannot start a character.
func utf8Lead(c byte) (need int, lo, hi byte) {
	switch {
	case c >= 0xC2 && c <= 0xDF:
		return 1, 0x80, 0xBF
	case c == 0xE0:
		return 2, 0xA0, 0xBF
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		return 2, 0x80, 0xBF
	case c == 0xED:
		return 2, 0x80, 0x9F
	case c == 0xF0:
		return 3, 0x90, 0xBF
	case c >= 0xF1 && c <= 0xF3:
		return 3, 0x80, 0xBF
	case c == 0xF4:
		return 3, 0x80, 0x8F
	}
	return 0, 0, 0
}
