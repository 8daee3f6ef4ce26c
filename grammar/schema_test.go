package grammar

import (
	"errors"
	"strings"
	"testing"
)

// testSchemas are the schemas of the tests (also used by the engine's and
// the server's acceptance tests through their own copies).
var schemaCases = []struct {
	name, schema string
	yes, no      []string
}{
	{"flat", `{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}`,
		[]string{`{"name":"x","age":3}`, `{ "name" : "a\"b", "age" : -10 }`}, []string{`{"age":3,"name":"x"}`, `{"name":"x"}`, `{"name":"x","age":3.5}`}},
	{"optional", `{"type":"object","properties":{"a":{"type":"boolean"},"b":{"type":"null"},"c":{"type":"number"}},"required":["b"]}`,
		[]string{`{"b":null}`, `{"a":true,"b":null}`, `{"b":null,"c":1e5}`, `{"a":false,"b":null,"c":-0.5}`}, []string{`{}`, `{"a":true}`, `{,"b":null}`}},
	{"enum-const", `{"type":"object","properties":{"e":{"enum":["red","green",1,null]},"k":{"const":{"x":[1,"é"]}}},"required":["e","k"],"additionalProperties":false}`,
		[]string{`{"e":"red","k":{"x":[1,"é"]}}`, `{"e":null,"k":{"x":[1,"é"]}}`}, []string{`{"e":"blue","k":{"x":[1,"é"]}}`}},
	{"array", `{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3}`,
		[]string{`[1,2]`, `[1, 2, 3]`}, []string{`[1]`, `[1,2,3,4]`, `[]`, `[1,"a"]`}},
	{"array-unbounded", `{"type":"array","items":{"type":"string"}}`, []string{`[]`, `["a"]`, `["a","b","c"]`}, []string{`[,]`, `["a",]`}},
	{"anyof-nullable", `{"anyOf":[{"type":"string","maxLength":3},{"type":["integer","null"]}]}`,
		[]string{`"abc"`, `5`, `null`}, []string{`"abcd"`, `true`}},
	{"ref", `{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["v","next"],"additionalProperties":false}},"$ref":"#/$defs/node"}`,
		[]string{`{"v":1,"next":null}`, `{"v":1,"next":{"v":2,"next":null}}`}, []string{`{"v":1}`}},
	{"formats", `{"type":"object","properties":{"d":{"type":"string","format":"date"},"u":{"type":"string","format":"uuid"},"t":{"type":"string","format":"date-time"},"m":{"type":"string","format":"email"}},"required":["d","u","t","m"],"additionalProperties":false}`,
		[]string{`{"d":"2024-02-28","u":"0123abcd-0000-4000-8000-00000000abcd","t":"2024-01-01T10:00:00Z","m":"a.b@c.io"}`}, []string{`{"d":"2024-13-01","u":"x","t":"y","m":"z"}`}},
	{"pattern", `{"type":"string","pattern":"^[A-Z]{2}-[0-9]+$"}`, []string{`"AB-12"`}, []string{`"A-1"`, `"AB-"`}},
	{"additional", `{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":{"type":"boolean"}}`,
		[]string{`{"a":1}`, `{"a":1,"x":true,"y":false}`}, []string{`{"a":1,"x":2}`}},
	{"tuple", `{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}`, []string{`["a",1]`, `["a"]`, `[]`}, []string{`["a",1,2]`, `[1]`}},
	{"true", `true`, []string{`1`, `{"a":[]}`}, []string{`{`}},
	{"nested", `{"type":"object","properties":{"items":{"type":"array","items":{"type":"object","properties":{"id":{"type":"integer"},"tags":{"type":"array","items":{"type":"string"},"maxItems":2}},"required":["id","tags"],"additionalProperties":false},"maxItems":3}},"required":["items"],"additionalProperties":false}`,
		[]string{`{"items":[]}`, `{"items":[{"id":1,"tags":["a","b"]}]}`}, []string{`{"items":[{"id":1,"tags":["a","b","c"]}]}`}},
}

func TestSchema(t *testing.T) {
	for _, c := range schemaCases {
		t.Run(c.name, func(t *testing.T) {
			g, err := CompileSchema([]byte(c.schema))
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range c.yes {
				if !g.MatchString(s) {
					t.Errorf("%s should match\n%s", s, g)
				}
			}
			for _, s := range c.no {
				if g.MatchString(s) {
					t.Errorf("%s should not match", s)
				}
			}
		})
	}
}

func TestSchemaErrors(t *testing.T) {
	cases := []struct{ schema, want string }{
		{`{"type":"string","minimum":1}`, `keyword "minimum" is not supported`},
		{`{"type":"object","properties":{"a":{"type":"integer","multipleOf":2}}}`, `at #/properties/a: keyword "multipleOf"`},
		{`{"type":"thing"}`, `unknown type "thing"`},
		{`{"$ref":"#/$defs/nope"}`, `names nothing`},
		{`{"$ref":"http://x/y"}`, `only local references`},
		{`{"type":"array","minItems":3,"maxItems":2}`, `below minItems`},
		{`{"type":`, `not valid JSON`},
		{`false`, `allows no value`},
		{`{"enum":[]}`, `non-empty array`},
		{`{"type":"object","properties":{},"required":["x"]}`, `required property "x"`},
		{`{"type":"string","format":"ipv6"}`, `format "ipv6" is not supported`},
		{`{"type":"string","pattern":"(("}`, `pattern does not parse`},
		{`{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`, `empty`},
	}
	for _, c := range cases {
		_, err := CompileSchema([]byte(c.schema))
		var ge *Error
		if !errors.As(err, &ge) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CompileSchema(%s) = %v, want an *Error containing %q", c.schema, err, c.want)
		}
	}
}

func FuzzSchema(f *testing.F) {
	for _, c := range schemaCases {
		f.Add(c.schema, c.yes[0])
	}
	f.Fuzz(func(t *testing.T, schema, input string) {
		if len(schema) > 4000 {
			return
		}
		g, err := CompileSchema([]byte(schema))
		if err != nil {
			return
		}
		if len(input) > 200 {
			input = input[:200]
		}
		_ = g.MatchString(input)
	})
}
