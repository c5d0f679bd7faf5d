// Package events moves facts between services without losing or doubling
// them: a service writes its change and the events it implies in one
// database transaction (the outbox); a relay publishes them to JetStream with
// the event id as Nats-Msg-Id, so the broker drops a republished copy;
// consumers commit their effect and the event id in one transaction (the
// inbox), so a redelivered event has no second effect; and an event that
// keeps failing goes, with its error, to a dead-letter stream from which it
// can be replayed.
//
// On the wire an event is a CloudEvent 1.0 in the binary content mode of the
// CloudEvents NATS protocol binding. Msg writes ce-specversion, ce-id,
// ce-source, ce-type, ce-subject (if any) and ce-time, content-type:
// application/json for datacontenttype, Nats-Msg-Id (the id again), the
// JSON data as the payload, and the W3C trace context in traceparent and
// tracestate.
//
// Decode accepts what any conforming producer sends on a subject a consumer
// subscribes to, in either content mode:
//
//   - binary: the attributes in ce-<name> headers, header names matched in
//     any case, values unquoted and percent-decoded as the binding says;
//     datacontenttype in ce-datacontenttype or else in content-type;
//   - structured: the whole event as the JSON event format in the payload,
//     with content-type application/cloudevents+json, or with neither a
//     content-type nor a ce-specversion header, as producers that write no
//     headers send it.
//
// The trace context comes from the traceparent and tracestate headers, or
// else from the distributed tracing extension's attributes. time is
// optional (Event.Time is then zero). The data must be JSON: a
// datacontenttype whose media type is */json or */*+json, parameters such
// as charset allowed, or none at all. A message with no id, source, type or
// specversion 1.0, whose type is not souk.<service>.v<N>.<Name> or not its
// subject, or whose data is missing or not JSON, is ErrMalformed.
package events

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// Event is one fact a service publishes.
type Event struct {
	// ID is unique per event: the CloudEvents id, the broker's dedupe key
	// (Nats-Msg-Id) and the consumers' inbox key.
	ID string
	// Type is versioned, souk.<service>.v<N>.<Name>, and is also the NATS
	// subject, so consumers filter by type.
	Type string
	// Source is the producing service, /souk/<service>.
	Source string
	// Subject is the id of the entity the event is about (the aggregate).
	Subject string
	// Time is when it happened; zero if the producer did not say, as
	// CloudEvents allows. Souk's own events always have it.
	Time time.Time
	// Data is the payload, always JSON.
	Data json.RawMessage
	// TraceParent and TraceState carry the W3C trace context of the
	// request that caused the event.
	TraceParent string
	TraceState  string
}

// New returns an event of type typ about subject, with data encoded as JSON,
// a new id, and the trace context of ctx.
func New(ctx context.Context, typ, subject string, data any) (Event, error) {
	service, _, err := parseType(typ)
	if err != nil {
		return Event{}, err
	}
	b, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("event %s: %w", typ, err)
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return Event{
		ID:          uuid.Must(uuid.NewV7()).String(),
		Type:        typ,
		Source:      "/souk/" + service,
		Subject:     subject,
		Time:        time.Now().UTC().Truncate(time.Microsecond),
		Data:        b,
		TraceParent: carrier.Get("traceparent"),
		TraceState:  carrier.Get("tracestate"),
	}, nil
}

// parseType splits souk.<service>.v<N>.<Name>.
func parseType(typ string) (service, name string, err error) {
	parts := strings.Split(typ, ".")
	if len(parts) != 4 || parts[0] != "souk" || parts[1] == "" || len(parts[2]) < 2 || parts[2][0] != 'v' || parts[3] == "" {
		return "", "", fmt.Errorf("event type %q: want souk.<service>.v<N>.<Name>", typ)
	}
	return parts[1], parts[3], nil
}

// Context returns ctx carrying the event's trace context, so that work
// done for the event joins the trace of the request that caused it.
func (e Event) Context(ctx context.Context) context.Context {
	if e.TraceParent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{
		"traceparent": e.TraceParent,
		"tracestate":  e.TraceState,
	})
}

// The NATS headers of an event.
const (
	hdrSpecVersion     = "ce-specversion"
	hdrID              = "ce-id"
	hdrType            = "ce-type"
	hdrSource          = "ce-source"
	hdrSubject         = "ce-subject"
	hdrTime            = "ce-time"
	hdrDataContentType = "ce-datacontenttype" // the binding's name for it; read, not written
	hdrContentType     = "content-type"       // where Msg writes datacontenttype
	hdrTraceParent     = "traceparent"
	hdrTraceState      = "tracestate"
	contentJSON        = "application/json"
	contentEventJSON   = "application/cloudevents+json" // the JSON event format
)

