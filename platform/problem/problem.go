// Package problem is Souk's one error type. Every layer returns a *Error with a
// Code; the HTTP edge maps the code to a status once and writes an RFC 9457
// application/problem+json body.
package problem

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Code classifies an error by what the client can do about it.
type Code string

// The codes, each with one HTTP status (see Status).
const (
	Invalid          Code = "invalid"                // 400: the request is malformed or a field is wrong
	Unauthorized     Code = "unauthorized"           // 401: no valid credentials
	Forbidden        Code = "forbidden"              // 403: credentials valid, access denied
	NotFound         Code = "not_found"              // 404
	MethodNotAllowed Code = "method_not_allowed"     // 405
	Conflict         Code = "conflict"               // 409: clashes with the current state (a duplicate, say)
	TooLarge         Code = "too_large"              // 413
	UnsupportedMedia Code = "unsupported_media_type" // 415: the body is not in a media type the route reads
	Unprocessable    Code = "unprocessable"          // 422: well-formed but cannot be applied
	TooManyRequests  Code = "too_many_requests"      // 429
	HeadersTooLarge  Code = "headers_too_large"      // 431
	Internal         Code = "internal"               // 500: a bug or an unexpected failure; details stay in the log
	NotImplemented   Code = "not_implemented"        // 501: a feature of HTTP the server does not support
	BadGateway       Code = "bad_gateway"            // 502: an upstream answered badly
	Unavailable      Code = "unavailable"            // 503: a dependency is down; try again later
	Timeout          Code = "timeout"                // 504: an upstream did not answer in time
)

var statuses = map[Code]int{
	Invalid:          http.StatusBadRequest,
	Unauthorized:     http.StatusUnauthorized,
	Forbidden:        http.StatusForbidden,
	NotFound:         http.StatusNotFound,
	MethodNotAllowed: http.StatusMethodNotAllowed,
	Conflict:         http.StatusConflict,
	TooLarge:         http.StatusRequestEntityTooLarge,
	UnsupportedMedia: http.StatusUnsupportedMediaType,
	Unprocessable:    http.StatusUnprocessableEntity,
	TooManyRequests:  http.StatusTooManyRequests,
	HeadersTooLarge:  http.StatusRequestHeaderFieldsTooLarge,
	Internal:         http.StatusInternalServerError,
	NotImplemented:   http.StatusNotImplemented,
	BadGateway:       http.StatusBadGateway,
	Unavailable:      http.StatusServiceUnavailable,
	Timeout:          http.StatusGatewayTimeout,
}

// Status is the HTTP status for c; unknown codes are 500.
func (c Code) Status() int {
	if s, ok := statuses[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// FieldError names one field of the request and what is wrong with it.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// Error is an error a client may see. Detail and Fields are shown to the
// client; Err, the cause, is only logged.
type Error struct {
	Code   Code
	Detail string
	Fields []FieldError
	Err    error
}

func (e *Error) Error() string {
	msg := string(e.Code)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an error with code and a detail formatted as by fmt.Sprintf.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Wrap returns an error with code and detail whose cause is err.
func Wrap(code Code, err error, detail string) *Error {
	return &Error{Code: code, Detail: detail, Err: err}
}

// Field returns an Invalid error about one field.
func Field(field, detail string) *Error {
	return &Error{
		Code:   Invalid,
		Detail: fmt.Sprintf("%s: %s", field, detail),
		Fields: []FieldError{{Field: field, Detail: detail}},
	}
}

// Fields returns an Invalid error about several fields, or nil if there are none.
func Fields(fields []FieldError) error {
	switch len(fields) {
	case 0:
		return nil
	case 1:
		return Field(fields[0].Field, fields[0].Detail)
	}
	return &Error{Code: Invalid, Detail: fmt.Sprintf("%d fields are invalid", len(fields)), Fields: fields}
}

// CodeOf is the code of the first *Error in err's chain, or Internal.
func CodeOf(err error) Code {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return Internal
}

// Body is the RFC 9457 problem document, with Souk's extension members.
type Body struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Code      Code         `json:"code"`
	Errors    []FieldError `json:"errors,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
}

// Write sends err to the client as application/problem+json. An error that is
// not an *Error, or an Internal one, is reported without its message, which
// may hold internals: callers log it. The request id, taken from the
// response's X-Request-Id header (which the server sets first), identifies
// the occurrence.
func Write(w http.ResponseWriter, err error) {
	e, ok := errors.AsType[*Error](err)
	if !ok {
		e = &Error{Code: Internal}
	}
	status := e.Code.Status()
	detail := e.Detail
	if e.Code == Internal {
		detail = "an unexpected error occurred; the request id identifies it in the logs"
	}
	body := Body{
		Type:      "about:blank",
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    detail,
		Code:      e.Code,
		Errors:    e.Fields,
		RequestID: w.Header().Get("X-Request-Id"),
	}
	h := w.Header()
	if status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
		// RFC 9110 15.5.2: a 401 names the scheme that would work. A
		// caller that knows more (an invalid token) sets its own first.
		h.Set("WWW-Authenticate", `Bearer realm="souk"`)
	}
	h.Set("Content-Type", "application/problem+json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
