// Package events moves facts between services without losing or doubling
// them: a service writes its change and the events it implies in one
// database transaction (the outbox); a relay publishes them to JetStream with
// the event id as Nats-Msg-Id, so the broker drops a republished copy;
// consumers commit their effect and the event id in one transaction (the
// inbox), so a redelivered event has no second effect; and an event that
// keeps failing goes, with its error, to a dead-letter stream from which it
// can be replayed.
//
// On the wire an event is a CloudEvent in NATS binary mode: attributes in ce-*
// headers, the JSON data as the payload, W3C trace context in traceparent and
// tracestate.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

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
	Time    time.Time
	Data    json.RawMessage
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
	hdrSpecVersion = "ce-specversion"
	hdrID          = "ce-id"
	hdrType        = "ce-type"
	hdrSource      = "ce-source"
	hdrSubject     = "ce-subject"
	hdrTime        = "ce-time"
	hdrContentType = "content-type" // datacontenttype, in binary mode
	hdrTraceParent = "traceparent"
	hdrTraceState  = "tracestate"
	contentJSON    = "application/json"
)

// Msg encodes e as a NATS message on the subject e.Type.
func (e Event) Msg() *nats.Msg {
	m := nats.NewMsg(e.Type)
	h := m.Header
	h.Set(hdrSpecVersion, "1.0")
	h.Set(hdrID, e.ID)
	h.Set(hdrType, e.Type)
	h.Set(hdrSource, e.Source)
	if e.Subject != "" {
		h.Set(hdrSubject, e.Subject)
	}
	h.Set(hdrTime, e.Time.Format(time.RFC3339Nano))
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

// Decode reads an event from a NATS message's headers and data.
func Decode(subject string, h nats.Header, data []byte) (Event, error) {
	bad := func(format string, args ...any) (Event, error) {
		return Event{}, fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	if v := h.Get(hdrSpecVersion); v != "1.0" {
		return bad("ce-specversion is %q, want 1.0", v)
	}
	e := Event{
		ID:          h.Get(hdrID),
		Type:        h.Get(hdrType),
		Source:      h.Get(hdrSource),
		Subject:     h.Get(hdrSubject),
		Data:        data,
		TraceParent: h.Get(hdrTraceParent),
		TraceState:  h.Get(hdrTraceState),
	}
	switch {
	case e.ID == "":
		return bad("no ce-id")
	case e.Source == "":
		return bad("no ce-source")
	case e.Type != subject:
		return bad("ce-type %q does not match the subject %q", e.Type, subject)
	}
	if _, _, err := parseType(e.Type); err != nil {
		return bad("%v", err)
	}
	t, err := time.Parse(time.RFC3339Nano, h.Get(hdrTime))
	if err != nil {
		return bad("ce-time %q: %v", h.Get(hdrTime), err)
	}
	e.Time = t
	if ct := h.Get(hdrContentType); ct != contentJSON {
		return bad("content-type %q, want %s", ct, contentJSON)
	}
	if !json.Valid(data) {
		return bad("the data is not valid JSON")
	}
	return e, nil
}
