package grammar

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
)

// JSON grammar pieces shared by the schema compiler and JSONObject. The
// whitespace between tokens is bounded (a newline and up to 20 spaces or
// tabs), so a model cannot loop in whitespace forever.
const jsonCommon = `ws ::= ([ \t] | "\n" [ \t]{0,20})?
json-char ::= [^"\\\x00-\x1F\x7F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
json-string ::= "\"" json-char* "\""
json-int ::= "-"? ("0" | [1-9] [0-9]{0,15})
json-number ::= json-int ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?
json-value ::= json-object | json-array | json-string | json-number | "true" | "false" | "null"
json-object ::= "{" ws (json-string ws ":" ws json-value ws ("," ws json-string ws ":" ws json-value ws)*)? "}"
json-array ::= "[" ws (json-value ws ("," ws json-value ws)*)? "]"
`

// JSONObject returns the grammar of a JSON object (OpenAI's
// response_format json_object): any object, whitespace bounded.
func JSONObject() *Grammar {
	g, err := CompileGBNF("root ::= json-object\n" + jsonCommon)
	if err != nil {
		panic("grammar: the built-in JSON grammar does not compile: " + err.Error())
	}
	return g
}

// Schema keywords: those compiled, and those that only annotate.
var (
	schemaAnnotations = []string{"title", "description", "default", "examples", "$schema", "$id", "$comment",
		"deprecated", "readOnly", "writeOnly", "strict", "name", "contentMediaType", "contentEncoding"}
	schemaKeywords = []string{"type", "properties", "required", "additionalProperties", "items", "prefixItems",
		"minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "$ref", "$defs", "definitions", "minLength",
		"maxLength", "pattern", "format", "nullable"}
)

// jv is a JSON value that keeps the order of object members.
type jv struct {
	kind byte // 'o' object, 'a' array, 's' string, 'n' number, 'b' bool, 'z' null
	obj  []member
	arr  []jv
	str  string
	num  json.Number
	b    bool
}

type member struct {
	key string
	val jv
}

func (v *jv) get(k string) (jv, bool) {
	for _, m := range v.obj {
		if m.key == k {
			return m.val, true
		}
	}
	return jv{}, false
}

func parseOrdered(data []byte) (jv, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	v, err := decodeValue(d, 0)
	if err != nil {
		return jv{}, err
	}
	if _, err := d.Token(); err != io.EOF {
		return jv{}, fmt.Errorf("data after the schema")
	}
	return v, nil
}

func decodeValue(d *json.Decoder, depth int) (jv, error) {
	if depth > 128 {
		return jv{}, fmt.Errorf("nested more than 128 deep")
	}
	t, err := d.Token()
	if err != nil {
		return jv{}, err
	}
	switch t := t.(type) {
	case json.Delim:
		switch t {
		case '{':
			v := jv{kind: 'o'}
			for d.More() {
				kt, err := d.Token()
				if err != nil {
					return jv{}, err
				}
				k, _ := kt.(string)
				val, err := decodeValue(d, depth+1)
				if err != nil {
					return jv{}, err
				}
				v.obj = append(v.obj, member{k, val})
			}
			_, err := d.Token()
			return v, err
		case '[':
			v := jv{kind: 'a'}
			for d.More() {
				val, err := decodeValue(d, depth+1)
				if err != nil {
					return jv{}, err
				}
				v.arr = append(v.arr, val)
			}
			_, err := d.Token()
			return v, err
		}
	case string:
		return jv{kind: 's', str: t}, nil
	case json.Number:
		return jv{kind: 'n', num: t}, nil
	case bool:
		return jv{kind: 'b', b: t}, nil
	case nil:
		return jv{kind: 'z'}, nil
	}
	return jv{}, fmt.Errorf("unexpected token %v", t)
}