// Msg encodes e as a NATS message on the subject e.Type, in binary mode.
func (e Event) Msg() *nats.Msg {
	m := nats.NewMsg(e.Type)
	h := m.Header
	h.Set(hdrSpecVersion, "1.0")
	h.Set(hdrID, escapeHeader(e.ID))
	h.Set(hdrType, escapeHeader(e.Type))
	h.Set(hdrSource, escapeHeader(e.Source))
	if e.Subject != "" {
		h.Set(hdrSubject, escapeHeader(e.Subject))
	}
	if !e.Time.IsZero() {
		h.Set(hdrTime, e.Time.Format(time.RFC3339Nano))
	}
	h.Set(hdrContentType, contentJSON)
	h.Set(nats.MsgIdHdr, e.ID)
	if e.TraceParent != "" {
		h.Set(hdrTraceParent, e.TraceParent)
		if e.TraceState != "" {
			h.Set(hdrTraceState, e.TraceState)
		}
	}
	m.Data = e.Data
	return m
}

// ErrMalformed marks a message that is not a valid Souk event.
var ErrMalformed = errors.New("malformed event")

// attributes are an event's CloudEvents attributes as read from either
// content mode, before they are checked.
type attributes struct {
	specVersion, id, source, typ, subject, time, contentType string
	traceParent, traceState                                  string
	data                                                     []byte
	hasData                                                  bool
}

// Decode reads an event from a NATS message on subject, in either content
// mode (see the package comment). Whatever it refuses is ErrMalformed.
func Decode(subject string, h nats.Header, data []byte) (Event, error) {
	read := readBinary
	if structured(h) {
		read = readStructured
	}
	a, err := read(h, data)
	var e Event
	if err == nil {
		e, err = a.event(subject)
	}
	if err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return e, nil
}

// eventID is the id of the message's event as far as it can be read, in
// either mode, even from a message Decode refuses: what a dead letter is
// listed by.
func eventID(h nats.Header, data []byte) string {
	read := readBinary
	if structured(h) {
		read = readStructured
	}
	a, _ := read(h, data)
	return a.id
}

// structured reports whether a message is in structured content mode. The
// binding says it is when its content-type is an event format
// (application/cloudevents…) and binary otherwise; but producers that write
// no headers at all (NATS before 2.2, the SDKs' structured mode) send
// structured messages with no content-type either, so a message with
// neither content-type nor ce-specversion is taken as structured too.
func structured(h nats.Header) bool {
	if ct, ok := header(h, hdrContentType); ok {
		mt, _, _ := mime.ParseMediaType(ct)
		return strings.HasPrefix(mt, "application/cloudevents")
	}
	_, binary := header(h, hdrSpecVersion)
	return !binary
}

// readBinary reads the attributes from ce-* headers and the data from the
// payload.
func readBinary(h nats.Header, data []byte) (attributes, error) {
	a := attributes{data: data, hasData: len(data) > 0}
	for _, f := range []struct {
		name string
		to   *string
	}{
		{hdrSpecVersion, &a.specVersion}, {hdrID, &a.id}, {hdrSource, &a.source}, {hdrType, &a.typ},
		{hdrSubject, &a.subject}, {hdrTime, &a.time}, {hdrDataContentType, &a.contentType},
		{"ce-traceparent", &a.traceParent}, {"ce-tracestate", &a.traceState},
	} {
		v, ok := header(h, f.name)
		if !ok {
			continue
		}
		s, err := unescapeHeader(v)
		if err != nil {
			return a, fmt.Errorf("%s: %w", f.name, err)
		}
		*f.to = s
	}
	if a.contentType == "" {
		a.contentType, _ = header(h, hdrContentType)
	}
	// The trace context of the transport wins over the distributed tracing
	// extension's, as in Souk's own events, which carry only the former.
	if tp, ok := header(h, hdrTraceParent); ok {
		a.traceParent = tp
		a.traceState, _ = header(h, hdrTraceState)
	}
	return a, nil
}

