package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// acceptanceSchemas are the structured-output acceptance cases: nested
// objects, arrays, enums, anyOf, $ref (recursive too), numbers, strings
// with escapes and unicode, formats and patterns.
var acceptanceSchemas = []string{
	`{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}`,
	`{"type":"object","properties":{"user":{"type":"object","properties":{"id":{"type":"integer"},"email":{"type":"string","format":"email"},"tags":{"type":"array","items":{"type":"string","maxLength":6},"maxItems":3}},"required":["id","email","tags"],"additionalProperties":false},"score":{"type":"number"}},"required":["user","score"],"additionalProperties":false}`,
	`{"type":"object","properties":{"color":{"enum":["red","green","blue"]},"size":{"enum":[1,2,3,null]},"on":{"type":"boolean"}},"required":["color","size","on"],"additionalProperties":false}`,
	`{"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":5}`,
	`{"anyOf":[{"type":"object","properties":{"kind":{"const":"circle"},"r":{"type":"number"}},"required":["kind","r"],"additionalProperties":false},{"type":"object","properties":{"kind":{"const":"square"},"side":{"type":"integer"}},"required":["kind","side"],"additionalProperties":false}]}`,
	`{"$defs":{"node":{"type":"object","properties":{"value":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["value","children"],"additionalProperties":false}},"$ref":"#/$defs/node"}`,
	`{"type":"object","properties":{"title":{"type":"string","minLength":1,"maxLength":20},"note":{"type":["string","null"]}},"required":["title","note"],"additionalProperties":false}`,
	`{"type":"object","properties":{"when":{"type":"string","format":"date-time"},"day":{"type":"string","format":"date"},"id":{"type":"string","format":"uuid"}},"required":["when","day","id"],"additionalProperties":false}`,
	`{"type":"object","properties":{"code":{"type":"string","pattern":"^[A-Z]{3}-[0-9]{2,4}$"},"n":{"type":"number"}},"required":["code"],"additionalProperties":false}`,
	`{"type":"object","properties":{"matrix":{"type":"array","items":{"type":"array","items":{"type":"number"},"maxItems":3},"maxItems":3},"ok":{"type":"boolean"}},"required":["matrix","ok"],"additionalProperties":false}`,
	`{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"null"}},"required":["b"],"additionalProperties":false}`,
	`{"type":"object","properties":{"items":{"type":"array","items":{"$ref":"#/definitions/item"}}},"required":["items"],"additionalProperties":false,"definitions":{"item":{"type":"object","properties":{"sku":{"type":"string"},"qty":{"type":"integer"},"price":{"anyOf":[{"type":"number"},{"type":"null"}]}},"required":["sku","qty","price"],"additionalProperties":false}}}`,
}

// seedsPerCase is how many seeds each acceptance case runs: 8 by default
// (the suite stays fast); WORKER_GRAMMAR_SEEDS=100 for the full acceptance
// run.
func seedsPerCase() int {
	if n, err := strconv.Atoi(os.Getenv("WORKER_GRAMMAR_SEEDS")); err == nil && n > 0 {
		return n
	}
	return 8
}

func compileValidator(t *testing.T, schema string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// forSeeds runs f for seeds 0..n-1, four at a time.
func forSeeds(n int, f func(seed int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for seed := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(seed)
		})
	}
	wg.Wait()
}

