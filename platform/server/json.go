package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/souk-shop/souk/platform/problem"
)

// MaxBodyBytes is the largest request body a handler reads.
const MaxBodyBytes = 1 << 20

// Decode reads one JSON value from the request body into v. Unknown fields,
// trailing data, a body over MaxBodyBytes or a wrong content type are
// errors that name what is wrong, with the field where there is one.
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		return problem.New(problem.Invalid, "Content-Type must be application/json, not %q", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if tooLarge(err) {
			return decodeError(err)
		}
		return problem.New(problem.Invalid, "the body must hold a single JSON value")
	}
	return nil
}

func isJSON(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

func tooLarge(err error) bool {
	_, ok := errors.AsType[*http.MaxBytesError](err)
	return ok
}

func decodeError(err error) error {
	if tooLarge(err) {
		return problem.New(problem.TooLarge, "the body is larger than %d bytes", MaxBodyBytes)
	}
	if syn, ok := errors.AsType[*json.SyntaxError](err); ok {
		return problem.New(problem.Invalid, "malformed JSON at byte %d: %v", syn.Offset, syn)
	}
	if typ, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if typ.Field == "" {
			return problem.New(problem.Invalid, "the body must be a JSON %s, not %s", typeName(typ.Type.Kind().String()), typ.Value)
		}
		return problem.Field(typ.Field, fmt.Sprintf("must be %s, not %s", typeName(typ.Type.String()), typ.Value))
	}
	switch {
	case errors.Is(err, io.EOF):
		return problem.New(problem.Invalid, "the body is empty; a JSON object is expected")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem.New(problem.Invalid, "malformed JSON: the body ends too early")
	}
	// encoding/json has no typed error for unknown fields.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		field := strings.Trim(name, `"`)
		return problem.Field(field, "is not a known field")
	}
	return problem.Wrap(problem.Invalid, err, "malformed JSON")
}

func typeName(t string) string {
	t = strings.TrimLeft(t, "*[]")
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case t == "string", t == "*string":
		return "a string"
	case t == "struct", strings.Contains(t, "."):
		return "an object"
	case t == "bool":
		return "a boolean"
	}
	return t
}

// WriteJSON writes v as the JSON body of a response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