// readStructured reads the attributes and the data from a payload in the
// JSON event format.
func readStructured(h nats.Header, data []byte) (attributes, error) {
	var a attributes
	if ct, ok := header(h, hdrContentType); ok {
		if mt, _, _ := mime.ParseMediaType(ct); mt != contentEventJSON {
			return a, fmt.Errorf("event format %q, want %s", ct, contentEventJSON)
		}
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		return a, fmt.Errorf("neither ce-* headers nor a JSON event in the payload: %w", err)
	}
	for _, f := range []struct {
		name string
		to   *string
	}{
		{"specversion", &a.specVersion}, {"id", &a.id}, {"source", &a.source}, {"type", &a.typ},
		{"subject", &a.subject}, {"time", &a.time}, {"datacontenttype", &a.contentType},
		{"traceparent", &a.traceParent}, {"tracestate", &a.traceState},
	} {
		raw, ok := members[f.name]
		if !ok || string(raw) == "null" { // null is unset
			continue
		}
		if err := json.Unmarshal(raw, f.to); err != nil {
			return a, fmt.Errorf("%s is not a string", f.name)
		}
	}
	if tp, ok := header(h, hdrTraceParent); ok {
		a.traceParent = tp
		a.traceState, _ = header(h, hdrTraceState)
	}
	raw, hasData := members["data"] // null here is a null payload, not none
	b64, hasBase64 := members["data_base64"]
	hasBase64 = hasBase64 && string(b64) != "null"
	switch {
	case hasData && hasBase64:
		return a, errors.New("both data and data_base64")
	case hasData:
		a.data, a.hasData = raw, true
	case hasBase64:
		// Binary data is JSON only if datacontenttype says so.
		if a.contentType == "" {
			return a, errors.New("data_base64 without a datacontenttype")
		}
		var s string
		if err := json.Unmarshal(b64, &s); err != nil {
			return a, errors.New("data_base64 is not a string")
		}
		d, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return a, fmt.Errorf("data_base64: %w", err)
		}
		a.data, a.hasData = d, true
	}
	return a, nil
}

// event checks the attributes and returns the event they describe, which
// arrived on subject.
func (a attributes) event(subject string) (Event, error) {
	switch {
	case a.specVersion != "1.0":
		return Event{}, fmt.Errorf("specversion is %q, want 1.0", a.specVersion)
	case a.id == "":
		return Event{}, errors.New("no id")
	case a.source == "":
		return Event{}, errors.New("no source")
	case a.typ != subject:
		return Event{}, fmt.Errorf("type %q does not match the subject %q", a.typ, subject)
	}
	if _, _, err := parseType(a.typ); err != nil {
		return Event{}, err
	}
	e := Event{ID: a.id, Type: a.typ, Source: a.source, Subject: a.subject, Data: a.data,
		TraceParent: a.traceParent, TraceState: a.traceState}
	if a.time != "" {
		// RFC 3339 allows a lower-case t and z; Go's layout does not.
		t, err := time.Parse(time.RFC3339Nano, strings.ToUpper(a.time))
		if err != nil {
			return Event{}, fmt.Errorf("time %q: %w", a.time, err)
		}
		e.Time = t
	}
	if a.contentType != "" && !isJSON(a.contentType) {
		return Event{}, fmt.Errorf("datacontenttype %q is not JSON", a.contentType)
	}
	switch {
	case !a.hasData:
		return Event{}, errors.New("no data")
	case !json.Valid(a.data):
		return Event{}, errors.New("the data is not valid JSON")
	}
	return e, nil
}

// isJSON reports whether a media type declares JSON, as CloudEvents
// defines it: */json or */*+json, whatever its parameters.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	_, sub, _ := strings.Cut(mt, "/")
	return sub == "json" || strings.HasSuffix(sub, "+json")
}

// header returns the first value of the header name, matched in any case:
// NATS header names are case-insensitive, though nats.Header's methods are
// not.
func header(h nats.Header, name string) (string, bool) {
	if v := h[name]; len(v) > 0 {
		return v[0], true
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, name) {
			return v[0], true
		}
	}
	return "", false
}

// escapeHeader percent-encodes what the NATS binding says an attribute's
// header value must not hold: space, '"', '%', and anything outside
// printable ASCII. Every value Souk writes today passes unchanged.
func escapeHeader(v string) string {
	i := strings.IndexFunc(v, mustEscape)
	if i < 0 {
		return v
	}
	var b strings.Builder
	b.WriteString(v[:i])
	for _, c := range []byte(v[i:]) {
		if mustEscape(rune(c)) {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func mustEscape(r rune) bool { return r <= ' ' || r == '"' || r == '%' || r >= 0x7f }

// unescapeHeader undoes escapeHeader as the binding says a receiver must:
// first a double-quoted string (older producers), then one round of
// percent-decoding, whose result must be UTF-8.
func unescapeHeader(v string) (string, error) {
	v = strings.TrimSpace(v)
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(v)-1; i++ {
			if v[i] == '\\' && i+1 < len(v)-1 {
				i++
			}
			b.WriteByte(v[i])
		}
		v = b.String()
	}
	if !strings.Contains(v, "%") {
		return v, nil
	}
	s, err := url.PathUnescape(v)
	if err != nil {
		return "", err
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%q is not UTF-8 once percent-decoded", v)
	}
	return s, nil
}
