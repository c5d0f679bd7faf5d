package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
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
		return problem.New(problem.UnsupportedMedia, "Content-Type must be application/json, not %q", ct)
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

// WriteJSON writes v as the JSON body of a response with the given status,
// with its length, so that the body goes out in one piece and a proxy can
// tell a small answer from a stream.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		problem.Write(w, problem.Wrap(problem.Internal, err, "encode the answer"))
		return
	}
	writeJSONBytes(w, status, append(b, '\n'))
}

func writeJSONBytes(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// WriteCacheable writes v as a 200 JSON answer that caches may keep as
// cacheControl says, with an ETag made from the body: the same body has the
// same tag on every instance. A request whose If-None-Match names the tag
// gets 304 Not Modified and no body.
func WriteCacheable(w http.ResponseWriter, r *http.Request, cacheControl string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		problem.Write(w, problem.Wrap(problem.Internal, err, "encode the answer"))
		return
	}
	b = append(b, '\n')
	sum := sha256.Sum256(b)
	etag := `"` + hex.EncodeToString(sum[:12]) + `"`
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", cacheControl)
	if noneMatch(r.Header.Values("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeJSONBytes(w, http.StatusOK, b)
}

// noneMatch reports whether an If-None-Match header names etag, compared
// weakly as RFC 9110 13.1.2 says: W/"x" matches "x" (a proxy that
// compresses an answer makes its tag weak).
func noneMatch(values []string, etag string) bool {
	for _, v := range values {
		for tag := range strings.SplitSeq(v, ",") {
			tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
			if tag == "*" || tag == etag {
				return true
			}
		}
	}
	return false
}
