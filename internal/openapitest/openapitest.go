// Package openapitest checks, in tests, that the gateway answers what
// openapi.yaml says it answers: each exchange a test makes through the
// gateway is validated against the spec with pb33f's libopenapi-validator,
// status, headers and body.
package openapitest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	liberrors "github.com/pb33f/libopenapi-validator/errors"

	"github.com/souk-shop/souk/api/openapi"
)

// Spec is openapi.yaml, ready to check exchanges against.
type Spec struct {
	v   validator.Validator
	ops []operation
}

// operation is one method on one path template of the spec.
type operation struct {
	method   string
	segments []string // of the template; "{…}" matches any one segment
}

// Load returns openapi.yaml parsed; it is parsed once per test binary.
func Load() (*Spec, error) { return load() }

var load = sync.OnceValues(func() (*Spec, error) {
	doc, err := libopenapi.NewDocument(openapi.Spec)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	s := &Spec{}
	for path, item := range model.Model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			s.ops = append(s.ops, operation{method: strings.ToUpper(method), segments: strings.Split(path, "/")})
		}
	}
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if len(errs) > 0 {
		return nil, fmt.Errorf("openapi.yaml: %v", errs)
	}
	s.v = v
	return s, nil
})

// Describes reports whether the spec has an operation for the request's
// method and path. HEAD is not one: the gateway answers it for every GET
// route, but the spec lists none, and its answer has no body to check.
func (s *Spec) Describes(method, path string) bool {
	segments := strings.Split(path, "/")
	for _, op := range s.ops {
		if op.method == method && matches(op.segments, segments) {
			return true
		}
	}
	return false
}

func matches(template, segments []string) bool {
	if len(template) != len(segments) {
		return false
	}
	for i, t := range template {
		if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
			if segments[i] == "" {
				return false
			}
		} else if t != segments[i] {
			return false
		}
	}
	return true
}

// Check validates one exchange: req, sent with the body reqBody, and resp,
// whose body (as the client read it) is respBody. The answer must be one
// the spec lists for the operation, with the headers and body it
// describes. The request must conform too, unless the answer is an error
// (4xx or 5xx): tests send invalid requests on purpose to see them
// refused, and a refusal is all the spec promises for them; an invalid
// request that succeeds is an error of the spec or of the service. Check
// returns nil for requests the spec does not describe (see Describes).
func (s *Spec) Check(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) error {
	if !s.Describes(req.Method, req.URL.Path) {
		return nil
	}
	body, err := decoded(resp.Header.Get("Content-Encoding"), respBody)
	if err != nil {
		return fmt.Errorf("%s %s: %d: the body does not decode: %w", req.Method, req.URL.Path, resp.StatusCode, err)
	}
	answer := &http.Response{
		StatusCode: resp.StatusCode, Status: resp.Status, Header: resp.Header.Clone(),
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Request: req,
	}
	var problems []string
	if ok, errs := s.v.ValidateHttpResponse(replay(req, reqBody), answer); !ok {
		problems = append(problems, messages(errs)...)
	}
	if resp.StatusCode < 400 {
		if ok, errs := s.v.ValidateHttpRequestSync(replay(req, reqBody)); !ok {
			for _, m := range messages(errs) {
				problems = append(problems, "the request, which succeeded: "+m)
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%s %s answered %d, not as openapi.yaml says:\n\t%s\n\tbody: %.500s",
		req.Method, req.URL.Path, resp.StatusCode, strings.Join(problems, "\n\t"), body)
}

// replay returns a copy of req whose body reads body again.
func replay(req *http.Request, body []byte) *http.Request {
	r := req.Clone(req.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return r
}

// decoded undoes the content coding the gateway applied, when the client
// asked for one itself (Go's client undoes gzip it asked for, and drops
// the header).
func decoded(coding string, body []byte) ([]byte, error) {
	var r io.Reader
	switch coding {
	case "", "identity":
		return body, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	default:
		return nil, fmt.Errorf("no decoder for Content-Encoding %q here", coding)
	}
	return io.ReadAll(r)
}

// messages turns the validator's errors into one line each.
func messages(errs []*liberrors.ValidationError) []string {
	var out []string
	for _, e := range errs {
		m := e.Message
		if e.Reason != "" && e.Reason != e.Message {
			m += ": " + e.Reason
		}
		for _, f := range e.SchemaValidationErrors {
			at := f.FieldPath
			if at == "" {
				at = f.KeywordLocation
			}
			m += fmt.Sprintf(" [%s: %s]", at, f.Reason)
		}
		out = append(out, m)
	}
	return out
}
