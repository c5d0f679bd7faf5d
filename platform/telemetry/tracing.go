package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/souk-shop/souk/platform/problem"
)

// Propagator carries W3C trace context (traceparent, tracestate) in HTTP
// and event headers.
var Propagator = propagation.TraceContext{}

// InjectHTTP puts ctx's trace context in h. It does what Propagator.Inject
// with a HeaderCarrier does, less the canonicalization of the two keys it
// knows, which on the gateway's path cost as much as formatting the value.
func InjectHTTP(ctx context.Context, h http.Header) { Propagator.Inject(ctx, canonicalCarrier(h)) }

// canonicalCarrier is a propagation.HeaderCarrier that sets the keys of W3C
// trace context under their canonical forms directly.
type canonicalCarrier http.Header

func (c canonicalCarrier) Get(key string) string { return http.Header(c).Get(key) }
func (c canonicalCarrier) Keys() []string        { return propagation.HeaderCarrier(c).Keys() }
func (c canonicalCarrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c["Traceparent"] = []string{value}
	case "tracestate":
		c["Tracestate"] = []string{value}
	default:
		http.Header(c).Set(key, value)
	}
}

// TracingConfig says where spans go and how many traces are kept.
type TracingConfig struct {
	// OTLP, if set, exports spans over OTLP/HTTP; Endpoint is then the
	// collector's base URL, like http://collector:4318 (spans go to its
	// /v1/traces; a URL with another path is used as it is), or "" to
	// take the standard OTEL_EXPORTER_OTLP_* variables. If OTLP is false,
	// the most recent traces stay in memory, for /debug/traces.
	OTLP     bool
	Endpoint string
	// SampleRatio is the share of new traces recorded (0 to 1); a request
	// that arrives in a sampled trace is recorded whatever the ratio. 0
	// turns tracing off.
	SampleRatio float64
}

// Tracing holds one process's trace pipeline: an exporter, and a tracer
// provider per service (each naming its service in its spans).
type Tracing struct {
	cfg      TracingConfig
	exporter sdktrace.SpanExporter
	ring     *Ring
	mu       sync.Mutex
	provs    []*sdktrace.TracerProvider
}

// NewTracing starts the exporter.
func NewTracing(ctx context.Context, cfg TracingConfig) (*Tracing, error) {
	t := &Tracing{cfg: cfg}
	if cfg.OTLP {
		var opts []otlptracehttp.Option
		if cfg.Endpoint != "" {
			u, err := url.Parse(cfg.Endpoint)
			if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
				return nil, fmt.Errorf("otlp endpoint %q: want a URL like http://collector:4318", cfg.Endpoint)
			}
			if u.Path == "" || u.Path == "/" {
				u.Path = "/v1/traces" // a base URL, as in OTEL_EXPORTER_OTLP_ENDPOINT
			}
			opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
		}
		exp, err := otlptracehttp.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("otlp exporter: %w", err)
		}
		t.exporter = exp
	} else {
		t.ring = NewRing(200)
		t.exporter = t.ring
	}
	return t, nil
}

// Ring is where traces are kept when they are not exported, or nil.
func (t *Tracing) Ring() *Ring { return t.ring }

// Provider returns a tracer provider whose spans name service; with a
// SampleRatio of 0, one that records and propagates nothing, so that
// tracing costs nothing when it is off.
func (t *Tracing) Provider(service string) trace.TracerProvider {
	if t.cfg.SampleRatio <= 0 {
		return noop.NewTracerProvider()
	}
	var proc sdktrace.SpanProcessor
	if t.ring != nil {
		proc = sdktrace.NewSimpleSpanProcessor(t.exporter) // an append to memory: no batching needed
	} else {
		proc = sdktrace.NewBatchSpanProcessor(t.exporter)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(t.cfg.SampleRatio))),
		sdktrace.WithSpanProcessor(proc),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(service))),
	)
	t.mu.Lock()
	t.provs = append(t.provs, tp)
	t.mu.Unlock()
	return tp
}

// Shutdown flushes and stops every provider and the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tp := range t.provs {
		_ = tp.Shutdown(ctx)
	}
	return t.exporter.Shutdown(ctx)
}

