package grammar

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// CompileGBNF compiles a grammar in GBNF, the notation of llama.cpp's
// grammars: rules `name ::= alternatives`, starting from `root`; string
// literals "…", character classes […] and [^…] (code points; escapes \n \t
// \r \\ \" \] \- \xHH \uHHHH \UHHHHHHHH), `.` for any character, groups
// ( … ), alternation |, and the repetitions * + ? {m} {m,} {m,n}; comments
// from # to the end of the line. Newlines need not end a rule: a rule ends
// where the next `name ::=` begins.
//
// An error says where (line and column) and why: a syntax error, an
// undefined or left-recursive rule, or a language with no string in it.
func CompileGBNF(src string) (*Grammar, error) {
	if len(src) > maxSourceLen {
		return nil, &Error{Msg: fmt.Sprintf("the grammar is %d bytes, more than the %d allowed", len(src), maxSourceLen)}
	}
	if !utf8.ValidString(src) {
		return nil, &Error{Msg: "the grammar is not valid UTF-8"}
	}
	p := &parser{src: src, b: newBuilder(), used: map[string]int{}}
	if err := p.parse(); err != nil {
		return nil, err
	}
	for name, off := range p.used {
		if _, ok := p.defined[name]; !ok {
			return nil, p.errAt(off, fmt.Sprintf("rule %q is used but never defined", name))
		}
	}
	if _, ok := p.defined["root"]; !ok {
		return nil, &Error{Line: 1, Col: 1, Msg: `no rule named "root" (the start symbol): add root ::= …`}
	}
	g, err := p.b.finish("root")
	if err != nil {
		return nil, err
	}
	g.src = src
	return g, nil
}

type parser struct {
	src     string
	pos     int
	b       *builder
	used    map[string]int // rule name → offset of its first use
	defined map[string]int
	depth   int
}

func (p *parser) errAt(off int, msg string) *Error {
	line, col := 1, 1
	for i, r := range p.src[:min(off, len(p.src))] {
		_ = i
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return &Error{Line: line, Col: col, Offset: off, Msg: msg}
}

func (p *parser) skipSpace() {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			p.pos++
		case c == '#':
			for p.pos < len(p.src) && p.src[p.pos] != '\n' {
				p.pos++
			}
		default:
			return
		}
	}
}

func isWordChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func (p *parser) name() string {
	start := p.pos
	for p.pos < len(p.src) && isWordChar(p.src[p.pos]) {
		p.pos++
	}
	return p.src[start:p.pos]
}

// atRuleStart reports whether `name ::=` follows.
func (p *parser) atRuleStart() bool {
	save := p.pos
	defer func() { p.pos = save }()
	if p.name() == "" {
		return false
	}
	p.skipSpace()
	return len(p.src)-p.pos >= 3 && p.src[p.pos:p.pos+3] == "::="
}

func (p *parser) parse() error {
	p.defined = map[string]int{}
	for {
		p.skipSpace()
		if p.pos >= len(p.src) {
			return nil
		}
		start := p.pos
		name := p.name()
		if name == "" {
			return p.errAt(p.pos, fmt.Sprintf("expected a rule name, found %q", p.peekText()))
		}
		p.skipSpace()
		if len(p.src)-p.pos < 3 || p.src[p.pos:p.pos+3] != "::=" {
			return p.errAt(p.pos, fmt.Sprintf("expected ::= after rule name %q, found %q", name, p.peekText()))
		}
		p.pos += 3
		if _, dup := p.defined[name]; dup {
			return p.errAt(start, fmt.Sprintf("rule %q is defined twice", name))
		}
		p.defined[name] = start
		id := p.b.ruleID(name)
		alts, err := p.alternates()
		if err != nil {
			return err
		}
		p.b.setAlts(id, alts)
		if p.b.err != nil {
			return p.b.err
		}
		p.skipSpace()
		if p.pos < len(p.src) && !p.atRuleStart() {
			return p.errAt(p.pos, fmt.Sprintf("unexpected %q (a rule ends where the next `name ::=` begins)", p.peekText()))
		}
	}
}