// TestResponseFormatJSONSchema: at temperature 1 on a random-weight model,
// every answer of every schema parses and validates with an independent
// validator (santhosh-tekuri/jsonschema), and ends at the schema's end
// (finish_reason "stop").
func TestResponseFormatJSONSchema(t *testing.T) {
	ts := newTestServer(t, opts{parallel: 4})
	n := seedsPerCase()
	for i, schema := range acceptanceSchemas {
		v := compileValidator(t, schema)
		forSeeds(n, func(seed int) {
			body := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":"Give JSON"}],"temperature":1,"seed":%d,"max_tokens":300,
				"response_format":{"type":"json_schema","json_schema":{"name":"case%d","strict":true,"schema":%s}}}`, seed, i, schema)
			resp := post(t, ts.URL+"/v1/chat/completions", body)
			b := readAll(t, resp)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("schema %d: status %d: %s", i, resp.StatusCode, b)
				return
			}
			var cr chatResponse
			decodeJSON(t, b, &cr)
			text := cr.Choices[0].Message.Content
			inst, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
			if err != nil {
				t.Errorf("schema %d seed %d (%s): not JSON: %v\n%q", i, seed, cr.Choices[0].FinishReason, err, text)
				return
			}
			if err := v.Validate(inst); err != nil {
				t.Errorf("schema %d seed %d: does not validate: %v\n%s", i, seed, err, text)
			}
			if cr.Choices[0].FinishReason != "stop" {
				t.Errorf("schema %d seed %d: finish_reason %q", i, seed, cr.Choices[0].FinishReason)
			}
		})
	}
}

func TestResponseFormatJSONObject(t *testing.T) {
	ts := newTestServer(t, opts{parallel: 4})
	forSeeds(seedsPerCase()*2, func(seed int) {
		body := fmt.Sprintf(`{"model":"m","messages":[{"role":"user","content":"JSON please"}],"temperature":1,"seed":%d,"max_tokens":200,"response_format":{"type":"json_object"}}`, seed)
		var cr chatResponse
		decodeJSON(t, readAll(t, post(t, ts.URL+"/v1/chat/completions", body)), &cr)
		var obj map[string]any
		if err := json.Unmarshal([]byte(cr.Choices[0].Message.Content), &obj); err != nil {
			t.Errorf("seed %d: not a JSON object: %v\n%q", seed, err, cr.Choices[0].Message.Content)
		}
	})
}

// checkArith is an independent recognizer of the arithmetic grammar below.
func checkArith(s string) bool {
	i := 0
	var expr, term, factor func() bool
	factor = func() bool {
		if i < len(s) && s[i] == '(' {
			i++
			if !expr() || i >= len(s) || s[i] != ')' {
				return false
			}
			i++
			return true
		}
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i > j && i-j <= 3
	}
	term = func() bool {
		if !factor() {
			return false
		}
		for i < len(s) && (s[i] == '*' || s[i] == '/') {
			i++
			if !factor() {
				return false
			}
		}
		return true
	}
	expr = func() bool {
		if !term() {
			return false
		}
		for i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
			if !term() {
				return false
			}
		}
		return true
	}
	return expr() && i == len(s)
}

// TestGBNFOnExecute: /execute with GBNF grammars for JSON, arithmetic and a
// list produces only matching strings (checked by independent
// recognizers), ending with stop_reason "grammar".
func TestGBNFOnExecute(t *testing.T) {
	ts := newTestServer(t, opts{parallel: 4})
	listLine := func(s string) bool {
		if s == "" {
			return false
		}
		lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		if !strings.HasSuffix(s, "\n") || len(lines) > 5 {
			return false
		}
		for _, l := range lines {
			w, ok := strings.CutPrefix(l, "- ")
			if !ok || len(w) < 1 || len(w) > 8 || strings.Trim(w, "abcdefghijklmnopqrstuvwxyz") != "" {
				return false
			}
		}
		return true
	}
	cases := []struct {
		name, grammar string
		check         func(string) bool
	}{
		{"json", `root ::= object
value ::= object | array | string | number | ("true" | "false" | "null")
object ::= "{" ( string ":" value ("," string ":" value)* )? "}"
array ::= "[" ( value ("," value)* )? "]"
string ::= "\"" ( [^"\\\x00-\x1f] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\""
number ::= "-"? ([0-9] | [1-9] [0-9]{1,8}) ("." [0-9]{1,6})?
`, func(s string) bool { return json.Valid([]byte(s)) && strings.HasPrefix(s, "{") }},
		{"arithmetic", "root ::= expr\nexpr ::= term ((\"+\" | \"-\") term)*\nterm ::= factor ((\"*\" | \"/\") factor)*\nfactor ::= [0-9]{1,3} | \"(\" expr \")\"\n", checkArith},
		{"list", "root ::= item{1,5}\nitem ::= \"- \" [a-z]{1,8} \"\\n\"\n", listLine},
	}
	for _, c := range cases {
		g, _ := json.Marshal(c.grammar)
		forSeeds(seedsPerCase(), func(seed int) {
			r := ts.execute(t, fmt.Sprintf(`{"prompt":"Hello","temperature":1,"top_k":0,"top_p":1,"min_p":0,"seed":%d,"max_tokens":120,"grammar":%s}`, seed, g))
			if r.end == nil {
				t.Errorf("%s seed %d: %+v", c.name, seed, r.errEv)
				return
			}
			if !c.check(r.text) {
				t.Errorf("%s seed %d (%s): %q does not match", c.name, seed, r.end.StopReason, r.text)
			}
			// "length" only with a complete text: the token budget keeps a
			// completion within max_tokens, and an open-ended grammar
			// (expr (op expr)*) may use all of it.
			if r.end.StopReason != "grammar" && r.end.StopReason != "eos" && r.end.StopReason != "length" {
				t.Errorf("%s seed %d: stop_reason %q", c.name, seed, r.end.StopReason)
			}
		})
	}
}

func TestConstraintErrors(t *testing.T) {
	ts := newTestServer(t, opts{})
	cases := []struct {
		path, body, want string
	}{
		{"/execute", `{"prompt":"x","grammar":"root ::= \"a\" (\n \"b\""}`, "grammar: line 1, column 14: unclosed group"},
		{"/execute", `{"prompt":"x","grammar":"root ::= x"}`, `rule \"x\" is used but never defined`},
		{"/execute", `{"prompt":"x","grammar":"root ::= []"}`, "language is empty"},
		{"/execute", `{"prompt":"x","json_schema":{"type":"integer","minimum":3}}`, `keyword \"minimum\" is not supported`},
		{"/execute", `{"prompt":"x","grammar":"root ::= \"a\"","json_schema":{}}`, "not both"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"object","properties":{"a":{"$ref":"#/$defs/b"}}}}}}`, `names nothing`},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema"}}`, "needs a json_schema"},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"yaml"}}`, `type \"yaml\" is not supported`},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"type":"string","not":{}}}}}`, `at #: keyword \"not\"`},
		{"/v1/completions", `{"prompt":"x","grammar":"root ::= \"a"}`, "unterminated string literal"},
		{"/api/generate", `{"prompt":"x","format":{"type":"object","patternProperties":{}}}`, `patternProperties`},
	}
	for _, c := range cases {
		resp := post(t, ts.URL+c.path, c.body)
		b := readAll(t, resp)
		if resp.StatusCode != http.StatusBadRequest || !bytes.Contains(b, []byte(c.want)) {
			t.Errorf("%s %s: %d %s, want 400 containing %s", c.path, c.body, resp.StatusCode, b, c.want)
		}
	}
}

