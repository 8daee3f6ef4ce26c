package server

import (
	"bytes"
	"encoding/json"
	"errors"

	"worker-orcd/engine"
	"worker-orcd/grammar"
)

// constraintFields are the constrained-output fields of /execute and
// /v1/completions (llama-server's names): a GBNF grammar or a JSON Schema.
type constraintFields struct {
	Grammar    *string         `json:"grammar"`
	JSONSchema json.RawMessage `json:"json_schema"`
}

// automaton compiles the request's grammar or schema (nil when it has
// neither).
func (c *constraintFields) automaton(m *engine.Model) (*grammar.Automaton, *apiError) {
	hasSchema := present(c.JSONSchema)
	switch {
	case c.Grammar != nil && hasSchema:
		return nil, badRequest("grammar", "give grammar or json_schema, not both")
	case c.Grammar != nil:
		return compileConstraint(m, "grammar", engine.GrammarGBNF, *c.Grammar)
	case hasSchema:
		return compileConstraint(m, "json_schema", engine.GrammarJSONSchema, string(c.JSONSchema))
	}
	return nil, nil
}

// present reports whether a raw JSON field was given (not absent, not null).
func present(raw json.RawMessage) bool {
	t := string(bytes.TrimSpace(raw))
	return t != "" && t != "null"
}

// compileConstraint compiles a grammar through the engine's cache; a
// grammar or schema that does not compile is a 400 naming param, with the
// position (GBNF: line and column; schemas: the JSON pointer) and reason.
func compileConstraint(m *engine.Model, param, kind, src string) (*grammar.Automaton, *apiError) {
	a, err := m.Grammar(kind, src)
	if err != nil {
		var ge *grammar.Error
		if errors.As(err, &ge) {
			return nil, badRequest(param, "%s", ge.Error())
		}
		return nil, badRequest(param, "%v", err)
	}
	return a, nil
}

// responseFormat is OpenAI's response_format: {"type":"text"},
// {"type":"json_object"} or {"type":"json_schema","json_schema":{"name",
// "description","schema","strict"}}.
type responseFormat struct {
	Type       string `json:"type"`
	JSONSchema *struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Schema      json.RawMessage `json:"schema"`
		Strict      *bool           `json:"strict"`
	} `json:"json_schema"`
}

// automaton compiles a response_format (nil for text).
func (f *responseFormat) automaton(m *engine.Model) (*grammar.Automaton, *apiError) {
	if f == nil {
		return nil, nil
	}
	switch f.Type {
	case "", "text":
		return nil, nil
	case "json_object":
		return compileConstraint(m, "response_format", engine.GrammarJSONObject, "")
	case "json_schema":
		if f.JSONSchema == nil {
			return nil, badRequest("response_format", "type json_schema needs a json_schema object: {\"name\": ..., \"schema\": {...}}")
		}
		if f.JSONSchema.Name == "" {
			return nil, badRequest("response_format", "json_schema.name is missing")
		}
		schema := f.JSONSchema.Schema
		if !present(schema) {
			schema = json.RawMessage("true") // OpenAI: no schema, any JSON
		}
		return compileConstraint(m, "response_format", engine.GrammarJSONSchema, string(schema))
	}
	return nil, badRequest("response_format", "type %q is not supported (want text, json_object or json_schema)", f.Type)
}

// ollamaFormat compiles Ollama's format: "json" (any JSON object) or a JSON
// Schema object; "" and null ask for nothing.
func ollamaFormat(m *engine.Model, raw json.RawMessage) (*grammar.Automaton, *apiError) {
	if !present(raw) {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "":
			return nil, nil
		case "json":
			return compileConstraint(m, "format", engine.GrammarJSONObject, "")
		}
		return nil, badRequest("format", "%q is not a format: want \"json\" or a JSON Schema object", s)
	}
	if t := bytes.TrimSpace(raw); t[0] != '{' {
		return nil, badRequest("format", "want \"json\" or a JSON Schema object")
	}
	return compileConstraint(m, "format", engine.GrammarJSONSchema, string(raw))
}

func asGrammarError(err error, target **grammar.Error) bool { return errors.As(err, target) }