func (p *parser) peekText() string {
	end := min(p.pos+12, len(p.src))
	for end < len(p.src) && !utf8.RuneStart(p.src[end]) {
		end++
	}
	if p.pos >= len(p.src) {
		return "end of input"
	}
	return p.src[p.pos:end]
}

func (p *parser) alternates() ([][]item, error) {
	var alts [][]item
	for {
		seq, err := p.sequence()
		if err != nil {
			return nil, err
		}
		alts = append(alts, seq)
		p.skipSpace()
		if p.pos < len(p.src) && p.src[p.pos] == '|' {
			p.pos++
			continue
		}
		return alts, nil
	}
}

func (p *parser) sequence() ([]item, error) {
	var seq []item
	for {
		p.skipSpace()
		if p.pos >= len(p.src) {
			return seq, nil
		}
		c := p.src[p.pos]
		if c == '|' || c == ')' || p.atRuleStart() {
			return seq, nil
		}
		start := p.pos
		var atom []item
		switch {
		case c == '"':
			s, err := p.literal()
			if err != nil {
				return nil, err
			}
			atom = literal(s)
		case c == '[':
			rs, err := p.class()
			if err != nil {
				return nil, err
			}
			alts := classAlts(rs)
			atom = []item{ref(p.b.anon("class", alts))}
		case c == '.':
			p.pos++
			atom = []item{ref(p.b.anon("any", classAlts([]cpRange{{0, utf8.MaxRune}})))}
		case c == '(':
			p.pos++
			p.depth++
			if p.depth > 100 {
				return nil, p.errAt(start, "groups nested more than 100 deep")
			}
			alts, err := p.alternates()
			if err != nil {
				return nil, err
			}
			p.depth--
			p.skipSpace()
			if p.pos >= len(p.src) || p.src[p.pos] != ')' {
				return nil, p.errAt(start, "unclosed group: ( without )")
			}
			p.pos++
			atom = []item{ref(p.b.anon("group", alts))}
		case isWordChar(c):
			name := p.name()
			if _, ok := p.used[name]; !ok {
				p.used[name] = start
			}
			atom = []item{ref(p.b.ruleID(name))}
		default:
			return nil, p.errAt(p.pos, fmt.Sprintf("unexpected %q", p.peekText()))
		}
		// Postfix repetition (several may follow: x?*).
		for {
			if p.pos >= len(p.src) {
				break
			}
			lo, hi := -1, -1
			switch p.src[p.pos] {
			case '*':
				lo, hi = 0, -1
				p.pos++
			case '+':
				lo, hi = 1, -1
				p.pos++
			case '?':
				lo, hi = 0, 1
				p.pos++
			case '{':
				var err error
				lo, hi, err = p.braces()
				if err != nil {
					return nil, err
				}
			}
			if lo < 0 {
				break
			}
			// Wrap the atom in a rule so that repetition applies to it whole.
			if len(atom) != 1 || atom[0].term {
				atom = []item{ref(p.b.anon("seq", [][]item{atom}))}
			}
			atom = []item{ref(p.b.anon("rep", [][]item{p.b.repeat(atom, lo, hi)}))}
			if p.b.err != nil {
				return nil, p.b.err
			}
		}
		seq = append(seq, atom...)
		if len(seq) > MaxElems {
			return nil, p.errAt(start, "the grammar is too large")
		}
	}
}

// braces parses {m}, {m,}, {m,n} or {,n}.
func (p *parser) braces() (lo, hi int, err error) {
	start := p.pos
	p.pos++
	num := func() (int, bool) {
		s := p.pos
		for p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '9' {
			p.pos++
		}
		if s == p.pos {
			return 0, false
		}
		n, err := strconv.Atoi(p.src[s:p.pos])
		if err != nil || n > MaxRepeat {
			return MaxRepeat + 1, true
		}
		return n, true
	}
	p.skipSpace()
	lo, okLo := num()
	p.skipSpace()
	hi = lo
	if p.pos < len(p.src) && p.src[p.pos] == ',' {
		p.pos++
		p.skipSpace()
		var okHi bool
		hi, okHi = num()
		if !okHi {
			hi = -1
		}
		p.skipSpace()
		if !okLo {
			lo = 0
		}
	} else if !okLo {
		return 0, 0, p.errAt(start, "expected a count in {m}, {m,}, {m,n} or {,n}")
	}
	if p.pos >= len(p.src) || p.src[p.pos] != '}' {
		return 0, 0, p.errAt(start, "unclosed repetition: { without }")
	}
	p.pos++
	if lo > MaxRepeat || hi > MaxRepeat {
		return 0, 0, p.errAt(start, fmt.Sprintf("a repetition bound above %d", MaxRepeat))
	}
	if hi >= 0 && hi < lo {
		return 0, 0, p.errAt(start, fmt.Sprintf("repetition {%d,%d}: the maximum is below the minimum", lo, hi))
	}
	return lo, hi, nil
}

