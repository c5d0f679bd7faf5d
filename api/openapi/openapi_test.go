package openapi_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"go.yaml.in/yaml/v3"

	"github.com/souk-shop/souk/api/openapi"
)

// TestSpecIsValid validates openapi.yaml against the OpenAPI 3.1 schema
// (libopenapi-validator), resolves every $ref, and checks what that schema
// lets through: YAML keys without a value, which an unquoted ", " or ": "
// in a flow mapping makes of the rest of a description, and schema keys
// that are no JSON Schema or OpenAPI keyword, which JSON Schema ignores.
func TestSpecIsValid(t *testing.T) {
	doc, err := libopenapi.NewDocument(openapi.Spec)
	if err != nil {
		t.Fatalf("openapi.yaml does not parse: %v", err)
	}
	if _, err := doc.BuildV3Model(); err != nil {
		t.Errorf("openapi.yaml does not build: %v", err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatalf("openapi.yaml: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		for _, e := range verrs {
			t.Errorf("openapi.yaml line %d: %s: %s", e.SpecLine, e.Message, e.Reason)
			for _, f := range e.SchemaValidationErrors {
				t.Errorf("  %s: %s", f.KeywordLocation, f.Reason)
			}
		}
	}

	var dups map[string]any
	if err := yaml.Unmarshal(openapi.Spec, &dups); err != nil {
		t.Fatalf("openapi.yaml: %v", err) // among others, a key twice in one mapping
	}
	var root yaml.Node
	if err := yaml.Unmarshal(openapi.Spec, &root); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	for _, p := range lint(&root) {
		t.Error("openapi.yaml " + p)
	}
}

// TestLintFindsJunkKeys shows that lint catches the mistake that once made
// Money.amount's description a key of its own.
func TestLintFindsJunkKeys(t *testing.T) {
	const spec = `
components:
  schemas:
    Money:
      properties:
        amount: {type: integer, description: In the minor unit, e.g. 1999 for 19.99 EUR.}
        currency: {type: string, descripton: ISO 4217 code.}
`
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(spec), &root); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(lint(&root), "\n")
	for _, want := range []string{`line 6: "e.g. 1999 for 19.99 EUR." has no value`, `line 7: "descripton" is not a schema keyword`} {
		if !strings.Contains(got, want) {
			t.Errorf("lint found:\n%s\nwant a line with %s", got, want)
		}
	}
}

// lint returns the problems of a parsed OpenAPI document that its JSON
// Schema does not catch, each with its line.
func lint(root *yaml.Node) []string {
	var problems []string
	var walk func(n *yaml.Node, schema bool)
	walk = func(n *yaml.Node, schema bool) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, schema)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, val := n.Content[i], n.Content[i+1]
				if val.Tag == "!!null" {
					problems = append(problems, fmt.Sprintf("line %d: %q has no value (an unquoted comma or colon in a flow mapping?)", k.Line, k.Value))
				}
				if schema && !schemaKeywords[k.Value] && !strings.HasPrefix(k.Value, "x-") {
					problems = append(problems, fmt.Sprintf("line %d: %q is not a schema keyword", k.Line, k.Value))
				}
				walkValue(val, k.Value, schema, walk)
			}
		}
	}
	walk(root, false)
	return problems
}

// walkValue walks the value of key, knowing whether key is a key of a
// schema: the values of some keys are schemas, or maps or lists of them.
func walkValue(val *yaml.Node, key string, inSchema bool, walk func(*yaml.Node, bool)) {
	each := func(f func(*yaml.Node)) {
		for i := 1; i < len(val.Content); i += 2 {
			f(val.Content[i])
		}
	}
	switch {
	case inSchema && schemaValued[key], !inSchema && key == "schema":
		walk(val, true)
	case inSchema && schemaMapValued[key]:
		each(func(s *yaml.Node) { walk(s, true) })
	case inSchema && schemaListValued[key]:
		walk(val, true)
	case !inSchema && key == "schemas":
		each(func(s *yaml.Node) { walk(s, true) })
	case inSchema:
		// enum, examples, required, default…: data, not schemas.
	default:
		walk(val, false)
	}
}

var (
	// schemaKeywords are those of JSON Schema 2020-12 and the ones
	// OpenAPI 3.1 adds.
	schemaKeywords = set("$schema", "$id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary", "$comment", "$defs",
		"prefixItems", "items", "contains", "additionalProperties", "properties", "patternProperties", "dependentSchemas",
		"propertyNames", "if", "then", "else", "allOf", "anyOf", "oneOf", "not", "unevaluatedItems", "unevaluatedProperties",
		"type", "const", "enum", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
		"maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains",
		"maxProperties", "minProperties", "required", "dependentRequired",
		"title", "description", "default", "deprecated", "readOnly", "writeOnly", "examples", "format",
		"contentEncoding", "contentMediaType", "contentSchema",
		"discriminator", "xml", "externalDocs", "example")
	schemaValued     = set("items", "contains", "additionalProperties", "propertyNames", "if", "then", "else", "not", "unevaluatedItems", "unevaluatedProperties", "contentSchema")
	schemaMapValued  = set("properties", "patternProperties", "dependentSchemas", "$defs")
	schemaListValued = set("prefixItems", "allOf", "anyOf", "oneOf")
)

func set(words ...string) map[string]bool {
	m := make(map[string]bool, len(words))
	for _, w := range words {
		m[w] = true
	}
	return m
}