// encode writes v as compact JSON.
func (v jv) encode(sb *strings.Builder) {
	switch v.kind {
	case 'o':
		sb.WriteByte('{')
		for i, m := range v.obj {
			if i > 0 {
				sb.WriteByte(',')
			}
			b, _ := json.Marshal(m.key)
			sb.Write(b)
			sb.WriteByte(':')
			m.val.encode(sb)
		}
		sb.WriteByte('}')
	case 'a':
		sb.WriteByte('[')
		for i, e := range v.arr {
			if i > 0 {
				sb.WriteByte(',')
			}
			e.encode(sb)
		}
		sb.WriteByte(']')
	case 's':
		b, _ := json.Marshal(v.str)
		sb.Write(b)
	case 'n':
		sb.WriteString(v.num.String())
	case 'b':
		sb.WriteString(strconv.FormatBool(v.b))
	default:
		sb.WriteString("null")
	}
}

// gbnfLiteral quotes s as a GBNF string literal.
func gbnfLiteral(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			sb.WriteByte('\\')
			sb.WriteRune(r)
		case r < 0x20 || r == 0x7F:
			fmt.Fprintf(&sb, "\\x%02X", r)
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

// schemaCompiler turns a schema into GBNF rules.
type schemaCompiler struct {
	root  jv
	rules []string
	n     int
	refs  map[string]string // JSON pointer → rule name
	depth int
}

// CompileSchema compiles a JSON Schema into the grammar of the JSON texts
// that satisfy it: what OpenAI's strict structured outputs support (type,
// also as a list; object with properties, required and additionalProperties;
// string, number, integer, boolean, null; enum, const; arrays with items,
// prefixItems, minItems, maxItems; anyOf; $ref into $defs/definitions or
// any JSON pointer in the schema, recursion included), string minLength,
// maxLength, pattern (Go regexp syntax, matched whole) and format (date,
// time, date-time, uuid, email). oneOf is compiled as anyOf when its
// branches are of different types. Annotations (title, description,
// default, examples, …) are ignored; any other keyword is an error that
// names it, as is a schema whose language is empty.
//
// Properties come in the schema's order; optional ones may be left out. An
// object allows members beyond its properties only when
// additionalProperties is true or a schema (not when it is absent: the
// texts produced are then still valid, only never with extra members).
// Whitespace between tokens is bounded (see JSONObject).
func CompileSchema(schema []byte) (*Grammar, error) {
	return CompileSchemaWrapped(schema, nil)
}

// CompileSchemaWrapped is CompileSchema with the JSON value placed inside
// a larger sentence: wrap receives the GBNF expression of the value and
// returns the body of the grammar's root rule (for example
// `"<tool_call>\n" ` + v + ` "\n</tool_call>"`); the rules ws (bounded
// whitespace) and json-value are available to it. A nil wrap is the value
// alone.
func CompileSchemaWrapped(schema []byte, wrap func(value string) string) (*Grammar, error) {
	if len(schema) > maxSourceLen {
		return nil, &Error{Path: "#", Msg: fmt.Sprintf("the schema is %d bytes, more than the %d allowed", len(schema), maxSourceLen)}
	}
	root, err := parseOrdered(schema)
	if err != nil {
		return nil, &Error{Path: "#", Msg: "not valid JSON: " + err.Error()}
	}
	c := &schemaCompiler{root: root, refs: map[string]string{}}
	top, err := c.compile(root, "#")
	if err != nil {
		return nil, err
	}
	if wrap != nil {
		top = wrap(top)
	}
	src := "root ::= " + top + "\n" + strings.Join(c.rules, "") + jsonCommon
	g, err := CompileGBNF(src)
	if err != nil {
		if e, ok := err.(*Error); ok {
			return nil, &Error{Path: "#", Msg: e.Msg}
		}
		return nil, err
	}
	return g, nil
}

func (c *schemaCompiler) rule(body string) string {
	c.n++
	name := fmt.Sprintf("s%d", c.n)
	c.rules = append(c.rules, name+" ::= "+body+"\n")
	return name
}

func (c *schemaCompiler) errf(path, format string, args ...any) error {
	return &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// compile returns a GBNF expression (a rule name or a parenthesised
// expression) for the schema s at path.
func (c *schemaCompiler) compile(s jv, path string) (string, error) {
	c.depth++
	defer func() { c.depth-- }()
	if c.depth > 64 || c.n > 20000 {
		return "", c.errf(path, "the schema is nested too deeply or too large")
	}
	switch s.kind {
	case 'b':
		if s.b {
			return "json-value", nil
		}
		return "", c.errf(path, "the schema false allows no value")
	case 'o':
	default:
		return "", c.errf(path, "a schema must be an object or a boolean")
	}
	for _, m := range s.obj {
		if !slices.Contains(schemaKeywords, m.key) && !slices.Contains(schemaAnnotations, m.key) {
			return "", c.errf(path, "keyword %q is not supported (supported: %s)", m.key, strings.Join(schemaKeywords, ", "))
		}
	}
	if r, ok := s.get("$ref"); ok {
		if len(s.obj) > 1 {
			for _, m := range s.obj {
				if m.key != "$ref" && m.key != "$defs" && m.key != "definitions" && !slices.Contains(schemaAnnotations, m.key) {
					return "", c.errf(path, "keyword %q beside $ref is not supported", m.key)
				}
			}
		}
		return c.ref(r, path)
	}
	if e, ok := s.get("const"); ok {
		var sb strings.Builder
		e.encode(&sb)
		return gbnfLiteral(sb.String()), nil
	}
	if e, ok := s.get("enum"); ok {
		if e.kind != 'a' || len(e.arr) == 0 {
			return "", c.errf(path+"/enum", "enum must be a non-empty array")
		}
		alts := make([]string, len(e.arr))
		for i, v := range e.arr {
			var sb strings.Builder
			v.encode(&sb)
			alts[i] = gbnfLiteral(sb.String())
		}
		return "(" + strings.Join(alts, " | ") + ")", nil
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		if e, ok := s.get(kw); ok {
			if e.kind != 'a' || len(e.arr) == 0 {
				return "", c.errf(path+"/"+kw, "%s must be a non-empty array", kw)
			}
			if kw == "oneOf" && !disjointTypes(e.arr) {
				return "", c.errf(path+"/oneOf", "oneOf is supported only when its branches have different types (use anyOf)")
			}
			alts := make([]string, len(e.arr))
			for i, b := range e.arr {
				x, err := c.compile(b, fmt.Sprintf("%s/%s/%d", path, kw, i))
				if err != nil {
					return "", err
				}
				alts[i] = x
			}
			return c.rule(strings.Join(alts, " | ")), nil
		}
	}
	var types []string
	if t, ok := s.get("type"); ok {
		switch t.kind {
		case 's':
			types = []string{t.str}
		case 'a':
			for _, x := range t.arr {
				if x.kind != 's' {
					return "", c.errf(path+"/type", "type list entries must be strings")
				}
				types = append(types, x.str)
			}
		default:
			return "", c.errf(path+"/type", "type must be a string or a list of strings")
		}
		if len(types) == 0 {
			return "", c.errf(path+"/type", "type is an empty list")
		}
	} else {
		_, props := s.get("properties")
		_, items := s.get("items")
		switch {
		case props:
			types = []string{"object"}
		case items:
			types = []string{"array"}
		default:
			return "json-value", nil
		}
	}
	if n, ok := s.get("nullable"); ok && n.kind == 'b' && n.b && !slices.Contains(types, "null") {
		types = append(types, "null")
	}
	alts := make([]string, 0, len(types))
	for _, t := range types {
		x, err := c.typed(s, t, path)
		if err != nil {
			return "", err
		}
		alts = append(alts, x)
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return c.rule(strings.Join(alts, " | ")), nil
}

func disjointTypes(branches []jv) bool {
	seen := map[string]bool{}
	for _, b := range branches {
		t, ok := b.get("type")
		if !ok || t.kind != 's' || seen[t.str] || (t.str == "integer" && seen["number"]) || (t.str == "number" && seen["integer"]) {
			return false
		}
		seen[t.str] = true
	}
	return true
}

func (c *schemaCompiler) ref(r jv, path string) (string, error) {
	if r.kind != 's' || !strings.HasPrefix(r.str, "#") {
		return "", c.errf(path+"/$ref", "only local references (#/…) are supported")
	}
	if name, ok := c.refs[r.str]; ok {
		return name, nil
	}
	target := c.root
	ptr := strings.TrimPrefix(r.str, "#")
	if ptr != "" {
		if !strings.HasPrefix(ptr, "/") {
			return "", c.errf(path+"/$ref", "reference %q is not a JSON pointer", r.str)
		}
		for _, seg := range strings.Split(ptr[1:], "/") {
			seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
			var next jv
			var ok bool
			switch target.kind {
			case 'o':
				next, ok = target.get(seg)
			case 'a':
				if i, err := strconv.Atoi(seg); err == nil && i >= 0 && i < len(target.arr) {
					next, ok = target.arr[i], true
				}
			}
			if !ok {
				return "", c.errf(path+"/$ref", "reference %q names nothing in the schema", r.str)
			}
			target = next
		}
	}
	c.n++
	name := fmt.Sprintf("ref%d", c.n)
	c.refs[r.str] = name
	body, err := c.compile(target, r.str)
	if err != nil {
		return "", err
	}
	c.rules = append(c.rules, name+" ::= "+body+"\n")
	return name, nil
}

func (c *schemaCompiler) intKw(s jv, kw, path string) (int, bool, error) {
	v, ok := s.get(kw)
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v.num.String(), 10, 64)
	if v.kind != 'n' || err != nil || n < 0 {
		return 0, false, c.errf(path+"/"+kw, "%s must be a non-negative integer", kw)
	}
	if n > MaxRepeat {
		return 0, false, c.errf(path+"/"+kw, "%s above %d is not supported", kw, MaxRepeat)
	}
	return int(n), true, nil
}

func bounds(lo int, hi int, hasHi bool) string {
	switch {
	case !hasHi && lo == 0:
		return "*"
	case !hasHi && lo == 1:
		return "+"
	case !hasHi:
		return fmt.Sprintf("{%d,}", lo)
	}
	return fmt.Sprintf("{%d,%d}", lo, hi)
}

func (c *schemaCompiler) typed(s jv, t, path string) (string, error) {
	switch t {
	case "null":
		return `"null"`, nil
	case "boolean":
		return `("true" | "false")`, nil
	case "integer":
		return "json-int", nil
	case "number":
		return "json-number", nil
	case "string":
		return c.stringType(s, path)
	case "array":
		return c.arrayType(s, path)
	case "object":
		return c.objectType(s, path)
	}
	return "", c.errf(path+"/type", "unknown type %q (want null, boolean, integer, number, string, array or object)", t)
}

func (c *schemaCompiler) stringType(s jv, path string) (string, error) {
	lo, _, err := c.intKw(s, "minLength", path)
	if err != nil {
		return "", err
	}
	hi, hasHi, err := c.intKw(s, "maxLength", path)
	if err != nil {
		return "", err
	}
	if hasHi && hi < lo {
		return "", c.errf(path, "maxLength %d is below minLength %d", hi, lo)
	}
	if f, ok := s.get("format"); ok {
		body, ok := formats[f.str]
		if !ok {
			return "", c.errf(path+"/format", "format %q is not supported (supported: date, time, date-time, uuid, email)", f.str)
		}
		return c.rule(`"\"" ` + body + ` "\""`), nil
	}
	if p, ok := s.get("pattern"); ok {
		re, err := syntax.Parse(p.str, syntax.Perl)
		if err != nil {
			return "", c.errf(path+"/pattern", "pattern does not parse: %v", err)
		}
		body, err := c.regex(re.Simplify(), path+"/pattern", 0)
		if err != nil {
			return "", err
		}
		return c.rule(`"\"" ` + body + ` "\""`), nil
	}
	if lo == 0 && !hasHi {
		return "json-string", nil
	}
	return c.rule(`"\"" json-char` + bounds(lo, hi, hasHi) + ` "\""`), nil
}

var formats = map[string]string{
	"date":      `[0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | "1" [0-9] | "2" [0-8])`,
	"time":      `([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])`,
	"date-time": `[0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | "1" [0-9] | "2" [0-8]) "T" ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])`,
	"uuid":      `[0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12}`,
	"email":     `[a-zA-Z0-9] [a-zA-Z0-9._+-]{0,30} "@" [a-zA-Z0-9] [a-zA-Z0-9-]{0,30} ("." [a-zA-Z]{2,10}){1,3}`,
}

// regex turns a simplified regexp into GBNF over the characters a JSON
// string may hold unescaped (plus \" and \\ escaped): characters that JSON
// must escape otherwise are left out of classes, which keeps the strings
// produced a subset of those the pattern matches.
func (c *schemaCompiler) regex(re *syntax.Regexp, path string, depth int) (string, error) {
	if depth > 100 {
		return "", c.errf(path, "pattern nested too deeply")
	}
	sub := func() ([]string, error) {
		out := make([]string, len(re.Sub))
		for i, s := range re.Sub {
			x, err := c.regex(s, path, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	}
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText:
		return `""`, nil
	case syntax.OpLiteral:
		var parts []string
		for _, r := range re.Rune {
			parts = append(parts, jsonCharLit(r))
		}
		return "(" + strings.Join(parts, " ") + ")", nil
	case syntax.OpCharClass:
		return c.classExpr(re.Rune)
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return c.classExpr([]rune{0, 0x10FFFF})
	case syntax.OpCapture:
		return c.regex(re.Sub[0], path, depth+1)
	case syntax.OpConcat:
		s, err := sub()
		return "(" + strings.Join(s, " ") + ")", err
	case syntax.OpAlternate:
		s, err := sub()
		return "(" + strings.Join(s, " | ") + ")", err
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest:
		s, err := sub()
		if err != nil {
			return "", err
		}
		op := map[syntax.Op]string{syntax.OpStar: "*", syntax.OpPlus: "+", syntax.OpQuest: "?"}[re.Op]
		return "(" + s[0] + ")" + op, nil
	case syntax.OpRepeat:
		s, err := sub()
		if err != nil {
			return "", err
		}
		if re.Max > MaxRepeat || re.Min > MaxRepeat {
			return "", c.errf(path, "a repetition above %d", MaxRepeat)
		}
		if re.Max < 0 {
			return fmt.Sprintf("(%s){%d,}", s[0], re.Min), nil
		}
		return fmt.Sprintf("(%s){%d,%d}", s[0], re.Min, re.Max), nil
	}
	return "", c.errf(path, "pattern construct %v is not supported", re.Op)
}

// jsonCharLit is one character as it appears inside a JSON string.
func jsonCharLit(r rune) string {
	switch {
	case r == '"':
		return `"\\\""`
	case r == '\\':
		return `"\\\\"`
	case r < 0x20:
		return fmt.Sprintf(`"\\u%04x"`, r)
	}
	return gbnfLiteral(string(r))
}

// classExpr is a character class without the characters JSON escapes.
func (c *schemaCompiler) classExpr(pairs []rune) (string, error) {
	var sb strings.Builder
	sb.WriteByte('[')
	n := 0
	esc := func(r rune) string {
		if r < 0x20 || r == 0x7F || r == ']' || r == '\\' || r == '-' || r == '^' || r == '[' {
			return fmt.Sprintf(`\U%08X`, r)
		}
		return string(r)
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		for _, r := range splitOut(cpRange{pairs[i], pairs[i+1]}) {
			fmt.Fprintf(&sb, "%s-%s", esc(r.lo), esc(r.hi))
			n++
		}
	}
	sb.WriteByte(']')
	if n == 0 {
		return "", &Error{Msg: "a character class of the pattern has only characters JSON must escape"}
	}
	return sb.String(), nil
}

// splitOut removes control characters, '"' and '\\' from r.
func splitOut(r cpRange) []cpRange {
	out := []cpRange{r}
	for _, cut := range []cpRange{{0, 0x1F}, {'"', '"'}, {'\\', '\\'}, {0x7F, 0x7F}} {
		var next []cpRange
		for _, x := range out {
			if x.hi < cut.lo || x.lo > cut.hi {
				next = append(next, x)
				continue
			}
			if x.lo < cut.lo {
				next = append(next, cpRange{x.lo, cut.lo - 1})
			}
			if x.hi > cut.hi {
				next = append(next, cpRange{cut.hi + 1, x.hi})
			}
		}
		out = next
	}
	return normalize(out)
}

func (c *schemaCompiler) arrayType(s jv, path string) (string, error) {
	lo, _, err := c.intKw(s, "minItems", path)
	if err != nil {
		return "", err
	}
	hi, hasHi, err := c.intKw(s, "maxItems", path)
	if err != nil {
		return "", err
	}
	if hasHi && hi < lo {
		return "", c.errf(path, "maxItems %d is below minItems %d", hi, lo)
	}
	var prefix []string
	if p, ok := s.get("prefixItems"); ok {
		if p.kind != 'a' {
			return "", c.errf(path+"/prefixItems", "prefixItems must be an array")
		}
		for i, x := range p.arr {
			e, err := c.compile(x, fmt.Sprintf("%s/prefixItems/%d", path, i))
			if err != nil {
				return "", err
			}
			prefix = append(prefix, e)
		}
	}
	item := "json-value"
	if it, ok := s.get("items"); ok {
		if it.kind == 'b' && !it.b {
			if !hasHi || hi > len(prefix) {
				hi, hasHi = len(prefix), true
			}
			item = ""
		} else {
			if item, err = c.compile(it, path+"/items"); err != nil {
				return "", err
			}
		}
	}
	// elements: the prefix items in order (as many as the bounds allow),
	// then items; the i-th element is preceded by "," when i > 0.
	var alts []string
	var build func(i int) string
	memo := map[int]string{}
	build = func(i int) string { // the rest from element i on, at least lo in all
		if r, ok := memo[i]; ok {
			return r
		}
		if i >= len(prefix) {
			// Only `item` elements from here.
			if item == "" {
				return `""`
			}
			need := max(lo-i, 0)
			var body string
			if hasHi {
				if hi < i {
					return `""`
				}
				extra := hi - i
				body = fmt.Sprintf(`(%s){%d,%d}`, sepItem(i, item, true), need, extra)
				if i == 0 && extra > 0 {
					// first element without a comma
					first := fmt.Sprintf(`%s ws (%s){%d,%d}`, item, sepItem(1, item, true), max(need-1, 0), extra-1)
					if need == 0 {
						body = "(" + first + ")?"
					} else {
						body = first
					}
				}
			} else {
				body = fmt.Sprintf(`(%s)%s`, sepItem(i, item, true), bounds(need, 0, false))
				if i == 0 {
					first := fmt.Sprintf(`%s ws (%s)%s`, item, sepItem(1, item, true), bounds(max(need-1, 0), 0, false))
					if need == 0 {
						body = "(" + first + ")?"
					} else {
						body = first
					}
				}
			}
			memo[i] = c.rule(body)
			return memo[i]
		}
		sep := ""
		if i > 0 {
			sep = `"," ws `
		}
		with := sep + prefix[i] + " ws " + build(i+1)
		if i >= lo || (hasHi && i >= hi) {
			if hasHi && i >= hi {
				memo[i] = c.rule(`""`)
			} else {
				memo[i] = c.rule(with + ` | ""`)
			}
		} else {
			memo[i] = c.rule(with)
		}
		return memo[i]
	}
	alts = append(alts, `"[" ws `+build(0)+` "]"`)
	return c.rule(strings.Join(alts, " | ")), nil
}

// sepItem is one element after the i-th position: a comma first unless i
// is 0.
func sepItem(i int, item string, _ bool) string {
	if i == 0 {
		return item + " ws"
	}
	return `"," ws ` + item + " ws"
}

func (c *schemaCompiler) objectType(s jv, path string) (string, error) {
	props, hasProps := s.get("properties")
	if hasProps && props.kind != 'o' {
		return "", c.errf(path+"/properties", "properties must be an object")
	}
	required := map[string]bool{}
	if r, ok := s.get("required"); ok {
		if r.kind != 'a' {
			return "", c.errf(path+"/required", "required must be an array of names")
		}
		for _, x := range r.arr {
			if x.kind != 's' {
				return "", c.errf(path+"/required", "required must be an array of names")
			}
			required[x.str] = true
		}
	}
	for name := range required {
		if _, ok := props.get(name); !ok {
			return "", c.errf(path+"/required", "required property %q is not in properties", name)
		}
	}
	extra := ""
	ap, hasAP := s.get("additionalProperties")
	switch {
	case !hasProps && (!hasAP || ap.kind != 'b' || ap.b):
		if hasAP && ap.kind == 'o' {
			v, err := c.compile(ap, path+"/additionalProperties")
			if err != nil {
				return "", err
			}
			return c.rule(`"{" ws (json-string ws ":" ws ` + v + ` ws ("," ws json-string ws ":" ws ` + v + ` ws)*)? "}"`), nil
		}
		return "json-object", nil
	case hasAP && ap.kind == 'b' && ap.b:
		extra = "json-value"
	case hasAP && ap.kind == 'o':
		v, err := c.compile(ap, path+"/additionalProperties")
		if err != nil {
			return "", err
		}
		extra = v
	}
	type kv struct {
		expr string
		req  bool
	}
	var kvs []kv
	for _, m := range props.obj {
		v, err := c.compile(m.val, path+"/properties/"+m.key)
		if err != nil {
			return "", err
		}
		key, _ := json.Marshal(m.key)
		kvs = append(kvs, kv{gbnfLiteral(string(key)) + ` ws ":" ws ` + v + " ws", required[m.key]})
	}
	extraKV := ""
	if extra != "" {
		extraKV = `json-string ws ":" ws ` + extra + " ws"
	}
	// rest(i, first): the members from property i on; first says no member
	// came before (no comma yet).
	memo := map[[2]int]string{}
	var rest func(i int, first bool) string
	rest = func(i int, first bool) string {
		k := [2]int{i, 0}
		if first {
			k[1] = 1
		}
		if r, ok := memo[k]; ok {
			return r
		}
		comma := `"," ws `
		if first {
			comma = ""
		}
		var body string
		if i == len(kvs) {
			switch {
			case extraKV == "":
				body = `""`
			case first:
				body = `(` + extraKV + ` ("," ws ` + extraKV + `)*)?`
			default:
				body = `("," ws ` + extraKV + `)*`
			}
		} else {
			with := comma + kvs[i].expr + " " + rest(i+1, false)
			if kvs[i].req {
				body = with
			} else {
				body = with + " | " + rest(i+1, first)
			}
		}
		memo[k] = c.rule(body)
		return memo[k]
	}
	return c.rule(`"{" ws ` + rest(0, true) + ` "}"`), nil
}
