package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/souk-shop/souk/platform/problem"
	"github.com/souk-shop/souk/platform/telemetry"
)

// HandlerFunc is an HTTP handler that returns its error instead of writing
// it; the Router writes it as problem+json.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Router is an http.ServeMux that does, for every request and in this order:
// give it a request id, recover from panics, track metrics by route pattern,
// answer unknown routes (404) and wrong methods (405) with problem+json, call
// the handler, write the handler's error as problem+json, and log one access
// line carrying the request id.
type Router struct {
	mux      *http.ServeMux
	patterns []string
	log      *slog.Logger
	metrics  *telemetry.HTTPMetrics
	tracer   trace.Tracer
	// trustParent continues the trace a request's traceparent names;
	// otherwise every request starts a trace.
	trustParent bool
	// verify, if set, checks who sent each request but the probes' and
	// scrapes'; its context goes on to the handler.
	verify func(*http.Request) (context.Context, error)
	// untraced, if set, names paths besides the operational ones that
	// get no span (static files, say).
	untraced func(path string) bool
}

// NewRouter returns an empty router that logs to log and records metrics in m.
func NewRouter(log *slog.Logger, m *telemetry.HTTPMetrics) *Router {
	return &Router{mux: http.NewServeMux(), log: log, metrics: m, tracer: noop.NewTracerProvider().Tracer("")}
}

// Trace makes the router record a server span per request with tp,
// continuing the caller's trace if trustParent (services behind the
// gateway), or starting one (the gateway, unless told to trust clients).
func (rt *Router) Trace(tp trace.TracerProvider, trustParent bool) {
	rt.tracer, rt.trustParent = tp.Tracer("souk/server"), trustParent
}

// Verify makes the router check every request but those of probes and
// scrapes (/healthz, /readyz, /metrics) with verify before any route
// runs: its error is the answer (a 401, say); its context, carrying who
// sent the request, is the handler's.
func (rt *Router) Verify(verify func(*http.Request) (context.Context, error)) { rt.verify = verify }

// NoTrace makes the router record no span for requests whose path
// untraced accepts: requests many and dull enough (a page's files, a
// console polling) that their traces would push those people look for
// out of memory. Metrics and logs still count them.
func (rt *Router) NoTrace(untraced func(path string) bool) { rt.untraced = untraced }

// probe reports whether path is one that probes and scrapes reach with
// no proof of who they are.
func probe(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/metrics":
		return true
	}
	return false
}

// Handle registers h for pattern (an http.ServeMux pattern such as "GET /users/{id}").
func (rt *Router) Handle(pattern string, h HandlerFunc) {
	rt.HandleHTTP(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			rt.fail(w, r, err)
		}
	}))
}

// HandleHTTP registers a plain http.Handler for pattern.
func (rt *Router) HandleHTTP(pattern string, h http.Handler) {
	rt.patterns = append(rt.patterns, pattern)
	inFlight := rt.metrics.InFlight(pattern)
	rt.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec, ok := w.(*statusRecorder); ok {
			rec.route = pattern
		}
		inFlight.Inc()
		defer inFlight.Dec()
		h.ServeHTTP(w, r)
	}))
}

// Patterns lists the registered patterns in the order they were registered.
func (rt *Router) Patterns() []string { return rt.patterns }

// HeaderRequestID carries the request id between gateway, services and client.
const HeaderRequestID = "X-Request-Id"

// HeaderTimeout carries how many milliseconds the caller still waits.
const HeaderTimeout = "X-Souk-Timeout-Ms"