// TestOllamaFormat: Ollama's format "json" and a schema constrain
// /api/generate and /api/chat.
func TestOllamaFormat(t *testing.T) {
	ts := newTestServer(t, opts{})
	schema := acceptanceSchemas[2]
	v := compileValidator(t, schema)
	for seed := range 4 {
		var gr struct{ Response string }
		decodeJSON(t, readAll(t, post(t, ts.URL+"/api/generate", fmt.Sprintf(`{"prompt":"x","stream":false,"format":%s,"options":{"seed":%d,"temperature":1,"num_predict":200}}`, schema, seed))), &gr)
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(gr.Response))
		if err != nil || v.Validate(inst) != nil {
			t.Errorf("generate seed %d: %q (%v)", seed, gr.Response, err)
		}
		var cr struct{ Message struct{ Content string } }
		decodeJSON(t, readAll(t, post(t, ts.URL+"/api/chat", fmt.Sprintf(`{"messages":[{"role":"user","content":"x"}],"stream":false,"format":"json","options":{"seed":%d,"temperature":1,"num_predict":200}}`, seed))), &cr)
		var obj map[string]any
		if err := json.Unmarshal([]byte(cr.Message.Content), &obj); err != nil {
			t.Errorf("chat seed %d: %q is not a JSON object", seed, cr.Message.Content)
		}
	}
}