// Span is a finished span as /debug/traces shows it.
type Span struct {
	TraceID    string            `json:"trace_id"`
	SpanID     string            `json:"span_id"`
	ParentID   string            `json:"parent_id,omitempty"`
	Links      []string          `json:"links,omitempty"` // span ids of linked spans
	Name       string            `json:"name"`
	Service    string            `json:"service"`
	Kind       string            `json:"kind"`
	Start      time.Time         `json:"start"`
	DurationMS float64           `json:"duration_ms"`
	Error      bool              `json:"error,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// maxSpansPerTrace bounds the memory one trace can take in a Ring; later
// spans of a longer trace are dropped.
const maxSpansPerTrace = 1000

// Ring keeps the spans of the most recent traces in memory: a span
// exporter for when there is no collector.
type Ring struct {
	mu     sync.Mutex
	max    int
	order  []string // trace ids, oldest first
	traces map[string][]Span
}

var _ sdktrace.SpanExporter = (*Ring)(nil)

// NewRing keeps up to max traces.
func NewRing(max int) *Ring { return &Ring{max: max, traces: map[string][]Span{}} }

// ExportSpans implements sdktrace.SpanExporter.
func (r *Ring) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range spans {
		sc := s.SpanContext()
		id := sc.TraceID().String()
		if _, ok := r.traces[id]; !ok {
			r.order = append(r.order, id)
			if len(r.order) > r.max {
				delete(r.traces, r.order[0])
				r.order = r.order[1:]
			}
		}
		sp := Span{
			TraceID: id, SpanID: sc.SpanID().String(), Name: s.Name(), Kind: s.SpanKind().String(),
			Start: s.StartTime(), DurationMS: float64(s.EndTime().Sub(s.StartTime()).Microseconds()) / 1000,
		}
		if p := s.Parent(); p.IsValid() {
			sp.ParentID = p.SpanID().String()
		}
		for _, l := range s.Links() {
			sp.Links = append(sp.Links, l.SpanContext.SpanID().String())
		}
		for _, kv := range s.Resource().Attributes() {
			if kv.Key == semconv.ServiceNameKey {
				sp.Service = kv.Value.AsString()
			}
		}
		if len(s.Attributes()) > 0 {
			sp.Attributes = map[string]string{}
			for _, kv := range s.Attributes() {
				sp.Attributes[string(kv.Key)] = kv.Value.Emit()
			}
		}
		sp.Error = s.Status().Code == codes.Error
		if len(r.traces[id]) < maxSpansPerTrace {
			r.traces[id] = append(r.traces[id], sp)
		}
	}
	return nil
}

// Shutdown implements sdktrace.SpanExporter.
func (r *Ring) Shutdown(context.Context) error { return nil }

// TraceSummary is a trace in the /debug/traces list.
type TraceSummary struct {
	TraceID    string    `json:"trace_id"`
	Root       string    `json:"root"`
	Services   []string  `json:"services"`
	Spans      int       `json:"spans"`
	Start      time.Time `json:"start"`
	DurationMS float64   `json:"duration_ms"`
}

// Traces lists the kept traces, newest first.
func (r *Ring) Traces() []TraceSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []TraceSummary
	for i := len(r.order) - 1; i >= 0; i-- {
		spans := r.traces[r.order[i]]
		s := TraceSummary{TraceID: r.order[i], Spans: len(spans)}
		var end time.Time
		for _, sp := range spans {
			if s.Start.IsZero() || sp.Start.Before(s.Start) {
				s.Start = sp.Start
			}
			if e := sp.Start.Add(time.Duration(sp.DurationMS * float64(time.Millisecond))); e.After(end) {
				end = e
			}
			if sp.ParentID == "" || s.Root == "" {
				s.Root = sp.Service + " " + sp.Name
			}
			if !slices.Contains(s.Services, sp.Service) {
				s.Services = append(s.Services, sp.Service)
			}
		}
		s.DurationMS = float64(end.Sub(s.Start).Microseconds()) / 1000
		out = append(out, s)
	}
	return out
}

// Trace returns the spans of one trace, in start order.
func (r *Ring) Trace(id string) ([]Span, bool) {
	r.mu.Lock()
	spans, ok := r.traces[id]
	spans = slices.Clone(spans)
	r.mu.Unlock()
	slices.SortFunc(spans, func(a, b Span) int { return a.Start.Compare(b.Start) })
	return spans, ok
}

// Handler serves the ring: GET /debug/traces and /debug/traces/{id}.
func (r *Ring) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/traces", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"items": r.Traces()})
	})
	mux.HandleFunc("GET /debug/traces/{id}", func(w http.ResponseWriter, req *http.Request) {
		spans, ok := r.Trace(req.PathValue("id"))
		if !ok {
			problem.Write(w, problem.New(problem.NotFound, "no trace %s among the last %d kept", req.PathValue("id"), r.max))
			return
		}
		writeJSON(w, map[string]any{"trace_id": req.PathValue("id"), "spans": spans})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Transport records a client span per call through Next and passes the
// trace context on in traceparent, also for unsampled traces, so that the
// services called keep the caller's sampling decision.
type Transport struct {
	Next   http.RoundTripper
	Tracer trace.Tracer
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, span := t.Tracer.Start(req.Context(), "call", trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	if span.IsRecording() {
		span.SetName("call " + req.URL.Host + " " + req.Method)
		span.SetAttributes(attribute.String("server.address", req.URL.Host), attribute.String("http.request.method", req.Method))
	}
	out := req.WithContext(ctx) // a copy; the caller's request is not changed
	out.Header = req.Header.Clone()
	InjectHTTP(ctx, out.Header)
	resp, err := t.Next.RoundTrip(out)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	} else if resp.StatusCode >= 500 {
		span.SetStatus(codes.Error, resp.Status)
	}
	return resp, err
}