// operational reports whether path is one of the endpoints that every
// server has for its operators. They are not traced: scrapes and probes
// every few seconds would push the traces people look for out of memory.
func operational(path string) bool {
	switch path {
	case "/metrics", "/healthz", "/readyz":
		return true
	}
	return strings.HasPrefix(path, "/debug/")
}

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := requestID(r.Header.Get(HeaderRequestID))
	w.Header().Set(HeaderRequestID, id)
	ctx := telemetry.WithRequestID(r.Context(), id)
	if ms, err := strconv.Atoi(r.Header.Get(HeaderTimeout)); err == nil && ms > 0 {
		// The caller (the gateway) gives up after this: so do we.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
		defer cancel()
	}
	if rt.trustParent {
		ctx = telemetry.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	span := trace.SpanFromContext(ctx) // records nothing
	if !operational(r.URL.Path) && (rt.untraced == nil || !rt.untraced(r.URL.Path)) {
		ctx, span = rt.tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer))
	}
	r = r.WithContext(ctx)
	rec := &statusRecorder{ResponseWriter: w, req: r}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				rt.metrics.Observe(rec.routeLabel(), r.Method, 499, time.Since(start))
				panic(v)
			}
			rt.log.ErrorContext(ctx, "panic", "panic", fmt.Sprint(v), "method", r.Method, "path", r.URL.Path)
			if !rec.wrote {
				problem.Write(rec, problem.New(problem.Internal, "panic"))
			}
		}
		elapsed := time.Since(start)
		rt.metrics.Observe(rec.routeLabel(), r.Method, rec.status(), elapsed)
		if span.IsRecording() {
			span.SetName(rec.routeLabel())
			span.SetAttributes(attribute.String("http.route", rec.routeLabel()), attribute.Int("http.response.status_code", rec.status()),
				attribute.String("http.request.method", r.Method), attribute.String("request_id", id))
			if rec.status() >= 500 {
				span.SetStatus(codes.Error, http.StatusText(rec.status()))
			}
		}
		span.End()
		if rt.log.Enabled(ctx, slog.LevelInfo) {
			rt.log.InfoContext(ctx, "request",
				"method", r.Method, "path", r.URL.Path, "route", rec.routeLabel(),
				"status", rec.status(), "bytes", rec.bytes,
				"duration_ms", float64(elapsed.Microseconds())/1000,
				"remote", r.RemoteAddr)
		}
	}()
	if rt.verify != nil && !probe(r.URL.Path) {
		vctx, err := rt.verify(r)
		if err != nil {
			rt.fail(rec, r, err)
			return
		}
		r = r.WithContext(vctx)
	}
	rt.mux.ServeHTTP(rec, r)
}

func (rt *Router) fail(w http.ResponseWriter, r *http.Request, err error) {
	if problem.CodeOf(err).Status() >= 500 {
		rt.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	problem.Write(w, err)
}

// requestID returns the id the client or gateway sent if it is a sane token,
// else a new random one. Ids reach logs, so arbitrary bytes are never kept.
func requestID(sent string) string {
	if len(sent) > 0 && len(sent) <= 64 {
		ok := true
		for i := 0; i < len(sent) && ok; i++ {
			c := sent[i]
			ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		}
		if ok {
			return sent
		}
	}
	return NewRequestID()
}

// NewRequestID returns a random 128-bit id in hex.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusRecorder remembers the route, status and size of a response, and
// turns the mux's own plain-text 404 and 405 into problem+json.
type statusRecorder struct {
	http.ResponseWriter
	req     *http.Request
	route   string // the matched pattern, set by the route's handler
	code    int
	bytes   int64
	wrote   bool
	swallow bool // drop the mux's plain-text body
}

func (s *statusRecorder) routeLabel() string {
	if s.route == "" {
		return "unmatched"
	}
	return s.route
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.wrote {
		return
	}
	if s.route == "" && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
		// No route ran: this is the mux answering (the Allow header it
		// set for 405 stays).
		s.swallow = true
		r := s.req
		if code == http.StatusNotFound {
			problem.Write(s.ResponseWriter, problem.New(problem.NotFound, "no route for %s %s", r.Method, r.URL.Path))
		} else {
			problem.Write(s.ResponseWriter, problem.New(problem.MethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path))
		}
		s.code, s.wrote = code, true
		return
	}
	s.code, s.wrote = code, true
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.swallow {
		return len(b), nil
	}
	if !s.wrote {
		s.code, s.wrote = http.StatusOK, true
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) status() int {
	if !s.wrote {
		return http.StatusOK
	}
	return s.code
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush,
// deadlines).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

var _ http.Handler = (*Router)(nil)
