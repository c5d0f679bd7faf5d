package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxStream is how long an event stream stays open at most. Servers bound
// every answer's writing (Config.WriteTimeout) and the gateway every
// request's time, so a stream ends before either and the client connects
// again, sending the last event id it saw (Last-Event-ID): a stream is a
// series of answers, each short enough for every limit on the way.
const MaxStream = 20 * time.Second

// EventStream writes Server-Sent Events (text/event-stream), flushing each
// event as it is written so that it passes proxies, the gateway among
// them, as it happens.
type EventStream struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// NewEventStream sends the headers of an event stream, with a retry
// interval (how long a client waits before it connects again), and
// returns the stream to write events on.
func NewEventStream(w http.ResponseWriter, retry time.Duration) (*EventStream, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // for nginx in front, if any
	w.WriteHeader(http.StatusOK)
	s := &EventStream{w: w, rc: http.NewResponseController(w)}
	if _, err := w.Write([]byte("retry: " + strconv.FormatInt(retry.Milliseconds(), 10) + "\n\n")); err != nil {
		return nil, err
	}
	return s, s.flush()
}

// Send writes one event: its id (what the client sends back as
// Last-Event-ID; "" for none), its type and data as JSON.
func (s *EventStream) Send(id, event string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	var sb strings.Builder
	if id != "" {
		sb.WriteString("id: " + id + "\n")
	}
	sb.WriteString("event: " + event + "\ndata: ")
	sb.Write(b) // JSON from Marshal has no newline in it
	sb.WriteString("\n\n")
	if _, err := s.w.Write([]byte(sb.String())); err != nil {
		return err
	}
	return s.flush()
}

// Ping writes a comment, which clients ignore: it keeps idle connections
// from looking dead to whatever stands between.
func (s *EventStream) Ping() error {
	if _, err := s.w.Write([]byte(":\n\n")); err != nil {
		return err
	}
	return s.flush()
}

func (s *EventStream) flush() error {
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// StreamUntil is when a stream for r should end: MaxStream from now, or a
// second before the request's deadline (the gateway's, passed on), if
// that is sooner.
func StreamUntil(r *http.Request) time.Time {
	end := time.Now().Add(MaxStream)
	if dl, ok := r.Context().Deadline(); ok && dl.Add(-time.Second).Before(end) {
		end = dl.Add(-time.Second)
	}
	return end
}