// escape reads an escape after a backslash at p.pos (which points past it).
func (p *parser) escape(start int) (rune, error) {
	if p.pos >= len(p.src) {
		return 0, p.errAt(start, "unfinished escape at the end of input")
	}
	c := p.src[p.pos]
	p.pos++
	hex := func(n int) (rune, error) {
		if p.pos+n > len(p.src) {
			return 0, p.errAt(start, fmt.Sprintf("\\%c needs %d hex digits", c, n))
		}
		v, err := strconv.ParseUint(p.src[p.pos:p.pos+n], 16, 32)
		if err != nil {
			return 0, p.errAt(start, fmt.Sprintf("\\%c needs %d hex digits, found %q", c, n, p.src[p.pos:p.pos+n]))
		}
		p.pos += n
		if v > utf8.MaxRune {
			return 0, p.errAt(start, fmt.Sprintf("code point U+%X is beyond Unicode", v))
		}
		return rune(v), nil
	}
	switch c {
	case 'n':
		return '\n', nil
	case 't':
		return '\t', nil
	case 'r':
		return '\r', nil
	case 'x':
		return hex(2)
	case 'u':
		return hex(4)
	case 'U':
		return hex(8)
	case '\\', '"', '[', ']', '-', '^', '\'', '/', '.', '(', ')', '|', '*', '+', '?', '{', '}', '#', ' ':
		return rune(c), nil
	}
	return 0, p.errAt(start, fmt.Sprintf("unknown escape \\%c", c))
}

// literal parses "…" and returns its bytes (code points as UTF-8; \xHH
// below 0x80 as that byte, above as the code point's encoding, as llama.cpp
// does).
func (p *parser) literal() (string, error) {
	start := p.pos
	p.pos++
	var out []byte
	for {
		if p.pos >= len(p.src) {
			return "", p.errAt(start, "unterminated string literal")
		}
		r, size := utf8.DecodeRuneInString(p.src[p.pos:])
		switch r {
		case '"':
			p.pos++
			return string(out), nil
		case '\\':
			esc := p.pos
			p.pos++
			v, err := p.escape(esc)
			if err != nil {
				return "", err
			}
			out = utf8.AppendRune(out, v)
		default:
			p.pos += size
			out = utf8.AppendRune(out, r)
		}
	}
}

// class parses […] or [^…] into code point ranges.
func (p *parser) class() ([]cpRange, error) {
	start := p.pos
	p.pos++
	neg := false
	if p.pos < len(p.src) && p.src[p.pos] == '^' {
		neg = true
		p.pos++
	}
	var rs []cpRange
	char := func() (rune, error) {
		r, size := utf8.DecodeRuneInString(p.src[p.pos:])
		if r == '\\' {
			esc := p.pos
			p.pos++
			return p.escape(esc)
		}
		p.pos += size
		return r, nil
	}
	for {
		if p.pos >= len(p.src) {
			return nil, p.errAt(start, "unterminated character class: [ without ]")
		}
		if p.src[p.pos] == ']' {
			p.pos++
			break
		}
		lo, err := char()
		if err != nil {
			return nil, err
		}
		hi := lo
		if p.pos+1 < len(p.src) && p.src[p.pos] == '-' && p.src[p.pos+1] != ']' {
			p.pos++
			if hi, err = char(); err != nil {
				return nil, err
			}
			if hi < lo {
				return nil, p.errAt(start, fmt.Sprintf("character range %q-%q is reversed", lo, hi))
			}
		}
		rs = append(rs, cpRange{lo, hi})
	}
	rs = normalize(rs)
	if neg {
		rs = complement(rs)
	}
	return rs, nil
}
